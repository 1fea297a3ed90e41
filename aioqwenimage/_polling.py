"""
One poll of one task: the query, and what its answer means for the generation.

The scheduler (``_scheduler``) decides when each task is polled and meters the polls; this module
sends one ``GET /tasks/{id}`` and turns the answer into the scheduler's `PollOutcome`. A terminal
answer goes to the registry's `finished`, the one entry for "this task finished". A service that
keeps answering garbage is not asked for ever: after `GARBLED_POLLS` unreadable answers in a row
the task is cancelled remotely (if still PENDING) and ended with `ServerError`.
"""

from __future__ import annotations

import logging
from collections import deque

import anyio

from aioqwenimage._answers import Verdict, verdict
from aioqwenimage._errors import QwenImageError, ServerError, TransportError
from aioqwenimage._events import Recorder
from aioqwenimage._handle import TaskHandle
from aioqwenimage._models import EventKind, TaskStatus
from aioqwenimage._notified_polling import NotifiedPolling
from aioqwenimage._queries import TaskQueries
from aioqwenimage._registry import Flight, Registry
from aioqwenimage._scheduler import PollOutcome, PollScheduler
from aioqwenimage._settings import PollPolicy
from aioqwenimage._snapshot import TaskSnapshot
from aioqwenimage._sweep import Sweeper
from aioqwenimage._transport import PoolKind, Transport

__all__ = ["GARBLED_POLLS", "SWEEP_RECORD", "Poller"]

logger = logging.getLogger("aioqwenimage")

# Polls of one task answered in a row with bodies that cannot be read (not JSON, cut off at the
# size cap) before the task ends with `ServerError`: a service answering garbage will not heal
# by being asked again every few seconds for ever.
GARBLED_POLLS = 5
# The last this many tasks whose polls were stretched, left to sweeps: when more than half were
# found ended by their own (late) polls, sweeps do not see this service's tasks end, and polls
# return to their usual pace. A few such tasks are ordinary (one ended just before its poll).
SWEEP_RECORD = 8


class Poller:
    """The scheduler's poll callback: query a task, report what its answer says."""

    def __init__(
        self,
        transport: Transport,
        registry: Registry,
        queries: TaskQueries,
        events: Recorder,
        *,
        policy: PollPolicy,
        time_scale: float,
    ) -> None:
        self._transport = transport
        self._registry = registry
        self._queries = queries
        self._events = events
        self._policy = policy
        self._time_scale = time_scale
        self._scheduler: PollScheduler[TaskHandle] | None = None
        self._sweeper: Sweeper | None = None
        self._notified: NotifiedPolling | None = None
        # Of the last tasks left to sweeps: whether a sweep saw each end before its poll did.
        self._seen_by_sweeps: deque[bool] = deque(maxlen=SWEEP_RECORD)

    def __repr__(self) -> str:
        return f"<Poller sweeps={self._sweeper is not None}>"

    def bind(
        self,
        scheduler: PollScheduler[TaskHandle],
        sweeper: Sweeper | None,
        notified: NotifiedPolling | None = None,
    ) -> None:
        """
        The scheduler that calls `poll`, the sweeper whose findings polls confirm, and what
        decides polling from notifications (told of every end a poll finds).
        """
        self._scheduler = scheduler
        self._sweeper = sweeper
        self._notified = notified
        if sweeper is not None and notified is None:
            self._leave_crowds_to_sweeps()

    async def poll(self, handle: TaskHandle) -> PollOutcome:
        """One query of one task, for the scheduler; never raises."""
        flight = self._registry.get(handle)
        task_id = handle.task_id
        if flight is None or task_id is None:
            return PollOutcome.FINISHED
        self._events.sent("poll")
        notified_before = flight.notified
        try:
            response = await self._transport.send(PoolKind.QUERY, "GET", f"/tasks/{task_id}")
        except TransportError as exc:
            self._events.retried()
            self._registry.emit(EventKind.RETRIED, handle, error=type(exc).__name__)
            return PollOutcome.RETRY
        outcome = verdict(response)
        # Any 429 on a poll, a quota code's included, pauses the budget and asks again: the
        # task may still run (and bill), so a poll never ends a wait on a throttle.
        if outcome is Verdict.THROTTLED or response.status == 429:  # noqa: PLR2004
            self._events.throttled += 1
            self._registry.emit(EventKind.THROTTLED, handle, retry_after=response.retry_after)
            return PollOutcome.throttled(response.retry_after)
        if outcome is Verdict.RETRY and response.ok:  # a 2xx whose body cannot be read
            return await self._garbled(flight, response.error())
        if outcome is Verdict.RETRY:
            self._events.retried()
            self._registry.emit(EventKind.RETRIED, handle, status=response.status)
            return PollOutcome.RETRY
        if outcome is Verdict.FATAL:
            self._registry.end(flight, response.error())
            return PollOutcome.FINISHED
        assert response.body is not None  # noqa: S101
        self._events.polls += 1
        handle.polls += 1
        try:
            snapshot = TaskSnapshot.from_json(
                response.body,
                task_id=task_id,
                requested=flight.requested,
                headers=response.headers,
            )
        except Exception as exc:  # noqa: BLE001 - parsing is total; if not, never spin on it
            why = f"the answer could not be parsed ({type(exc).__name__})"
            return await self._garbled(flight, ServerError(why, status=response.status))
        flight.garbled = 0
        if handle.model is None and snapshot.status is TaskStatus.SUCCEEDED:
            # Attached without a model: the list knows it. Asked before the poll is reported,
            # so that whoever hears of the poll finds the handle resolved.
            handle.model = await self._queries.model_of(task_id)
        self._registry.emit(EventKind.POLLED, handle, status=snapshot.status.value)
        if not snapshot.status.is_terminal:
            if snapshot.status is TaskStatus.RUNNING and handle.status is not TaskStatus.RUNNING:
                handle._observe(TaskStatus.RUNNING)  # noqa: SLF001
                self._registry.emit(EventKind.RUNNING, handle)
            flight.announced = False  # the list was ahead of the task itself: sweep it again
            if flight.notified and not notified_before:
                # The notification came while this poll was in the air: its answer may predate
                # the end, so ask again soon rather than at the stretched fallback time.
                return PollOutcome.retry()
            flight.notified = False  # early or forged: the fallback schedule goes on
            return PollOutcome.PENDING
        if flight.announced:
            self._sweep_confirmed()
        elif self._scheduler is not None and self._scheduler.left_to_sweeps(handle):
            self._sweep_missed()
        if self._notified is not None:
            self._notified.ended(flight, snapshot)
        self._registry.finished(flight, snapshot)
        return PollOutcome.FINISHED

    def _sweep_confirmed(self) -> None:
        """
        A sweep saw this completion first and the task's own answer agrees: sweeps work on this
        service, so per-task polls become the slow fallback they are meant to be.
        """
        if self._scheduler is None or self._sweeper is None:
            return
        self._seen_by_sweeps.append(True)
        if not self._sweeper.trusted and self._notified is None:
            self._leave_crowds_to_sweeps()  # again, after a `_sweep_missed`
        self._sweeper.trust()
        if self._scheduler.stretch != self._policy.stretch:
            self._scheduler.set_stretch(self._policy.stretch)

    def _leave_crowds_to_sweeps(self) -> None:
        """
        Among many live tasks, sweeps run and should see each end first: a task submitted then
        is first polled later (`PollPolicy.stretch`), even before sweeps have proven to work, so
        that the first tasks of a batch are not all polled while still running.
        """
        assert self._scheduler is not None  # noqa: S101
        self._scheduler.stretch_crowds(self._policy.stretch, self._policy.sweep_min_live)

    def _sweep_missed(self) -> None:
        """
        A task left to sweeps was found ended by its own poll. When most are, sweeps do not see
        this service's tasks end (a list that answers errors, or not our tasks): polls return to
        their usual pace until a sweep finds a task ended first again.
        """
        assert self._scheduler is not None  # noqa: S101
        assert self._sweeper is not None  # noqa: S101
        record = self._seen_by_sweeps
        record.append(False)
        missed = record.count(False)
        if self._notified is not None or 2 * missed <= SWEEP_RECORD:
            return
        logger.warning(
            "sweeps saw %d of the last %d finished tasks end before their polls did; "
            "polling tasks at the usual pace",
            SWEEP_RECORD - missed,
            SWEEP_RECORD,
        )
        record.clear()
        self._sweeper.distrust()
        self._scheduler.stretch_crowds(1.0, 0)
        self._scheduler.set_stretch(1.0)

    async def _garbled(self, flight: Flight, error: QwenImageError) -> PollOutcome:
        """
        A poll answered with an unreadable body: retried, a few times in a row at most; then
        the task is cancelled remotely (if still PENDING: nobody will wait for it) and ended.
        """
        flight.garbled += 1
        self._events.retried()
        self._registry.emit(EventKind.RETRIED, flight.handle, error="MalformedResponse")
        if flight.garbled < GARBLED_POLLS:
            return PollOutcome.RETRY
        task_id = flight.handle.task_id
        assert task_id is not None  # noqa: S101 - only tasks are polled
        with anyio.CancelScope(shield=True), anyio.move_on_after(30 * self._time_scale):
            cancelled = await self._queries.cancel(task_id)
        fate = (
            "it was cancelled remotely"
            if cancelled
            else f"it could not be cancelled, so it may still run and bill: "
            f"Client.attach({task_id!r}) follows it again"
        )
        self._registry.end(
            flight,
            ServerError(
                f"{flight.garbled} polls of task {task_id} in a row were answered with bodies "
                f"that cannot be read (last: {error}); stopped polling it, and {fate}",
                code="MalformedResponse",
                status=getattr(error, "status", None),
                request_id=getattr(error, "request_id", None),
            ),
        )
        return PollOutcome.FINISHED
