"""
The Registry: live flights by handle and by id, and the one place a generation ends.

Flights are made, admitted and registered the way paid requests do it, with task ids of the
test's choosing: the registry never asks the service about them. The poll scheduler is built but
idle, so that "polled" reads as "registered with the scheduler".
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

import aioqwenimage as q
from aioqwenimage import _wiring
from aioqwenimage._models import EventKind, TaskEvent, TaskStatus
from aioqwenimage._registry import Flight
from aioqwenimage._scheduler import PollScheduler
from aioqwenimage._snapshot import TaskSnapshot
from aioqwenimage.testing import FakeDashScope
from tests.unit.client_parts import MODEL, SYNC_MODEL, build, emulator, request, running


@pytest.fixture
async def fake() -> AsyncIterator[FakeDashScope]:
    async with emulator() as emulated:
        yield emulated


@pytest.fixture
def events() -> list[TaskEvent]:
    return []


@pytest.fixture
async def parts(fake, events) -> AsyncIterator[tuple[_wiring.Parts, PollScheduler[q.TaskHandle]]]:
    built = build(fake, hooks=(events.append,))
    async with running(built) as scheduler:
        assert scheduler is not None
        yield built, scheduler


async def created(parts: _wiring.Parts, task_id: str, **kwargs: Any) -> Flight:
    """A flight admitted and registered as created with `task_id`, as a create makes one."""
    prepared = request(**kwargs)
    flight = parts.registry.new_flight(prepared, parts.admission.lane(prepared), None)
    await parts.admission.admit(flight)
    assert flight.slot is not None
    flight.slot.created = True
    parts.registry.created(flight, task_id)
    return flight


def snapshot(task_id: str, status: str, **output: Any) -> TaskSnapshot:
    body = {"request_id": "r-1", "output": {"task_id": task_id, "task_status": status, **output}}
    return TaskSnapshot.from_json(body)


def kinds(events: list[TaskEvent]) -> list[EventKind]:
    return [event.kind for event in events]


async def test_created_registers_the_task_by_handle_and_id_and_polls_it(parts, events):
    """A created task is live, found by handle and id, polled, counted and reported once."""
    parts, scheduler = parts
    flight = await created(parts, "t-1")
    handle = flight.handle
    assert "t-1" == handle.task_id
    assert flight is parts.registry.get(handle) is parts.registry.by_id("t-1")
    assert handle in scheduler
    assert (1, 1) == (parts.registry.live, parts.events.submitted)
    assert ("t-1",) == parts.registry.created_task_ids
    assert flight.created_at is not None
    assert [EventKind.SUBMITTED] == kinds(events)


async def test_end_resolves_once_releases_the_slot_and_stops_polling(parts, events):
    """`end` frees the slot, forgets and unpolls the task, resolves the handle; a second is moot."""
    parts, scheduler = parts
    flight = await created(parts, "t-1")
    handle = flight.handle
    assert {MODEL: 1} == parts.admission.in_flight()
    first = q.ServerError("first")
    parts.registry.end(flight, first)
    parts.registry.end(flight, q.ServerError("second"))
    assert {} == parts.admission.in_flight()
    assert handle not in scheduler
    assert (None, None) == (parts.registry.get(handle), parts.registry.by_id("t-1"))
    assert 0 == parts.registry.live
    with pytest.raises(q.ServerError) as caught:
        await handle
    assert caught.value is first
    assert {"ERROR": 1} == dict(parts.events.finished)
    assert [EventKind.SUBMITTED, EventKind.FINISHED] == kinds(events)
    assert {"error": "ServerError"} == dict(events[-1].detail)


async def test_end_stops_a_synchronous_call(parts):
    """Ending a synchronous call's flight cancels its request's scope."""
    parts, _ = parts
    prepared = request(model=SYNC_MODEL)
    flight = parts.registry.new_flight(prepared, parts.admission.lane(prepared), None)
    flight.sync_scope = anyio.CancelScope()
    parts.registry.add(flight)
    assert 1 == parts.registry.live
    parts.registry.end(flight, q.TaskCanceledError("cancelled", task_id=None))
    assert flight.sync_scope.cancel_called
    assert 0 == parts.registry.live


async def test_finished_with_images_resolves_the_handle_with_its_result(parts):
    """A SUCCEEDED snapshot with URLs gives the handle its result and counts a success."""
    parts, _ = parts
    flight = await created(parts, "t-1", prompt="a red fox")
    url = "http://127.0.0.1:9/t-1.png"
    parts.registry.finished(flight, snapshot("t-1", "SUCCEEDED", results=[{"url": url}]))
    result = await flight.handle
    assert ([url], "t-1", MODEL) == ([i.url for i in result.images], result.task_id, result.model)
    assert "a red fox" == result.prompt
    assert TaskStatus.SUCCEEDED is flight.handle.status
    assert {"SUCCEEDED": 1} == dict(parts.events.finished)
    assert {} == parts.admission.in_flight()


@pytest.mark.parametrize(
    ("status", "output", "error", "final"),
    [
        ("FAILED", {"code": "InternalError", "message": "boom"}, q.TaskFailedError, "FAILED"),
        ("SUCCEEDED", {"results": []}, q.TaskFailedError, "FAILED"),
        ("CANCELED", {}, q.TaskCanceledError, "CANCELED"),
        ("UNKNOWN", {}, q.TaskExpiredError, "UNKNOWN"),
        ("FAILED", {"code": "DataInspectionFailed"}, q.TaskModeratedError, "FAILED"),
    ],
)
async def test_finished_without_images_fails_the_handle_by_how_it_ended(
    parts, status, output, error, final
):
    """A terminal snapshot without images fails the handle with its error and final status."""
    parts, _ = parts
    flight = await created(parts, "t-1")
    parts.registry.finished(flight, snapshot("t-1", status, **output))
    with pytest.raises(error) as caught:
        await flight.handle
    assert error is type(caught.value)
    assert "t-1" == caught.value.task_id
    assert final == flight.handle.status.value
    assert {final: 1} == dict(parts.events.finished)
    assert {} == parts.admission.in_flight()


async def test_settle_resolves_the_handle_but_the_task_stays_live(parts, events):
    """Settled early, the handle is done while its task keeps its slot and its polls."""
    parts, scheduler = parts
    flight = await created(parts, "t-1")
    handle = flight.handle
    handle._observe(TaskStatus.RUNNING)
    told = q.TaskCanceledError("cancelled locally", task_id="t-1")
    parts.registry.settle(handle, told)
    assert handle.done()
    assert flight is parts.registry.get(handle)
    assert handle in scheduler
    assert {MODEL: 1} == parts.admission.in_flight()
    assert 0 == parts.registry.live  # live counts unresolved generations


async def test_a_settled_task_that_ends_later_is_observed_not_resolved_again(parts, events):
    """Its terminal status is recorded and reported UNOBSERVED; the waiter's error stands."""
    parts, _ = parts
    flight = await created(parts, "t-1")
    told = q.TaskCanceledError("cancelled locally", task_id="t-1")
    parts.registry.settle(flight.handle, told)
    parts.registry.finished(flight, snapshot("t-1", "SUCCEEDED", results=[{"url": "http://x/1"}]))
    assert TaskStatus.SUCCEEDED is flight.handle.status
    with pytest.raises(q.TaskCanceledError) as caught:
        await flight.handle
    assert caught.value is told
    assert [EventKind.SUBMITTED, EventKind.FINISHED, EventKind.UNOBSERVED] == kinds(events)
    assert {"ERROR": 1} == dict(parts.events.finished)
    assert {} == parts.admission.in_flight()


async def test_attach_polls_an_existing_task_at_once_without_a_slot(parts):
    """An attached task is live and polled, holds no slot, and is not found by its id."""
    parts, scheduler = parts
    handle = parts.registry.attach("t-old", None)
    assert ("t-old", None) == (handle.task_id, handle.model)
    assert handle in scheduler
    assert parts.registry.get(handle) is not None
    assert parts.registry.by_id("t-old") is None
    assert {} == parts.admission.in_flight()
    assert () == parts.registry.created_task_ids


async def test_close_returns_exactly_the_pending_tasks_nobody_holds(parts):
    """Owned, abandoned and undelivered PENDING tasks are returned; every generation ends."""
    parts, _ = parts
    given = await created(parts, "t-given")
    given.delivered = True
    owned = await created(parts, "t-owned")
    owned.delivered = owned.owned = True
    abandoned = await created(parts, "t-abandoned")
    abandoned.delivered = abandoned.abandoned = True
    undelivered = await created(parts, "t-undelivered")
    running_owned = await created(parts, "t-running")
    running_owned.delivered = running_owned.owned = True
    running_owned.handle._observe(TaskStatus.RUNNING)
    attached = parts.registry.attach("t-attached", MODEL)
    flights = [given, owned, abandoned, undelivered, running_owned]

    orphans = parts.registry.close()

    assert ["t-owned", "t-abandoned", "t-undelivered"] == orphans
    assert parts.registry.closed
    assert (0, {}) == (parts.registry.live, parts.admission.in_flight())
    for handle in [f.handle for f in flights] + [attached]:
        with pytest.raises(q.ClientClosedError) as caught:
            await handle
        assert handle.task_id == caught.value.task_id
        assert "goes on remotely" in str(caught.value)


async def test_sweeps_see_unannounced_tasks_and_announce_each_once(parts):
    """`sweepable` lists created tasks not yet announced; `announce` is news once, for ours only."""
    parts, _ = parts
    first = await created(parts, "t-1")
    await created(parts, "t-2")
    parts.registry.attach("t-attached", MODEL)
    assert {"t-1", "t-2"} == {task_id for task_id, _ in parts.registry.sweepable()}
    assert first.created_at == dict(parts.registry.sweepable())["t-1"]
    assert parts.registry.announce("t-1")
    assert first.announced
    assert not parts.registry.announce("t-1")
    assert not parts.registry.announce("t-attached")
    assert not parts.registry.announce("t-nobody")
    assert ["t-2"] == [task_id for task_id, _ in parts.registry.sweepable()]


async def test_once_sweeps_proved_right_an_announced_end_frees_the_slot_at_once(parts):
    """Trusted sweeps: the list saying a task ended frees its slot before its result is fetched."""
    parts, scheduler = parts
    early = await created(parts, "t-1")
    trusted = await created(parts, "t-2")
    assert parts.registry.announce("t-1")
    assert early.slot is not None  # sweeps not yet confirmed here: held until its own poll
    parts.registry.bind(scheduler, lambda: True)
    assert parts.registry.announce("t-2")
    assert trusted.slot is None
    assert {MODEL: 1} == parts.admission.in_flight()
    assert not trusted.handle.done()  # its result is still to be fetched
    assert trusted.handle in scheduler


@pytest.mark.parametrize(("end", "kept"), [("10:00:00.000", 1), ("10:00:20.000", 0)])
async def test_a_finished_task_teaches_the_scheduler_its_plausible_duration(parts, end, kept):
    """A terminal snapshot's server duration is learnt, unless longer than the client saw."""
    parts, scheduler = parts
    flight = await created(parts, "t-1")
    times = {"submit_time": "2025-01-01 10:00:00.000", "end_time": f"2025-01-01 {end}"}
    parts.registry.finished(flight, snapshot("t-1", "FAILED", code="InternalError", **times))
    assert kept == scheduler.durations.count(MODEL)
