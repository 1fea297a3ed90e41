"""
Cancelling: a handle's cancel, cancel by id, abandoning and giving up, and what each tells.

Under one server slot taken by a long task, every later task stays PENDING (the service cancels
those); the first one is RUNNING (the service will not cancel it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

import aioqwenimage as q
from aioqwenimage import _wiring
from aioqwenimage._handle import TaskHandle
from aioqwenimage._models import TaskStatus
from aioqwenimage.testing import FakeDashScope, Fault
from tests.unit.client_parts import (
    MODEL,
    SYNC_MODEL,
    build,
    emulator,
    remote_status,
    request,
    running,
    until,
)

Setup = tuple[FakeDashScope, _wiring.Parts, TaskHandle, TaskHandle]


@asynccontextmanager
async def one_running_one_pending(duration: float = 5000.0) -> AsyncIterator[Setup]:
    """The parts of a client with two tasks: the first RUNNING, the second PENDING."""
    async with emulator(one_slot=True, duration=duration) as fake:
        parts = build(fake)
        async with running(parts):
            with anyio.fail_after(5):
                first = await parts.paid.start(request())
                await until(lambda: remote_status(fake, first.task_id) == "RUNNING")
                second = await parts.paid.start(request())
            yield fake, parts, first, second


async def cancel(parts: _wiring.Parts, handle: TaskHandle) -> bool:
    with anyio.fail_after(5):
        return await parts.cancelling.cancel(handle)


async def outcome(handle: TaskHandle) -> BaseException:
    with pytest.raises(q.QwenImageError) as caught:
        await handle
    return caught.value


async def test_a_pending_task_is_cancelled_remotely_and_ended():
    """PENDING: cancelled by the service, the handle fails CANCELED, its slot is freed."""
    async with one_running_one_pending() as (fake, parts, _first, pending):
        assert await cancel(parts, pending)
        error = await outcome(pending)
        assert q.TaskCanceledError is type(error)
        assert TaskStatus.CANCELED is pending.status
        assert "CANCELED" == remote_status(fake, pending.task_id)
        assert parts.registry.get(pending) is None
        assert {MODEL: 1} == parts.admission.in_flight()


async def test_a_running_task_is_let_go_locally_but_tracked_to_its_end():
    """RUNNING: the waiters are told at once; the task keeps its slot and polls, remotely on."""
    async with one_running_one_pending() as (fake, parts, started, _pending):
        assert not await cancel(parts, started)
        error = await outcome(started)
        assert q.TaskCanceledError is type(error)
        assert "may still finish and bill" in str(error)
        assert TaskStatus.RUNNING is started.status
        flight = parts.registry.get(started)
        assert flight is not None
        assert flight.abandoned
        assert {MODEL: 2} == parts.admission.in_flight()
        assert "RUNNING" == remote_status(fake, started.task_id)
        assert 1 == parts.events.requests["cancel"]


async def test_a_handle_not_tracked_is_not_cancelled():
    """A handle the registry no longer holds: False, and no request."""
    async with one_running_one_pending() as (_fake, parts, _first, pending):
        parts.registry.end(parts.registry.get(pending), q.ServerError("ended"))  # type: ignore[arg-type]
        assert not await cancel(parts, pending)
        assert 0 == parts.events.requests.get("cancel", 0)


async def test_a_synchronous_call_is_abandoned():
    """A sync call cannot be cancelled remotely: False, the handle fails CANCELED, slot freed."""
    async with emulator(duration=5000.0) as fake:
        parts = build(fake)
        async with running(parts):
            with anyio.fail_after(5):
                handle = await parts.paid.start(request(model=SYNC_MODEL))
                await until(lambda: fake.stats.sync_in_flight == 1)
            assert not await cancel(parts, handle)
            error = await outcome(handle)
            assert q.TaskCanceledError is type(error)
            assert TaskStatus.CANCELED is handle.status
            assert (0, {}) == (parts.registry.live, parts.admission.in_flight())
            assert 0 == parts.events.requests.get("cancel", 0)


async def test_cancel_id_of_a_tracked_task_decides_for_its_handle():
    """By id, a task of this client is cancelled through its handle, which fails CANCELED."""
    async with one_running_one_pending() as (_fake, parts, _first, pending):
        assert pending.task_id is not None
        with anyio.fail_after(5):
            assert await parts.cancelling.cancel_id(pending.task_id)
        assert TaskStatus.CANCELED is pending.status
        assert q.TaskCanceledError is type(await outcome(pending))


async def test_cancel_id_of_another_clients_task_only_cancels_it_remotely():
    """By id, a task this client does not track is cancelled remotely; False for unknown ids."""
    async with one_running_one_pending() as (fake, _parts, _first, pending):
        assert pending.task_id is not None
        other = build(fake)
        async with running(other):
            with anyio.fail_after(5):
                assert await other.cancelling.cancel_id(pending.task_id)
                assert not await other.cancelling.cancel_id("no-such-task")
        assert "CANCELED" == remote_status(fake, pending.task_id)
        assert not pending.done()  # its own client has not polled it yet
        assert 2 == other.events.requests["cancel"]


async def test_owned_tasks_are_the_ones_closing_cancels():
    """`own` marks a handle as the library's: closing returns its task, and only its, to cancel."""
    async with one_running_one_pending() as (_fake, parts, given, pending):
        parts.cancelling.own(pending)
        parts.registry.attach("t-attached", MODEL)
        parts.registry.end(parts.registry.get(given), q.ServerError("ended"))  # type: ignore[arg-type]
        parts.cancelling.own(given)  # no longer tracked: nothing to mark
        assert [pending.task_id] == parts.registry.close()


async def test_a_cancel_answered_after_the_generation_ended_leaves_its_outcome():
    """Refused after the task already ended by another way, the cancel decides nothing."""
    async with one_running_one_pending() as (fake, parts, started, _pending):
        fake.faults.add(Fault(kind="delay", endpoints="cancel", times=1, delay=20))
        ended = q.ServerError("ended by its poll meanwhile")
        async with anyio.create_task_group() as tg:
            verdicts: list[bool] = []

            async def ask() -> None:
                verdicts.append(await cancel(parts, started))

            tg.start_soon(ask)
            await until(lambda: parts.events.requests.get("cancel", 0) == 1)
            parts.registry.end(parts.registry.get(started), ended)  # type: ignore[arg-type]
        assert [False] == verdicts
        assert ended is await outcome(started)
        assert "RUNNING" == remote_status(fake, started.task_id)


async def test_abandon_waits_for_the_verdict_even_when_its_caller_is_cancelled():
    """Abandoning runs the cancel in the task group; a cancelled caller still gets the verdict."""
    async with one_running_one_pending() as (fake, parts, _first, pending):
        with anyio.fail_after(5), anyio.CancelScope() as scope:
            scope.cancel()
            verdict = await parts.cancelling.abandon(pending)
        assert verdict is True
        assert "CANCELED" == remote_status(fake, pending.task_id)


async def test_abandon_after_closing_does_nothing():
    """Once the client closed, abandoning sends nothing and knows nothing: None."""
    async with one_running_one_pending() as (_fake, parts, _first, pending):
        parts.registry.close()
        sent = parts.events.requests.get("cancel", 0)
        assert await parts.cancelling.abandon(pending) is None
        assert sent == parts.events.requests.get("cancel", 0)


async def test_give_up_on_a_pending_task_says_it_was_cancelled():
    """Timed out while PENDING: the error says it was cancelled and will not be billed."""
    async with one_running_one_pending() as (_fake, parts, _first, pending):
        with anyio.fail_after(5):
            error = await parts.cancelling.give_up(pending, 1.5)
        assert isinstance(error, q.TaskTimeoutError)
        assert pending.task_id == error.task_id
        assert str(error).startswith("no result after 1.5 s; ")
        assert "cancelled remotely while PENDING, so it will not be billed" in str(error)


async def test_give_up_on_a_running_task_says_it_will_bill():
    """Timed out while RUNNING: the error says the service finishes and bills it."""
    async with one_running_one_pending() as (_fake, parts, started, _pending):
        with anyio.fail_after(5):
            error = await parts.cancelling.give_up(started, 2)
        assert "the task is RUNNING and the service cancels only PENDING tasks" in str(error)
        assert "tracks it to its end" in str(error)


async def test_give_up_on_a_task_that_ended_meanwhile_says_how():
    """A generation resolved before the give-up: the error names its final status."""
    async with emulator(duration=0) as fake:
        parts = build(fake)
        async with running(parts):
            with anyio.fail_after(5):
                handle = await parts.paid.start(request())
                await until(lambda: remote_status(fake, handle.task_id) == "SUCCEEDED")
                await parts.poller.poll(handle)
                error = await parts.cancelling.give_up(handle, 3)
            assert "the task ended SUCCEEDED meanwhile" in str(error)
            assert 0 == parts.events.requests.get("cancel", 0)


async def test_give_up_without_a_verdict_says_it_may_still_bill():
    """No verdict (the client closed): the error says the task may still run and bill."""
    async with one_running_one_pending() as (_fake, parts, _first, pending):
        parts.registry.close()
        error = await parts.cancelling.give_up(pending, 4)
        assert "did not complete in time: it may still run and bill" in str(error)


async def test_repr_shows_the_registry():
    """The repr names the registry it decides for."""
    async with one_running_one_pending() as (_fake, parts, _first, _pending):
        assert "<Cancelling registry=<Registry live=2 tasks=2>>" == repr(parts.cancelling)


async def test_work_that_outlives_its_caller_runs_in_the_clients_group():
    """`task_group` is the host's group, where `map` hands its give-ups."""
    async with one_running_one_pending() as (_fake, parts, _first, _pending):
        with anyio.fail_after(5):
            assert await parts.host.task_group() is await parts.cancelling.task_group()
