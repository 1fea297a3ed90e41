"""The emulator publishes task-completion events as EventBridge delivers them."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
import pytest

import aioqwenimage as q
from aioqwenimage.testing import (
    EmulatorLimits,
    FakeDashScope,
    Fault,
    FaultKind,
    ModelQuota,
    NotificationTarget,
)
from aioqwenimage.testing._notify import Publisher
from tests.conftest import make_client, roomy_limits

SCALE = 0.002
TOKEN = "the-token"
BEIJING = dt.timezone(dt.timedelta(hours=8))


class Receiver:
    """Records every delivery and answers the statuses it is given, then 200."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.deliveries: list[tuple[dict[str, Any], Mapping[str, str]]] = []

    async def __call__(self, body: bytes, headers: Mapping[str, str]) -> int:
        self.deliveries.append((json.loads(body), dict(headers)))
        return self.statuses.pop(0) if self.statuses else 200


@pytest.fixture
async def fake() -> AsyncIterator[FakeDashScope]:
    async with FakeDashScope(
        time_scale=SCALE, seed=2, limits=roomy_limits(), durations={"*": (5.0, 6.0)}
    ) as emulator:
        yield emulator


async def until(condition: Any) -> None:
    with anyio.fail_after(5):
        while not condition():
            await anyio.sleep(SCALE)


async def run_tasks(fake: FakeDashScope, count: int = 1, **options: Any) -> list[q.Outcome]:
    async with make_client(fake) as client:
        prompts = [f"a lighthouse #{i}" for i in range(count)]
        return [o async for o in client.map(prompts, model="qwen-image-plus", **options)]


async def test_the_documented_envelope_with_the_token(fake):
    """One event per task: the CloudEvents envelope, UTC+8 times in data, the token header."""
    receiver = Receiver()
    fake.notify(NotificationTarget(deliver=receiver, token=TOKEN, latency=(0.0, 0.5)))
    await run_tasks(fake)
    await until(lambda: receiver.deliveries)
    envelope, headers = receiver.deliveries[0]
    (report,) = fake.stats.tasks.values()
    assert TOKEN == headers["x-eventbridge-signature-token"]
    assert headers["content-type"].startswith("application/json")
    assert {
        "specversion": "1.0",
        "source": "acs.dashscope",
        "type": "dashscope:System:AsyncTaskFinish",
        "datacontenttype": "application/json;charset=utf-8",
        "aliyuneventbusname": "default",
        "aliyunregionid": "ap-southeast-1",
    }.items() <= envelope.items()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", envelope["time"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", envelope["aliyunpublishtime"])
    data = envelope["data"]
    assert report.task_id == data["task_id"]
    assert "SUCCEEDED" == data["task_status"]
    assert data["contain_result"] is False
    assert data["user_api_unique_key"].endswith(":qwen-image-plus")
    assert data["user_api_unique_key"].startswith("apikey:v1:aigc:text2image:image-synthesis:")
    assert report.ended is not None
    ended = dt.datetime.fromtimestamp(report.ended, BEIJING).strftime("%Y-%m-%d %H:%M:%S")
    assert ended == data["end_time"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", data["start_time"])
    assert {"published": 1, "delivered": 1} == dict(fake.stats.notifications)
    assert {"published": 1, "delivered": 1} == fake.stats.to_dict()["notifications"]


async def test_failed_tasks_are_published_and_cancelled_ones_are_not(fake):
    """A FAILED task emits its status; a task cancelled while PENDING emits nothing."""
    receiver = Receiver()
    fake.notify(NotificationTarget(deliver=receiver, latency=(0.0, 0.0)))
    fake.faults.add(Fault(kind=FaultKind.TASK_FAILED, times=1))
    (outcome,) = await run_tasks(fake)
    assert isinstance(outcome.error, q.TaskFailedError)
    await until(lambda: receiver.deliveries)
    envelope, headers = receiver.deliveries[0]
    assert "FAILED" == envelope["data"]["task_status"]
    assert "x-eventbridge-signature-token" not in headers  # no token configured
    # One slot: the second task waits PENDING behind the first, and is cancelled there.
    fake.reset()
    async with FakeDashScope(
        time_scale=SCALE, limits=EmulatorLimits(models={"qwen-image-plus": ModelQuota(in_flight=1)})
    ) as single:
        single.notify(NotificationTarget(deliver=receiver, latency=(0.0, 0.0)))
        async with make_client(single) as client:
            first = await client.submit("a fox", model="qwen-image-plus")
            second = await client.submit("a fox", model="qwen-image-plus")
            assert await second.cancel()
            await first
        await anyio.sleep(20 * SCALE)
        assert {"published": 1, "delivered": 1} == dict(single.stats.notifications)


async def test_duplicates_and_losses_are_drawn_per_event(fake):
    """Every event duplicated (same id twice), or every event lost, as configured."""
    receiver = Receiver()
    fake.notify(NotificationTarget(deliver=receiver, latency=(0.0, 1.0), duplicate_rate=1.0))
    await run_tasks(fake, 3)
    await until(lambda: len(receiver.deliveries) == 6)
    ids = [envelope["id"] for envelope, _ in receiver.deliveries]
    assert 3 == len(set(ids))
    assert {"published": 3, "duplicated": 3, "delivered": 6} == dict(fake.stats.notifications)
    fake.reset()
    fake.notify(NotificationTarget(deliver=receiver, latency=(0.0, 1.0), loss_rate=1.0))
    await run_tasks(fake, 2)
    await anyio.sleep(10 * SCALE)
    assert {"published": 2, "lost": 2} == dict(fake.stats.notifications)


async def test_a_refused_delivery_is_tried_again_then_dead_lettered(fake):
    """Non-2xx answers are retried `retries` times; then the event is dead."""
    receiver = Receiver(500, 403)
    fake.notify(NotificationTarget(deliver=receiver, latency=(0.0, 0.0), retry_interval=(1.0, 2.0)))
    await run_tasks(fake)
    await until(lambda: fake.stats.notifications["delivered"])
    assert 3 == len(receiver.deliveries)
    assert 2 == fake.stats.notifications["refused"]
    fake.reset()
    receiver = Receiver(500, 500)
    fake.notify(
        NotificationTarget(deliver=receiver, latency=(0.0, 0.0), retries=1, retry_interval=(1, 1))
    )
    await run_tasks(fake)
    await until(lambda: fake.stats.notifications["dead"])
    assert {"published": 1, "refused": 2, "dead": 1} == dict(fake.stats.notifications)


async def test_an_unreachable_target_counts_failures(fake):
    """A URL nobody listens on: each try fails, the last one dead-letters the event."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nobody listens there
    fake.notify(
        NotificationTarget(
            url=f"http://127.0.0.1:{port}/events", latency=(0.0, 0.0), retries=0, token=TOKEN
        )
    )
    await run_tasks(fake)
    await until(lambda: fake.stats.notifications["dead"])
    assert {"published": 1, "failed": 1, "dead": 1} == dict(fake.stats.notifications)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one"),
        ({"url": "http://x", "deliver": Receiver()}, "exactly one"),
        ({"url": "http://x", "loss_rate": 1.5}, "loss_rate"),
        ({"url": "http://x", "latency": (2.0, 1.0)}, "latency"),
        ({"url": "http://x", "retries": -1}, "retries"),
    ],
)
def test_target_settings_are_checked(kwargs: dict[str, Any], message: str):
    """One of url and deliver; rates in [0, 1]; spans ordered; retries not negative."""
    with pytest.raises(ValueError, match=message):
        NotificationTarget(**kwargs)


def test_the_token_is_not_in_the_repr():
    """A target's repr leaves the token out."""
    assert TOKEN not in repr(NotificationTarget(url="http://x", token=TOKEN))


async def test_events_queued_when_the_target_is_removed_are_dropped(fake):
    """`notify(None)` stops publishing, queued events included."""
    receiver = Receiver()
    fake.notify(NotificationTarget(deliver=receiver, latency=(0.0, 0.0)))
    async with make_client(fake) as client:
        handle = await client.submit("a fox", model="qwen-image-plus")
        fake.notify(None)
        await handle
    await anyio.sleep(10 * SCALE)
    assert [] == receiver.deliveries
    assert "Publisher queued=0" in repr(fake._engine.publisher)


async def test_the_publisher_stops_when_cancelled_as_it_is_woken():
    """A cancel landing as its wait ends is not lost (asyncio.wait_for on 3.11 swallowed it)."""
    publisher = Publisher(
        time_scale=0.01, region="cn-beijing", seed=1, clock=time.time, counts=Counter()
    )
    runner = asyncio.ensure_future(publisher.run())
    await asyncio.sleep(0.01)  # it waits for its next wake-up
    publisher._wake.set()  # the wake-up and the cancel in the same step
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(asyncio.shield(runner), 2)
