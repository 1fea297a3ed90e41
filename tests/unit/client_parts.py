"""
The parts of one client, built for real by `_wiring.build` around a transport pointed at an
emulator, for the unit tests of each part: a test opens them, drives one part, reads the others.

`running` opens them the way `Client` does, except that by default the poll scheduler is built
but never run: nothing is polled unless the test calls the `Poller` itself, so each poll's
answer is the test's to choose (with the emulator's faults) and to read.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio

from aioqwenimage import _wiring
from aioqwenimage._events import EventHook
from aioqwenimage._handle import TaskHandle
from aioqwenimage._requests import PreparedRequest, prepare
from aioqwenimage._scheduler import PollScheduler
from aioqwenimage._settings import Limits, PollPolicy, RetryPolicy
from aioqwenimage._transport import Transport
from aioqwenimage.testing import EmulatorLimits, FakeDashScope, ModelQuota
from tests.conftest import SCALE, client_limits, roomy_limits

MODEL = "qwen-image-plus"  # creates async tasks
SYNC_MODEL = "qwen-image-max"  # synchronous calls only
LONG = 5000.0  # simulated seconds: 5 s of real time, longer than any test here
# One server slot: the first task runs (LONG), every later one stays PENDING.
ONE_SLOT = EmulatorLimits(models={MODEL: ModelQuota(in_flight=1, submits=1000)})


def emulator(*, one_slot: bool = False, duration: float = LONG, **kwargs: Any) -> FakeDashScope:
    """An emulator in compressed time; `one_slot`: tasks after the first stay PENDING."""
    kwargs.setdefault("limits", ONE_SLOT if one_slot else roomy_limits())
    return FakeDashScope(time_scale=SCALE, seed=3, durations={"*": (duration, duration)}, **kwargs)


def build(
    fake: FakeDashScope,
    *,
    limits: Limits | None = None,
    poll: PollPolicy | None = None,
    retry: RetryPolicy | None = None,
    hooks: tuple[EventHook, ...] = (),
    api_key: str | None = None,
    base_url: str | None = None,
) -> _wiring.Parts:
    """The parts of a client of `fake`, scaled to its time, as `Client.__init__` builds them."""
    rng = random.Random(7)
    transport = Transport(
        base_url=base_url or fake.base_url,
        api_key=api_key or fake.api_key,
        retry=(retry or RetryPolicy()).scaled(SCALE),
        rng=rng,
        trust_env=False,
    )
    return _wiring.build(
        transport,
        limits=limits or client_limits(),
        poll_policy=(poll or PollPolicy(sweep=False)).scaled(SCALE),
        region="singapore",
        time_scale=SCALE,
        rng=rng,
        hooks=hooks,
        strict_results=False,
    )


@asynccontextmanager
async def running(
    parts: _wiring.Parts, *, polling: bool = False
) -> AsyncIterator[PollScheduler[TaskHandle] | None]:
    """
    Open `parts` in this loop and close them as `Client.aclose` does. Yields the idle poll
    scheduler the registry and the poller are bound to (``None`` with `polling`, where
    `_wiring.start` runs the real one).
    """
    scheduler: PollScheduler[TaskHandle] | None = None
    if polling:
        _wiring.start(parts)
    else:
        parts.transport.open()
        scheduler = PollScheduler(
            parts.poller.poll, policy=parts.poll_policy, budget=parts.queries.budget
        )
        parts.registry.bind(scheduler)
        parts.poller.bind(scheduler, None)
        parts.host.start([])
    try:
        yield scheduler
    finally:
        await close(parts)


async def close(parts: _wiring.Parts) -> None:
    """What `Client.aclose` does with the parts (the registry may have been closed already)."""
    orphans = [] if parts.registry.closed else parts.registry.close()
    parts.admission.close()
    parts.paid.close(orphans)
    with anyio.CancelScope(shield=True):
        await parts.paid.drain(parts.queries.cancel)
        await parts.host.stop()
        await parts.transport.aclose()


def request(prompt: str = "a fox", *, model: str = MODEL, **kwargs: Any) -> PreparedRequest:
    """A validated request, as `Client.submit` prepares it."""
    return prepare(prompt, model=model, **kwargs)


async def until(condition: Callable[[], bool], limit: float = 5.0) -> None:
    """Wait, in small steps and a bounded real time, until `condition` holds."""
    with anyio.fail_after(limit):
        while not condition():
            await anyio.sleep(SCALE)


def remote_status(fake: FakeDashScope, task_id: str | None) -> str:
    """The emulator's own status of a task."""
    assert task_id is not None
    return fake.stats.tasks[task_id].status
