"""
The task store: every async task's lifecycle, computed from timestamps, on an injected clock.

No timer runs per task. A task knows when it was submitted, when it is (or was) scheduled and when
it ends; its status at any moment follows from those numbers, so 5,000 tasks in flight cost nothing
until someone asks. Only in-flight caps need events: a task waiting for a slot gets its times when a
slot frees, and slots free in end-time order from one heap, processed up to ``now`` whenever the
store is touched (each step O(log n)).

All times are real epoch seconds; simulated durations arrive already scaled by the caller.
"""

from __future__ import annotations

import enum
import heapq
import itertools
from collections import deque
from typing import TYPE_CHECKING, Final

import attrs

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from aioqwenimage._catalog import Protocol

__all__ = ["CapExceeded", "Task", "TaskStatus", "TaskStore"]


class TaskStatus(enum.Enum):
    """The documented task statuses (§5.2)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    UNKNOWN = "UNKNOWN"

    @property
    def terminal(self) -> bool:
        """Whether the status never changes again."""
        return self in _TERMINAL


_TERMINAL: Final = frozenset(
    {TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELED, TaskStatus.UNKNOWN}
)


@attrs.define(eq=False)
class Task:
    """
    One async task. Mutable: the store fills in the schedule; handlers count queries.

    Attributes:
        failure: ``(code, message)`` when the task ends FAILED.
        image_failures: Per image, ``None`` or the ``(code, message)`` of its failure.
        scheduled: When it leaves PENDING; ``None`` while it waits for a slot.
        ended: When it reaches its final status; ``None`` while it waits for a slot.
    """

    task_id: str
    model: str
    protocol: Protocol
    request_id: str
    prompt: str
    actual_prompt: str | None
    size: tuple[int, int]
    n: int
    submitted: float
    delay: float
    duration: float
    family: str
    failure: tuple[str, str] | None = None
    image_failures: tuple[tuple[str, str] | None, ...] = ()
    scheduled: float | None = None
    ended: float | None = None
    canceled: bool = False
    queries: int = 0
    first_terminal_query: float | None = None
    # The last rendered output, per status: a terminal task's answer never changes.
    rendered: tuple[TaskStatus, bytes] | None = None

    def status_at(self, now: float) -> TaskStatus:
        """The status at `now` (assuming the store has been advanced to it)."""
        if self.canceled:
            return TaskStatus.CANCELED
        if self.scheduled is None or now < self.scheduled:
            return TaskStatus.PENDING
        if self.ended is None or now < self.ended:
            return TaskStatus.RUNNING
        return TaskStatus.FAILED if self.failure is not None else TaskStatus.SUCCEEDED

    @property
    def succeeded_images(self) -> int:
        """How many images succeed (the billed ``image_count``)."""
        return sum(1 for failure in self.image_failures if failure is None)


class CapExceeded(Exception):  # noqa: N818 - a signal to the caller, not an error
    """A create was refused because its model's in-flight cap is full (``over_cap="reject"``)."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"in-flight cap full for {wait:.3f}s more")
        self.wait = wait
        """Real seconds until the earliest running task of the model ends."""


@attrs.define
class _Lane:
    cap: int | None
    occupied: int = 0
    # Tasks PENDING or RUNNING (waiting for a slot or not), now and at most.
    live: int = 0
    peak_live: int = 0
    running: set[Task] = attrs.field(factory=set)
    waiting: deque[Task] = attrs.field(factory=deque)


class TaskStore:
    """
    Every task, with lazily computed lifecycles and per-model in-flight caps.

    Args:
        retention: Real seconds a task stays queryable after submission; then it is UNKNOWN.
    """

    def __init__(self, *, retention: float) -> None:
        self.retention = retention
        # Told each task whose end time is fixed (the publisher of completion events).
        self.on_start: Callable[[Task], None] | None = None
        self._reset()

    def _reset(self) -> None:
        self._tasks: dict[str, Task] = {}
        self._history: dict[str, Task] = {}
        self._by_age: deque[Task] = deque()
        self._ends: list[tuple[float, int, Task]] = []
        self._seq = itertools.count()
        self._lanes: dict[str, _Lane] = {}
        self.in_flight = 0
        self.peak_in_flight = 0

    def __repr__(self) -> str:
        return f"<TaskStore tasks={len(self._tasks)} in_flight={self.in_flight}>"

    def __len__(self) -> int:
        return len(self._tasks)

    def history(self) -> Iterator[Task]:
        """Every task ever created (expired ones too), in creation order."""
        return iter(self._history.values())

    def clear(self) -> None:
        """Forget every task (the emulator's reset)."""
        self._reset()

    # --- the event loop of the simulation ---------------------------------------------------

    def advance(self, now: float) -> None:
        """Free the slots of tasks ended by `now`, start waiting ones, drop expired ones."""
        ends = self._ends
        while ends and ends[0][0] <= now:
            end, _, task = heapq.heappop(ends)
            if task.ended != end:
                continue  # rescheduled by a cancel; its slot was released then
            self._leave(task)
            self._release(task, end)
        cutoff = now - self.retention
        by_age = self._by_age
        while by_age and by_age[0].submitted <= cutoff:
            self._tasks.pop(by_age.popleft().task_id, None)

    def _leave(self, task: Task) -> None:
        """`task` is no longer in flight (it ended or was cancelled)."""
        self.in_flight -= 1
        self._lanes[task.model].live -= 1

    def _release(self, task: Task, at: float) -> None:
        lane = self._lanes[task.model]
        lane.occupied -= 1
        lane.running.discard(task)
        while lane.waiting and (lane.cap is None or lane.occupied < lane.cap):
            successor = lane.waiting.popleft()
            if not successor.canceled:
                self._start(lane, successor, at)

    def _start(self, lane: _Lane, task: Task, at: float) -> None:
        lane.occupied += 1
        lane.running.add(task)
        task.scheduled = at + task.delay
        task.ended = at + max(task.duration, task.delay)
        heapq.heappush(self._ends, (task.ended, next(self._seq), task))
        if self.on_start is not None:
            self.on_start(task)

    # --- operations --------------------------------------------------------------------------

    def create(self, task: Task, now: float, *, cap: int | None, reject: bool) -> None:
        """
        Admit `task`, submitted at `now`, under its model's in-flight `cap`.

        Raises:
            CapExceeded: The cap is full and `reject` is set; nothing was stored.
        """
        self.advance(now)
        lane = self._lanes.get(task.model)
        if lane is None:
            lane = self._lanes[task.model] = _Lane(cap=cap)
        lane.cap = cap
        if cap is not None and lane.occupied >= cap:
            if reject:
                soonest = min((t.ended for t in lane.running if t.ended is not None), default=now)
                raise CapExceeded(max(soonest - now, 0.0))
            lane.waiting.append(task)
        else:
            self._start(lane, task, now)
        self._tasks[task.task_id] = task
        self._history[task.task_id] = task
        self._by_age.append(task)
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        lane.live += 1
        lane.peak_live = max(lane.peak_live, lane.live)

    def get(self, task_id: str, now: float) -> Task | None:
        """The task, or ``None`` when unknown or expired (UNKNOWN)."""
        self.advance(now)
        return self._tasks.get(task_id)

    def cancel(self, task_id: str, now: float) -> bool:
        """Cancel a PENDING task; ``False`` (and no change) for any other status."""
        task = self.get(task_id, now)
        if task is None or task.status_at(now) is not TaskStatus.PENDING:
            return False
        task.canceled = True
        task.rendered = None
        holds_slot = task.scheduled is not None
        task.ended = now  # also marks its heap entry stale
        self._leave(task)
        if holds_slot:
            self._release(task, now)
        return True

    def in_flight_by_model(self) -> dict[str, tuple[int, int]]:
        """
        Per model that ever had a task: its tasks PENDING or RUNNING (holding a slot or waiting
        for one) now, and the most at once, as of the last `advance`.
        """
        return {model: (lane.live, lane.peak_live) for model, lane in sorted(self._lanes.items())}

    def tasks(self, now: float) -> list[Task]:
        """The queryable tasks at `now`, oldest first."""
        self.advance(now)
        return list(self._tasks.values())
