"""
The live generations of one client, and the one place each of them ends.

A generation is live from its admission until its handle resolves, and a task nobody waits for
any more stays live until the service says it ended, so that its in-flight slot is held exactly
as long as the service counts the task. Every way of learning that a task finished (its own poll;
a notification or a sweep, each confirmed by one poll) enters through `Registry.finished`;
every way a generation ends (result, failure, cancel, close) goes through `Registry.end`, which
releases the slot, stops the polls and resolves the handle, once. Sweeps read the live tasks
here and announce what the task list says finished, and a notification names a task (`notify`);
either way the task is then polled at once.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import attrs

from aioqwenimage._admission import Admission, Slot
from aioqwenimage._download import Downloader
from aioqwenimage._errors import ClientClosedError
from aioqwenimage._events import Recorder
from aioqwenimage._handle import TaskHandle
from aioqwenimage._lane import SubmitLane
from aioqwenimage._models import EventKind, GenerationResult, TaskStatus
from aioqwenimage._outcomes import EventfulFetcher, error_of, result_of
from aioqwenimage._requests import PreparedRequest
from aioqwenimage._scheduler import PollScheduler
from aioqwenimage._snapshot import TaskSnapshot

__all__ = ["Flight", "Registry", "closed_error"]

Canceller = Callable[[TaskHandle], Awaitable[bool]]


@attrs.define(eq=False)  # identity: flights are keys of job tables
class Flight:
    """What the client holds for one generation until it ends."""

    handle: TaskHandle
    request: PreparedRequest | None  # None: attached by id
    lane: SubmitLane | None
    slot: Slot | None = None  # the in-flight slot, while held
    sync_scope: anyio.CancelScope | None = None
    on_sending: Callable[[], Awaitable[object]] | None = None
    created_at: float | None = None  # epoch seconds, for the sweeps' list window
    announced: bool = False  # a sweep found it finished; its poll is on the way
    notified: bool = False  # a notification said it finished; its poll is on the way
    owned: bool = False  # nobody but the library holds the handle (generate, map)
    delivered: bool = False  # the create's caller has the handle (until then, nobody has)
    abandoned: bool = False  # nobody waits for it any more; tracked only to free its slot
    sending: bool = False  # a create may be on the wire: it must be followed to its answer
    job: anyio.CancelScope | None = None  # the create's own task, while it admits or sends
    garbled: int = 0  # unreadable poll answers in a row

    @property
    def requested(self) -> int | None:
        """The number of images asked for, when known (to tell partial results)."""
        if self.request is None:
            return None
        n = self.request.body["parameters"].get("n")
        return n if isinstance(n, int) else None


def closed_error(task_id: str | None) -> ClientClosedError:
    """The error of a generation the closing of its client ended."""
    what = f"task {task_id} goes on remotely unless it was cancelled" if task_id else None
    return ClientClosedError(
        "the client was closed before the generation ended" + (f"; {what}" if what else ""),
        task_id=task_id,
    )


class Registry:
    """
    Every live generation, by handle and by task id; the one place a generation ends.

    `bind` gives it the poll scheduler once the client opens (inside the event loop).
    """

    def __init__(
        self,
        *,
        admission: Admission,
        downloader: Downloader,
        events: Recorder,
        canceller: Canceller,
    ) -> None:
        self._admission = admission
        self._downloader = downloader
        self._events = events
        self._canceller = canceller
        self._flights: dict[TaskHandle, Flight] = {}
        self._by_id: dict[str, Flight] = {}  # the same flights, once they have a task id
        self._scheduler: PollScheduler[TaskHandle] | None = None
        self._sweeps_trusted: Callable[[], bool] = lambda: False
        # Tasks this client created: never the unknown outcome of one of its uncertain creates.
        self._created: deque[str] = deque(maxlen=100_000)
        self.closed = False  # set when the client closes: nothing is sent any more

    def __repr__(self) -> str:
        return f"<Registry live={self.live} tasks={len(self._by_id)}>"

    def bind(
        self,
        scheduler: PollScheduler[TaskHandle],
        sweeps_trusted: Callable[[], bool] = lambda: False,
    ) -> None:
        """The scheduler that polls the live tasks; whether sweeps have proved right here."""
        self._scheduler = scheduler
        self._sweeps_trusted = sweeps_trusted

    @property
    def live(self) -> int:
        """Generations not yet resolved."""
        return sum(1 for flight in self._flights.values() if not flight.handle.done())

    @property
    def created_task_ids(self) -> tuple[str, ...]:
        """The tasks this client created (the latest 100,000)."""
        return tuple(self._created)

    def flights(self) -> list[Flight]:
        """The live flights now (a copy: ending one while iterating is safe)."""
        return list(self._flights.values())

    def get(self, handle: TaskHandle) -> Flight | None:
        return self._flights.get(handle)

    def by_id(self, task_id: str) -> Flight | None:
        return self._by_id.get(task_id)

    def new_flight(
        self,
        request: PreparedRequest,
        lane: SubmitLane,
        on_sending: Callable[[], Awaitable[object]] | None,
    ) -> Flight:
        """A generation about to be admitted (registered once its task exists or call starts)."""
        handle = TaskHandle(
            model=request.model, task_id=None, canceller=self._canceller, prompt=request.prompt
        )
        return Flight(handle=handle, request=request, lane=lane, on_sending=on_sending)

    def add(self, flight: Flight) -> None:
        """Track a synchronous call, which is live from now on."""
        self._flights[flight.handle] = flight

    def created(self, flight: Flight, task_id: str) -> None:
        """Its create was answered with `task_id`: live and polled until the task ends."""
        handle = flight.handle
        handle._set_task_id(task_id)  # noqa: SLF001 - the client owns its handles
        self._created.append(task_id)
        flight.created_at = time.time()
        self._flights[handle] = flight
        self._by_id[task_id] = flight
        # Registered before anything can raise: a task that exists is always polled until it
        # ends, which is what releases its slot.
        assert self._scheduler is not None  # noqa: S101
        self._scheduler.add(handle, handle.model, submitted_at=anyio.current_time())
        self._events.submitted += 1
        self.emit(EventKind.SUBMITTED, handle)

    def attach(self, task_id: str, model: str | None) -> TaskHandle:
        """A handle for an existing task, polled at once (it may be long done)."""
        handle = TaskHandle(model=model, task_id=task_id, canceller=self._canceller)
        # Not indexed by id: sweeps look for the tasks this client created, and `Client.cancel`
        # of an attached task's id cancels it remotely without deciding for its handle.
        self._flights[handle] = Flight(handle=handle, request=None, lane=None)
        assert self._scheduler is not None  # noqa: S101
        self._scheduler.add(handle, model, submitted_at=anyio.current_time(), first_due=0.0)
        return handle

    def close(self) -> list[str]:
        """
        The client is closing: every live generation ends with `ClientClosedError`. Returns
        the ``PENDING`` tasks nobody holds (to cancel): those of `generate` and `map`, those
        whose caller left, and those whose handle never reached its caller. Tasks whose
        handles were given out go on remotely (`Client.attach` picks them up).
        """
        self.closed = True
        orphans: list[str] = []
        for flight in self.flights():
            handle = flight.handle
            # A task whose create was answered but whose handle has not reached its caller yet
            # is held by nobody: left running, it would be paid for and never seen.
            undelivered = flight.request is not None and not flight.delivered
            gone = flight.owned or flight.abandoned or undelivered
            if handle.task_id and gone and handle.status is TaskStatus.PENDING:
                orphans.append(handle.task_id)
            self.end(flight, closed_error(handle.task_id))
        return orphans

    # --- what sweeps see and tell ------------------------------------------------------------

    def sweepable(self) -> Iterator[tuple[str, float]]:
        """The live tasks (id, creation time) that no sweep announced yet."""
        for task_id, flight in self._by_id.items():
            if flight.created_at is not None and not flight.announced:
                yield task_id, flight.created_at

    def announce(self, task_id: str) -> bool:
        """The task list says `task_id` finished: poll it now. Whether it was news."""
        flight = self._by_id.get(task_id)
        if flight is None or flight.announced:
            return False
        flight.announced = True
        assert self._scheduler is not None  # noqa: S101
        if self._sweeps_trusted():
            # The list says the task ended: the service counts it no longer, so neither do
            # the lanes. Its result still needs its own query, which may wait for the budget:
            # the slot must not wait with it (with queries scarce, slots would idle).
            self._admission.release(flight)
        self._scheduler.poll_now(flight.handle)  # False: a poll is in the air already
        return True

    def notify(self, task_id: str) -> bool:
        """A completion notification names `task_id`: poll it now. Whether it was news."""
        flight = self._by_id.get(task_id)
        if flight is None or flight.notified or self._scheduler is None:
            return False  # another process's task, an ended one, or one being confirmed
        flight.notified = True
        self._scheduler.poll_now(flight.handle)  # False: a poll is in the air already
        self.emit(EventKind.NOTIFIED, flight.handle)
        return True

    # --- the end of a generation -------------------------------------------------------------

    def finished(self, flight: Flight, snapshot: TaskSnapshot) -> None:
        """The service says the task ended, with this terminal `snapshot`: resolve it."""
        handle = flight.handle
        if snapshot.duration is not None and handle.model is not None and self._scheduler:
            seen = None if flight.created_at is None else time.time() - flight.created_at
            self._scheduler.durations.observe(handle.model, snapshot.duration, elapsed=seen)
        if snapshot.status is TaskStatus.SUCCEEDED and snapshot.urls:
            model, task_id = handle.model, handle.task_id
            # The callback names the task by value, never the handle: the handle holds the
            # result, the result its images, and a cycle back would keep every finished
            # generation alive until the cyclic garbage collector happened to run.
            fetcher = EventfulFetcher(
                self._downloader,
                lambda path: self._events.report(
                    EventKind.DOWNLOADED, model, task_id, TaskStatus.SUCCEEDED, {"path": str(path)}
                ),
            )
            result = result_of(snapshot, model=handle.model, prompt=handle.prompt, fetcher=fetcher)
            self.end(flight, None, result=result)
            return
        error, status = error_of(snapshot)
        self.end(flight, error, status=status)

    def end(
        self,
        flight: Flight,
        error: BaseException | None,
        *,
        result: GenerationResult | None = None,
        status: TaskStatus | None = None,
    ) -> None:
        """The one place a generation ends: slot released, polling stopped, handle resolved."""
        handle = flight.handle
        self._flights.pop(handle, None)
        if handle.task_id is not None and self._by_id.get(handle.task_id) is flight:
            del self._by_id[handle.task_id]
        self._admission.release(flight)
        if self._scheduler is not None:
            self._scheduler.remove(handle)
        if flight.sync_scope is not None:
            flight.sync_scope.cancel()
        final = TaskStatus.SUCCEEDED if result is not None else status
        # Nobody waits for it: its waiters were told earlier (a local cancel of a RUNNING task),
        # or its caller left and the task ended before the cancel that followed was decided.
        unwatched = handle.done() or (flight.abandoned and final is not TaskStatus.CANCELED)
        if unwatched and final is not None and not isinstance(error, ClientClosedError):
            # The handle still reports the last state known of the remote task.
            handle._observe(final)  # noqa: SLF001
            self.emit(EventKind.UNOBSERVED, handle)
        self.settle(handle, error, result=result, status=status)

    def settle(
        self,
        handle: TaskHandle,
        error: BaseException | None,
        *,
        result: GenerationResult | None = None,
        status: TaskStatus | None = None,
    ) -> None:
        """Resolve the handle (once), count the outcome and report it; the task stays live."""
        if handle.done():
            return
        if result is not None:
            handle._resolve(result)  # noqa: SLF001
        else:
            assert error is not None  # noqa: S101
            handle._fail(error, status)  # noqa: SLF001
        self._events.finished[handle.status.value if result is not None or status else "ERROR"] += 1
        self.emit(EventKind.FINISHED, handle, error=type(error).__name__ if error else None)

    def emit(self, kind: EventKind, handle: TaskHandle, **detail: Any) -> None:
        """Report an event of `handle`'s generation."""
        self._events.report(kind, handle.model, handle.task_id, handle.status, detail)
