"""A hostile or broken API host: bad base URLs, absurd waits, redirect loops, endless answers."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from aiohttp import web
from aioresponses import aioresponses

import aioqwenimage as q
from aioqwenimage._transport import RetryPolicy, parse_retry_after
from tests.conftest import SCALE

BASE = "https://api.example/api/v1"
CREATE = BASE + "/services/aigc/text2image/image-synthesis"
TASK = re.compile(re.escape(BASE) + r"/tasks/.*")
PENDING = {"request_id": "r0", "output": {"task_id": "t-1", "task_status": "PENDING"}}
DONE = {
    "request_id": "r",
    "output": {
        "task_id": "t-1",
        "task_status": "SUCCEEDED",
        "results": [{"url": "https://oss.example/t-1.png"}],
    },
}
KEY = "sk-very-secret-key-0123456789"


def mocked_client(**kwargs: Any) -> q.Client:
    kwargs.setdefault("poll", q.PollPolicy(sweep=False))
    return q.Client(api_key=KEY, base_url=BASE, time_scale=SCALE, seed=1, **kwargs)


# --- base_url ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://user:pw@127.0.0.1:9/api/v1",
        "https://user@api.example/api/v1",
        "http://example.com\\@127.0.0.1:9/api/v1",
        "ftp://api.example/api/v1",
        "https:///api/v1",
        "http://127.0.0.1:notaport/api/v1",
        "http://127.0.0.1:99999/api/v1",
        "https://api.example/api/v1?x=1",
        "https://api.example/api/v1#frag",
        "https://api example/api/v1",
        "https://api.example/api/v1\n",
        "api.example/api/v1",
    ],
)
def test_malformed_base_url_is_refused_at_construction(url):
    """Userinfo, odd characters, bad ports and non-http(s) schemes fail in the constructor."""
    with pytest.raises(q.InvalidRequestError, match="base_url") as caught:
        q.Client(api_key=KEY, base_url=url)
    assert "base_url" == caught.value.parameter


def test_base_url_error_does_not_echo_userinfo():
    """A password in a refused base_url is not repeated in the error."""
    with pytest.raises(q.InvalidRequestError) as caught:
        q.Client(api_key=KEY, base_url="https://user:hunter2@api.example/api/v1")
    assert "hunter2" not in str(caught.value)


# --- Retry-After ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("3", 3.0),
        ("0", 0.0),
        ("2.5", 2.5),
        ("inf", 60.0),
        ("Infinity", 60.0),
        ("1e9", 60.0),
        ("1e400", 60.0),
        ("nan", None),
        ("-5", None),
        ("Wed, 21 Oct 2026 07:28:00 GMT", None),
        ("soon", None),
        ("", None),
    ],
)
def test_retry_after_is_capped_or_ignored(header, expected):
    """Huge waits are capped at the policy's maximum; NaN, negatives and dates count as absent."""
    assert expected == parse_retry_after(header, cap=60.0)


def test_retry_after_cap_is_configurable_and_scaled():
    """The cap is a documented RetryPolicy setting that time compression scales too."""
    assert 60.0 == RetryPolicy().max_retry_after
    assert 0.5 == RetryPolicy(max_retry_after=50.0).scaled(0.01).max_retry_after
    with pytest.raises(q.InvalidRequestError, match="max_retry_after"):
        RetryPolicy(max_retry_after=float("nan"))


HUGE = ["inf", "1e9", "nan", "-1", "Wed, 21 Oct 2026 07:28:00 GMT"]


@pytest.mark.parametrize("header", HUGE)
async def test_absurd_retry_after_on_a_poll_does_not_freeze_polling(header):
    """One 429 on a poll with an absurd Retry-After delays the task by the cap at most."""
    with aioresponses() as mocked:
        mocked.post(CREATE, payload=PENDING)
        mocked.get(
            TASK,
            status=429,
            payload={"code": "Throttling.RateQuota", "message": "slow"},
            headers={"Retry-After": header},
        )
        mocked.get(TASK, payload=DONE, repeat=True)
        async with mocked_client() as client:
            with anyio.fail_after(5):
                result = await client.generate("a fox")
    assert "t-1" == result.task_id


@pytest.mark.parametrize("header", HUGE)
async def test_absurd_retry_after_on_a_create_does_not_freeze_the_lane(header):
    """One throttled create with an absurd Retry-After pauses its lane by the cap at most."""
    with aioresponses() as mocked:
        mocked.post(
            CREATE,
            status=429,
            payload={"code": "Throttling.RateQuota", "message": "slow"},
            headers={"Retry-After": header},
        )
        mocked.post(CREATE, payload=PENDING)
        mocked.get(TASK, payload=DONE, repeat=True)
        async with mocked_client() as client:
            with anyio.fail_after(5):
                result = await client.generate("a fox")
    assert "t-1" == result.task_id


# --- the key is never reachable from an error -------------------------------------------------


def reachable(root: BaseException) -> Iterator[object]:
    """Every object reachable from an error: causes, contexts, args, attributes, one level deep."""
    seen: set[int] = set()
    todo: list[object] = [root]
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        yield obj
        if isinstance(obj, BaseException):
            todo.extend(x for x in (obj.__cause__, obj.__context__) if x is not None)
            todo.extend(obj.args)
            todo.extend(vars(obj).values())
            todo.extend(getattr(obj, "exceptions", ()))
        elif hasattr(obj, "__dict__") and not isinstance(obj, type):
            todo.extend(vars(obj).values())


def assert_no_key(error: BaseException) -> None:
    for obj in reachable(error):
        assert KEY not in repr(obj), f"the key is reachable through {type(obj).__name__}"
        assert KEY not in str(obj)


@asynccontextmanager
async def api_server(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[str]:
    """A throwaway API host on 127.0.0.1 answering every request with `handler`."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/api/v1"
    finally:
        await runner.cleanup()


async def redirect_loop(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(location=str(request.rel_url))


async def test_a_redirect_loop_on_the_api_host_leaves_no_key_in_the_error():
    """A create and a list against a redirecting API host fail with errors that hold no key."""
    async with api_server(redirect_loop) as base_url:
        retry = RetryPolicy(attempts=2, base=0.001, cap=0.002)
        async with q.Client(api_key=KEY, base_url=base_url, retry=retry, seed=1) as client:
            with pytest.raises(q.QwenImageError) as created:
                await client.submit("a fox")
            with pytest.raises(q.QwenImageError) as listed:
                async for _ in client.list_tasks():
                    pass
    assert_no_key(created.value)
    assert_no_key(listed.value)
    assert "redirect" in str(created.value)


async def test_a_dropped_connection_leaves_no_key_in_the_error():
    """A create whose connection drops after sending is uncertain, and its chain holds no key."""

    async def drop(request: web.Request) -> web.StreamResponse:
        await request.read()
        assert request.transport is not None
        request.transport.close()
        return web.Response()

    async with api_server(drop) as base_url, q.Client(api_key=KEY, base_url=base_url) as client:
        with pytest.raises(q.SubmissionUncertainError) as caught:
            await client.submit("a fox")
    assert_no_key(caught.value)


async def test_a_service_echoing_the_key_does_not_put_it_into_errors():
    """A key echoed in an error body or a kept header is masked before anything is built."""
    with aioresponses() as mocked:
        mocked.post(
            CREATE,
            status=400,
            payload={"code": "InvalidParameter", "message": f"bad key Bearer {KEY}"},
            headers={"X-DashScope-Echo": KEY},
        )
        async with mocked_client() as client:
            with pytest.raises(q.InvalidRequestError) as caught:
                await client.submit("a fox")
    assert_no_key(caught.value)
    assert "***" in str(caught.value)


# --- answer size and duration -----------------------------------------------------------------


async def test_an_endless_poll_answer_is_cut_at_the_cap(monkeypatch):
    """A poll answer that never ends is read up to the cap, then treated as garbage."""
    sent = [0]

    async def endless(request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            return web.json_response(PENDING)
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b'{"output": {"task_id": "t-1", "padding": "')
        chunk = b"x" * 65536
        try:
            for _ in range(2000):  # 128 MiB at most, so a broken client cannot hang the suite
                sent[0] += len(chunk)
                await response.write(chunk)
        except ConnectionError:
            pass  # the client hung up: what this test wants
        return response

    pools = q.PoolLimits(max_answer_bytes=1024 * 1024)
    async with (
        api_server(endless) as base_url,
        q.Client(api_key=KEY, base_url=base_url, pools=pools, time_scale=SCALE, seed=1) as client,
    ):
        handle = await client.submit("a fox")
        with anyio.fail_after(20), pytest.raises(q.ServerError, match="MiB"):
            await handle
    assert sent[0] < 40 * 1024 * 1024


async def test_a_drip_fed_create_answer_meets_the_total_deadline():
    """An answer that trickles forever ends at the total deadline, as an uncertain create."""

    async def drip(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(1000):
            await response.write(b" ")
            await asyncio.sleep(0.05)
        return response

    timeouts = q.Timeouts(control=1.0, control_total=0.5)
    async with (
        api_server(drip) as base_url,
        q.Client(api_key=KEY, base_url=base_url, timeouts=timeouts) as client,
    ):
        with anyio.fail_after(10), pytest.raises(q.SubmissionUncertainError):
            await client.submit("a fox")


async def test_drip_fed_polls_do_not_starve_other_tasks():
    """With every query connection held by drip-fed answers, a healthy task still finishes."""
    created = [0]

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            created[0] += 1
            task_id = f"t-{created[0]}"
            return web.json_response({"output": {"task_id": task_id, "task_status": "PENDING"}})
        task_id = request.path.rsplit("/", 1)[-1]
        if task_id != "t-9":
            response = web.StreamResponse()
            await response.prepare(request)
            for _ in range(200):
                await response.write(b" ")
                await asyncio.sleep(0.05)
            return response
        body = {
            "request_id": "r",
            "output": {
                "task_id": task_id,
                "task_status": "SUCCEEDED",
                "results": [{"url": "https://oss.example/a.png"}],
            },
        }
        return web.json_response(body)

    pools = q.PoolLimits(query=4)
    timeouts = q.Timeouts(query_total=0.3)
    lane = q.ModelLimits(in_flight=20, submits_per_second=1000)
    limits = q.Limits(models={"qwen-image-plus": lane})
    async with (
        api_server(handler) as base_url,
        q.Client(
            api_key=KEY,
            base_url=base_url,
            pools=pools,
            timeouts=timeouts,
            limits=limits,
            time_scale=SCALE,
            poll=q.PollPolicy(sweep=False),
            seed=1,
        ) as client,
    ):
        for index in range(8):
            await client.submit(f"drip {index}")
        healthy = await client.submit("the healthy one")
        with anyio.fail_after(8):
            result = await healthy
    assert "t-9" == result.task_id
