"""Completion notifications end to end: the emulator publishes, the client's receiver confirms."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
from aiohttp import web
from fastapi import FastAPI

import aioqwenimage as q
from aioqwenimage._notifications import TOKEN_HEADER
from aioqwenimage.testing import FakeDashScope, NotificationTarget
from tests.conftest import make_client, roomy_limits

TOKEN = "s3cret-token-value"
SCALE = 0.01  # a simulated second lasts 10 ms: room for loopback HTTP under load
DURATIONS = {"*": (5.0, 10.0)}


@contextlib.asynccontextmanager
async def emulator(durations: Any = DURATIONS) -> AsyncIterator[FakeDashScope]:
    async with FakeDashScope(
        time_scale=SCALE, seed=11, limits=roomy_limits(), durations=durations
    ) as fake:
        yield fake


def target(url: str, **kwargs: Any) -> NotificationTarget:
    kwargs.setdefault("latency", (0.2, 2.0))
    kwargs.setdefault("token", TOKEN)
    return NotificationTarget(url=url, **kwargs)


@contextlib.asynccontextmanager
async def notified_client(
    fake: FakeDashScope, events: list[q.TaskEvent] | None = None, **settings: Any
) -> AsyncIterator[q.Client]:
    notifications = q.Notifications(token=TOKEN, **settings)
    hooks = [events.append] if events is not None else []
    async with make_client(fake, notifications=notifications, event_hooks=hooks) as client:
        yield client


async def generate(client: q.Client, count: int) -> list[q.GenerationResult]:
    results: list[q.GenerationResult] = []

    async def one(i: int) -> None:
        results.append(await client.generate(f"a lighthouse #{i}", model="qwen-image-plus"))

    async with anyio.create_task_group() as tg:
        for i in range(count):
            tg.start_soon(one, i)
    return results


def queries(fake: FakeDashScope) -> list[int]:
    return [report.queries for report in fake.stats.tasks.values()]


def finish_event(task_id: str, status: str = "SUCCEEDED", event_id: str = "e-1") -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": "acs.dashscope",
            "type": "dashscope:System:AsyncTaskFinish",
            "data": {"task_id": task_id, "task_status": status},
        }
    ).encode()


async def test_each_task_costs_one_query_when_events_arrive_before_polls():
    """Events before the (stretched) first poll: one query per task, no sweep, no poll before."""
    async with emulator() as fake, notified_client(fake) as client:
        assert client.notifications is not None
        async with client.notifications.listen() as url:
            fake.notify(target(url))
            results = await generate(client, 12)
        assert 12 == len(results)
        assert [1] * 12 == queries(fake)
        assert 0 == fake.stats.count("list")
        assert 12 == client.notifications.counts["news"]
        assert 12 == fake.stats.notifications["delivered"]
        assert client.notifications.trusted


async def test_duplicated_and_out_of_order_events_cost_nothing_more():
    """Every event delivered twice, in any order: still one query per task."""
    async with emulator() as fake, notified_client(fake) as client:
        assert client.notifications is not None
        async with client.notifications.listen() as url:
            fake.notify(target(url, latency=(0.0, 4.0), duplicate_rate=1.0))
            await generate(client, 10)
            # The second copies still on their way arrive about ended tasks.
            with anyio.fail_after(5):
                while fake.stats.notifications["delivered"] < 20:
                    await anyio.sleep(SCALE)
        assert [1] * 10 == queries(fake)
        counts = client.notifications.counts
        assert 10 == counts["news"]
        assert 10 == counts["duplicate"] + counts["ignored"]
        assert 20 == fake.stats.notifications["delivered"]


async def test_events_after_the_fallback_poll_are_ignored():
    """Events later than the fallback poll: the poll finds the task; the event costs nothing."""
    async with emulator() as fake, notified_client(fake, stretch=1.0, missing_after=99) as client:
        assert client.notifications is not None
        async with client.notifications.listen() as url:
            fake.notify(target(url, latency=(40.0, 40.0)))
            results = await generate(client, 4)
            before = sum(queries(fake))
            await anyio.sleep(60 * SCALE)
        assert 4 == len(results)
        assert before == sum(queries(fake))
        assert 4 == client.notifications.counts["ignored"]
        assert 0 == client.notifications.counts["news"]


async def test_events_racing_ordinary_polls_never_change_a_result():
    """Unstretched polls and events at about the same time: every task resolves once, correctly."""
    async with emulator() as fake, notified_client(fake, stretch=1.0) as client:
        assert client.notifications is not None
        async with client.notifications.listen() as url:
            fake.notify(target(url, latency=(0.0, 1.0)))
            results = await generate(client, 10)
        assert all(len(result.images) == 1 for result in results)
        assert all(1 <= n <= 6 for n in queries(fake))


async def test_lost_events_are_found_by_the_fallback_poll_then_polling_returns_to_normal():
    """With every event lost, tasks still complete; after three in a row, normal polling resumes."""
    events: list[q.TaskEvent] = []
    async with emulator() as fake, notified_client(fake, events) as client:
        notifications = client.notifications
        assert notifications is not None
        async with notifications.listen() as url:
            fake.notify(target(url, loss_rate=1.0))
            for _ in range(3):
                await generate(client, 1)
            assert not notifications.trusted
            assert "missing" in repr(client._parts.notified)
            kinds = [event.kind for event in events]
            assert 1 == kinds.count(q.EventKind.NOTIFICATIONS_MISSING)
            assert 3 == fake.stats.notifications["lost"]
            # Events arrive again: the first one confirmed makes polling the fallback again.
            fake.notify(target(url, latency=(0.0, 0.0)))
            await generate(client, 1)
        assert notifications.trusted
        assert q.EventKind.NOTIFICATIONS_RESUMED in [event.kind for event in events]


async def test_forged_events_are_refused_or_cost_one_query_and_change_nothing():
    """Wrong or missing token: refused, no query; unknown task: nothing; unfinished: one query."""
    # Tasks long enough (0.3 s) that none ends while the forged events arrive.
    async with emulator({"*": (30.0, 30.0)}) as fake, notified_client(fake) as client:
        notifications = client.notifications
        assert notifications is not None
        handle = await client.submit("a lighthouse", model="qwen-image-plus")
        assert handle.task_id is not None
        body = finish_event(handle.task_id)
        assert 403 == await notifications.feed(body, {"x-eventbridge-signature-token": "nope"})
        assert 401 == await notifications.feed(body, {})
        unknown = finish_event("no-such-task", event_id="e-0")
        assert 200 == await notifications.feed(unknown, {"X-EventBridge-Signature-Token": TOKEN})
        await anyio.lowlevel.checkpoint()
        assert [0] == queries(fake)
        # Right token, a live task that has not finished: one query, and the task goes on.
        assert 200 == await notifications.feed(body, {"x-eventbridge-signature-token": TOKEN})
        with anyio.fail_after(5):
            while queries(fake) != [1]:
                await anyio.sleep(SCALE)
        assert not handle.done()
        result = await handle
        assert 1 == len(result.images)
        assert 2 == notifications.counts["refused"]


async def test_the_receiver_mounted_in_a_fastapi_app():
    """EventBridge's POSTs reach the client through a FastAPI app's mounted receiver."""
    async with emulator() as fake, notified_client(fake) as client:
        assert client.notifications is not None
        app = FastAPI()
        app.mount("/dashscope-events", client.notifications.asgi_app())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:

            async def deliver(body: bytes, headers: Mapping[str, str]) -> int:
                response = await http.post("/dashscope-events/", content=body, headers=headers)
                return response.status_code

            fake.notify(NotificationTarget(deliver=deliver, token=TOKEN, latency=(0.2, 2.0)))
            await generate(client, 5)
            refused = await http.post("/dashscope-events/", content=b"{}")
            wrong = await http.get("/dashscope-events/")
        assert [1] * 5 == queries(fake)
        assert 5 == client.notifications.counts["news"]
        assert (401, 405) == (refused.status_code, wrong.status_code)
        assert TOKEN not in refused.text


async def test_the_receiver_in_an_aiohttp_app():
    """EventBridge's POSTs reach the client through an aiohttp.web app's route."""
    async with emulator() as fake, notified_client(fake) as client:
        assert client.notifications is not None
        app = web.Application()
        app.router.add_post("/events", client.notifications.aiohttp_handler())
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            port = runner.addresses[0][1]
            fake.notify(target(f"http://127.0.0.1:{port}/events"))
            await generate(client, 5)
        finally:
            await runner.cleanup()
        assert [1] * 5 == queries(fake)
        assert 5 == client.notifications.counts["news"]


async def test_a_receiver_belongs_to_one_client(fake):
    """Giving one Notifications to two clients is refused; before its client opens, it ignores."""
    notifications = q.Notifications(token=TOKEN)
    make_client(fake, notifications=notifications)
    assert 200 == await notifications.feed(finish_event("t"), {TOKEN_HEADER: TOKEN})
    assert 1 == notifications.counts["ignored"]
    with pytest.raises(ValueError, match="another Client"):
        make_client(fake, notifications=notifications)
    assert TOKEN not in repr(notifications)


def test_a_blocking_client_takes_events_from_another_thread():
    """A SyncClient's receiver fed from the emulator's thread hands each event to its loop."""
    notifications = q.Notifications(token=TOKEN)

    async def deliver(body: bytes, headers: Mapping[str, str]) -> int:
        return await notifications.feed(body, headers)

    with (
        FakeDashScope(
            time_scale=SCALE, seed=11, limits=roomy_limits(), durations=DURATIONS
        ) as fake,
        fake.sync_client(notifications=notifications) as client,
    ):
        fake.notify(NotificationTarget(deliver=deliver, token=TOKEN, latency=(0.2, 2.0)))
        results = [client.generate(f"a lighthouse #{i}", model="qwen-image-plus") for i in range(3)]
        assert client.notifications is notifications
    assert 3 == len(results)
    assert [1] * 3 == queries(fake)
    assert 3 == notifications.counts["forwarded"]
