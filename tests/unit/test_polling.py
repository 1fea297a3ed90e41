"""
The Poller: one query of one task, and what its answer means (`PollOutcome`).

The poll scheduler is idle: every poll here is the test's own call, against an emulator whose
faults choose the answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

import aioqwenimage as q
from aioqwenimage import _wiring
from aioqwenimage._handle import TaskHandle
from aioqwenimage._models import EventKind, TaskEvent, TaskStatus
from aioqwenimage._polling import GARBLED_POLLS
from aioqwenimage._scheduler import OutcomeKind, PollOutcome, PollScheduler
from aioqwenimage._sweep import Sweeper
from aioqwenimage.testing import FakeDashScope, Fault
from tests.unit.client_parts import LONG, MODEL, build, emulator, remote_status, request, running
from tests.unit.client_parts import until as wait_until

Setup = tuple[FakeDashScope, _wiring.Parts, PollScheduler[TaskHandle], list[TaskEvent]]


@asynccontextmanager
async def polling(
    *, one_slot: bool = False, duration: float = LONG, api_key: str | None = None
) -> AsyncIterator[Setup]:
    """An emulator and the parts of a client of it, with the scheduler idle."""
    events: list[TaskEvent] = []
    async with emulator(one_slot=one_slot, duration=duration) as fake:
        parts = build(fake, hooks=(events.append,), api_key=api_key)
        async with running(parts) as scheduler:
            assert scheduler is not None
            yield fake, parts, scheduler, events


async def submit(parts: _wiring.Parts) -> TaskHandle:
    with anyio.fail_after(5):
        return await parts.paid.start(request())


async def poll(parts: _wiring.Parts, handle: TaskHandle) -> PollOutcome:
    with anyio.fail_after(5):
        return await parts.poller.poll(handle)


def kinds(events: list[TaskEvent]) -> list[EventKind]:
    return [event.kind for event in events]


async def test_a_task_no_longer_tracked_is_finished_without_a_query():
    """Polling a handle the registry does not hold sends nothing and says FINISHED."""
    async with polling() as (_fake, parts, _, _):
        handle = await submit(parts)
        parts.registry.end(parts.registry.get(handle), q.ServerError("gone"))  # type: ignore[arg-type]
        assert PollOutcome.FINISHED == await poll(parts, handle)
        assert 0 == parts.events.requests.get("poll", 0)


async def test_a_pending_task_is_polled_again():
    """PENDING: the outcome is PENDING, the poll counted and reported, the handle unresolved."""
    async with polling(one_slot=True) as (_fake, parts, scheduler, events):
        await submit(parts)  # takes the server's one slot
        handle = await submit(parts)
        assert PollOutcome.PENDING == await poll(parts, handle)
        assert not handle.done()
        assert TaskStatus.PENDING is handle.status
        assert (1, 1, 1) == (parts.events.requests["poll"], parts.events.polls, handle.polls)
        assert EventKind.POLLED is events[-1].kind
        assert handle in scheduler


async def test_a_running_task_is_reported_running_once():
    """RUNNING: the handle's status follows, and RUNNING is reported on the first such answer."""
    async with polling() as (_fake, parts, _, events):
        handle = await submit(parts)
        assert PollOutcome.PENDING == await poll(parts, handle)
        assert PollOutcome.PENDING == await poll(parts, handle)
        assert TaskStatus.RUNNING is handle.status
        assert 1 == kinds(events).count(EventKind.RUNNING)
        assert 2 == kinds(events).count(EventKind.POLLED)


async def test_a_finished_task_resolves_its_handle_and_ends_its_polls():
    """SUCCEEDED: FINISHED, the handle has its result, the slot is free, the registry forgot it."""
    async with polling(duration=0) as (fake, parts, scheduler, _):
        handle = await submit(parts)
        await wait_until(lambda: remote_status(fake, handle.task_id) == "SUCCEEDED")
        assert PollOutcome.FINISHED == await poll(parts, handle)
        result = await handle
        assert handle.task_id == result.task_id
        assert parts.registry.get(handle) is None
        assert {} == parts.admission.in_flight()
        assert handle not in scheduler


async def test_a_throttled_poll_carries_the_retry_after():
    """429: THROTTLED with the server's Retry-After, counted as a throttle; the task goes on."""
    async with polling() as (fake, parts, _, events):
        handle = await submit(parts)
        fake.faults.add(Fault(kind="throttle", endpoints="query", times=1, retry_after=2))
        outcome = await poll(parts, handle)
        assert OutcomeKind.THROTTLED is outcome.kind
        assert pytest.approx(2 * fake.time_scale) == outcome.delay
        assert 1 == parts.events.throttled
        assert EventKind.THROTTLED is events[-1].kind
        assert not handle.done()


@pytest.mark.parametrize("kind", ["internal_error", "unavailable", "drop_before"])
async def test_a_server_or_network_failure_is_retried(kind):
    """A 5xx or a dropped connection: RETRY, counted as a retry; the task goes on."""
    async with polling() as (fake, parts, _, events):
        handle = await submit(parts)
        # On every query: aiohttp itself re-sends a GET whose kept-alive connection dropped.
        fake.faults.add(Fault(kind=kind, endpoints="query"))
        assert PollOutcome.RETRY == await poll(parts, handle)
        assert 1 == parts.events.retries
        assert EventKind.RETRIED is events[-1].kind
        assert not handle.done()
        fake.faults.clear()
        assert PollOutcome.PENDING == await poll(parts, handle)


async def test_a_refusal_ends_the_generation_with_its_error():
    """A 4xx (a key the service refuses): FINISHED, and the handle fails with that error."""
    async with polling(api_key="sk-not-the-key") as (_fake, parts, _, _):
        handle = parts.registry.attach("t-any", MODEL)
        assert PollOutcome.FINISHED == await poll(parts, handle)
        with pytest.raises(q.AuthenticationError):
            await handle
        assert parts.registry.get(handle) is None


async def test_a_task_the_service_does_not_know_has_expired():
    """An attached id the service does not know: FINISHED with TaskExpiredError."""
    async with polling() as (_fake, parts, _, _):
        handle = parts.registry.attach("no-such-task", MODEL)
        assert PollOutcome.FINISHED == await poll(parts, handle)
        with pytest.raises(q.TaskExpiredError):
            await handle


async def test_a_task_attached_without_a_model_learns_it_from_the_list():
    """SUCCEEDED and attached without a model: the task list names it (one list query)."""
    async with polling(duration=0) as (fake, parts, _, _):
        task_id = (await submit(parts)).task_id
        assert task_id is not None
        await wait_until(lambda: remote_status(fake, task_id) == "SUCCEEDED")
        handle = parts.registry.attach(task_id, None)
        assert PollOutcome.FINISHED == await poll(parts, handle)
        assert MODEL == handle.model == (await handle).model
        assert 1 == parts.events.requests["list"]


@pytest.mark.parametrize("kind", ["malformed", "not_json"])
async def test_garbled_answers_end_a_pending_task_and_cancel_it_remotely(kind):
    """GARBLED_POLLS unreadable answers in a row: RETRY until then, then the task is cancelled."""
    async with polling(one_slot=True) as (fake, parts, _, _):
        await submit(parts)
        handle = await submit(parts)
        fake.faults.add(Fault(kind=kind, endpoints="query"))
        outcomes = [await poll(parts, handle) for _ in range(GARBLED_POLLS)]
        assert [PollOutcome.RETRY] * (GARBLED_POLLS - 1) + [PollOutcome.FINISHED] == outcomes
        with pytest.raises(q.ServerError) as caught:
            await handle
        assert "MalformedResponse" == caught.value.code
        assert f"{GARBLED_POLLS} polls of task {handle.task_id}" in str(caught.value)
        assert "it was cancelled remotely" in str(caught.value)
        assert "CANCELED" == remote_status(fake, handle.task_id)
        assert GARBLED_POLLS == parts.events.retries
        assert {MODEL: 1} == parts.admission.in_flight()  # the first task's slot only


async def test_garbled_answers_of_a_running_task_say_it_may_still_bill():
    """A task that cannot be cancelled any more ends with advice to attach it again."""
    async with polling() as (fake, parts, _, _):
        handle = await submit(parts)
        fake.faults.add(Fault(kind="malformed", endpoints="query"))
        for _ in range(GARBLED_POLLS):
            await poll(parts, handle)
        with pytest.raises(q.ServerError) as caught:
            await handle
        assert "could not be cancelled" in str(caught.value)
        assert f"Client.attach({handle.task_id!r})" in str(caught.value)
        assert "RUNNING" == remote_status(fake, handle.task_id)


async def test_a_readable_answer_resets_the_garbled_count():
    """Garbled answers must come in a row: one readable answer starts the count again."""
    async with polling() as (fake, parts, _, _):
        handle = await submit(parts)
        fault = Fault(kind="malformed", endpoints="query", times=GARBLED_POLLS - 1)
        fake.faults.add(fault)
        first = [await poll(parts, handle) for _ in range(GARBLED_POLLS - 1)]
        assert PollOutcome.PENDING == await poll(parts, handle)
        fake.faults.add(fault)
        second = [await poll(parts, handle) for _ in range(GARBLED_POLLS - 1)]
        assert [PollOutcome.RETRY] * (2 * GARBLED_POLLS - 2) == first + second
        assert not handle.done()


async def test_a_sweep_finding_confirmed_by_the_poll_stretches_the_polls():
    """An announced task found terminal: the sweeper is trusted, per-task polls are stretched."""
    async with polling(duration=0) as (fake, parts, scheduler, _):
        sweeper = Sweeper(
            list_page=parts.queries.list_page,
            live=parts.registry.sweepable,
            announce=parts.registry.announce,
            interval=1.0,
            min_live=1,
            share=1.0,
        )
        parts.poller.bind(scheduler, sweeper)
        assert "<Poller sweeps=True>" == repr(parts.poller)
        handle = await submit(parts)
        assert handle.task_id is not None
        await wait_until(lambda: remote_status(fake, handle.task_id) == "SUCCEEDED")
        assert parts.registry.announce(handle.task_id)
        assert PollOutcome.FINISHED == await poll(parts, handle)
        assert sweeper.trusted
        assert parts.poll_policy.stretch == scheduler.stretch


async def test_an_announced_task_still_running_is_left_to_the_next_sweep():
    """The list was ahead of the task: a RUNNING answer un-announces it, nothing is trusted."""
    async with polling() as (_fake, parts, scheduler, _):
        sweeper = Sweeper(
            list_page=parts.queries.list_page,
            live=parts.registry.sweepable,
            announce=parts.registry.announce,
            interval=1.0,
            min_live=1,
            share=1.0,
        )
        parts.poller.bind(scheduler, sweeper)
        handle = await submit(parts)
        assert handle.task_id is not None
        assert parts.registry.announce(handle.task_id)
        assert PollOutcome.PENDING == await poll(parts, handle)
        assert [handle.task_id] == [task_id for task_id, _ in parts.registry.sweepable()]
        assert not sweeper.trusted
        assert 1.0 == scheduler.stretch


async def test_sweep_confirmations_without_a_sweeper_or_twice_change_nothing_more():
    """No sweeper bound: nothing is stretched; a second confirmation leaves the stretch as set."""
    async with polling(duration=0) as (fake, parts, scheduler, _):
        handles = [await submit(parts) for _ in range(3)]
        for handle in handles:
            assert handle.task_id is not None
            await wait_until(lambda h=handle: remote_status(fake, h.task_id) == "SUCCEEDED")
            assert parts.registry.announce(handle.task_id)
        assert PollOutcome.FINISHED == await poll(parts, handles[0])
        assert 1.0 == scheduler.stretch  # no sweeper: nothing to trust
        sweeper = Sweeper(
            list_page=parts.queries.list_page,
            live=parts.registry.sweepable,
            announce=parts.registry.announce,
            interval=1.0,
            min_live=1,
            share=1.0,
        )
        parts.poller.bind(scheduler, sweeper)
        for handle in handles[1:]:
            assert PollOutcome.FINISHED == await poll(parts, handle)
            assert parts.poll_policy.stretch == scheduler.stretch
