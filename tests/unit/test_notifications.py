"""The notification receiver alone: reading events, dropping redeliveries, answering statuses."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request

import aioqwenimage as q
from aioqwenimage._notice import FinishEvent, MalformedEventError, SeenEvents, parse

TOKEN = "t0ken-value"
HEADERS = {"x-eventbridge-signature-token": TOKEN}


def event(**changes: Any) -> dict[str, Any]:
    data = {
        "task_id": "a154c328",
        "task_status": "SUCCEEDED",
        "user_api_unique_key": "apikey:v1:aigc:text2image:image-synthesis:wanx2.1-t2i-turbo",
    }
    envelope: dict[str, Any] = {
        "specversion": "1.0",
        "id": "81765e5b",
        "source": "acs.dashscope",
        "type": "dashscope:System:AsyncTaskFinish",
        "data": data,
    }
    for key, value in changes.items():
        if key.startswith("data_"):
            data[key[5:]] = value
        else:
            envelope[key] = value
    return envelope


def body(**changes: Any) -> bytes:
    return json.dumps(event(**changes)).encode()


def test_the_documented_event_is_read():
    """The task id, status, event id and the model (last segment of the key) are read."""
    assert FinishEvent(
        event_id="81765e5b", task_id="a154c328", status="SUCCEEDED", model="wanx2.1-t2i-turbo"
    ) == parse(body())


def test_the_model_is_optional():
    """An event without user_api_unique_key still names its task."""
    assert parse(body(data_user_api_unique_key=None)) == FinishEvent(
        event_id="81765e5b", task_id="a154c328", status="SUCCEEDED", model=None
    )


def test_events_of_another_kind_are_well_formed_but_ignored():
    """Another source or type is not an error: the receiver accepts and ignores it."""
    assert parse(body(type="dashscope:System:Other")) is None
    assert parse(body(source="acs.ecs")) is None


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        json.dumps(event(id=None)).encode(),
        json.dumps(event(id=7)).encode(),
        json.dumps(event(id="x" * 300)).encode(),
        json.dumps(event(source="")).encode(),
        json.dumps(event(data="a string")).encode(),
        json.dumps(event(data_task_id=None)).encode(),
        json.dumps(event(data_task_status=3)).encode(),
    ],
)
def test_malformed_events_are_refused(raw: bytes):
    """Not a JSON object with string id, source, type, data.task_id and data.task_status."""
    with pytest.raises(MalformedEventError):
        parse(raw)


def test_seen_events_forget_the_oldest_first():
    """A redelivery is recognised; beyond the capacity the least recently seen id is forgotten."""
    seen = SeenEvents(2)
    assert seen.add("a")
    assert seen.add("b")
    assert not seen.add("a")  # seen again: now the most recent
    assert seen.add("c")  # forgets "b"
    assert 2 == len(seen)
    assert not seen.add("a")
    assert seen.add("b")


def test_seen_events_need_room():
    """A capacity below one is refused."""
    with pytest.raises(ValueError, match="at least 1"):
        SeenEvents(0)


@pytest.mark.parametrize(
    "kwargs",
    [{"token": ""}, {"token": TOKEN, "stretch": 0.5}, {"token": TOKEN, "missing_after": 0}],
)
def test_settings_are_checked(kwargs: dict[str, Any]):
    """An empty token, a stretch below 1 and a count below 1 are refused."""
    with pytest.raises(ValueError):
        q.Notifications(**kwargs)


async def test_a_receiver_answers_by_token_and_shape():
    """401 without a token, 403 with a wrong one, 413 too large, 400 malformed, else 200."""
    receiver = q.Notifications(token=TOKEN)
    assert 401 == await receiver.feed(body(), {})
    assert 403 == await receiver.feed(body(), {"x-eventbridge-signature-token": TOKEN + "x"})
    assert 413 == await receiver.feed(b"x" * (65 * 1024), HEADERS)
    assert 400 == await receiver.feed(b"{}", HEADERS)
    assert 200 == await receiver.feed(body(), {"X-EventBridge-Signature-Token": TOKEN})
    assert 200 == await receiver.feed(body(), HEADERS)  # the same event again
    assert 200 == await receiver.feed(body(type="other", id="2"), HEADERS)
    assert {
        "received": 7,
        "refused": 4,
        "ignored": 2,  # no client follows the task; another event type
        "duplicate": 1,
    } == dict(receiver.counts)
    assert receiver.trusted
    assert TOKEN not in repr(receiver)
    assert "received=7" in repr(receiver)


async def asgi(app: Any, scope: dict[str, Any], messages: list[dict[str, Any]]) -> list[Any]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def test_the_asgi_app_reads_a_chunked_post():
    """The body may come in several messages; the status is the receiver's."""
    app = q.Notifications(token=TOKEN).asgi_app()
    raw = body()
    scope = {
        "type": "http",
        "method": "POST",
        "headers": [(b"X-EventBridge-Signature-Token", TOKEN.encode())],
    }
    chunks = [
        {"type": "http.request", "body": raw[:10], "more_body": True},
        {"type": "http.request", "body": raw[10:]},
    ]
    sent = await asgi(app, scope, chunks)
    assert 200 == sent[0]["status"]
    assert b'{"status": "accepted"}' == sent[1]["body"]


async def test_the_asgi_app_refuses_other_methods_and_serves_lifespan():
    """GET is 405; lifespan messages are answered; other scopes are left alone."""
    app = q.Notifications(token=TOKEN).asgi_app()
    sent = await asgi(app, {"type": "http", "method": "GET", "headers": []}, [])
    assert 405 == sent[0]["status"]
    lifespan = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent = await asgi(app, {"type": "lifespan"}, lifespan)
    assert ["lifespan.startup.complete", "lifespan.shutdown.complete"] == [m["type"] for m in sent]
    assert [] == await asgi(app, {"type": "websocket"}, [])


async def test_the_aiohttp_handler_refuses_other_methods():
    """A GET to the handler is 405, without reading anything."""
    handler = q.Notifications(token=TOKEN).aiohttp_handler()
    response = await handler(make_mocked_request("GET", "/events"))
    assert 405 == response.status


async def test_listen_serves_the_receiver_alone():
    """`listen` binds a free port and answers there until the block ends."""
    import aiohttp

    receiver = q.Notifications(token=TOKEN)
    async with receiver.listen() as url, aiohttp.ClientSession() as session:
        assert url.startswith("http://127.0.0.1:")
        async with session.post(url + "any/path", data=body(), headers=HEADERS) as response:
            assert 200 == response.status
    assert 1 == receiver.counts["received"]
