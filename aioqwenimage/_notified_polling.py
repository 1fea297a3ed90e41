"""
Polling as the safety net of completion notifications, and the switch back when they stop.

With notifications on, a task's completion is expected as an event; its one confirming query is
the only poll it needs. Polls stay, as the fallback for the events EventBridge loses or delays:

- **Trusting** (the start): per-task polls are stretched (`PollScheduler.set_stretch`: the first
  poll comes that many times later than the learned one, and so do the intervals after it), so
  a task is polled only once its notification is overdue; sweeps pause (the sweeper is given no
  live tasks). The stretch starts at the configured one; once a model's durations are learned, it
  is learned too: the first poll then comes `OVERDUE` times the model's longest recent duration
  plus the latest events' longest delivery delay after submission, so only a task longer than
  any recent one, or a lost or unusually late event, costs a poll.
- **Missing**: when the fallback polls find `missing_after` created tasks in a row finished without
  any notification for them, events are not arriving (a rule deleted, a token changed, the
  listener unreachable): polling returns to normal (stretch 1, sweeps on), with a warning in the
  log and a ``NOTIFICATIONS_MISSING`` event.
- Back to **trusting** as soon as a notification is confirmed again (its task's query found it
  finished): ``NOTIFICATIONS_RESUMED``.

A single lost event costs that task one late detection (at the stretched poll), never a result.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterator
from typing import Final

from aioqwenimage._handle import TaskHandle
from aioqwenimage._models import EventKind, TaskStatus
from aioqwenimage._registry import Flight, Registry
from aioqwenimage._scheduler import PollScheduler
from aioqwenimage._snapshot import TaskSnapshot

__all__ = ["NotifiedPolling"]

logger = logging.getLogger("aioqwenimage")

# The statuses EventBridge documents an event for; a CANCELED task may end silently.
_NOTIFIED_STATUSES = frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED})
# The fallback poll comes this much later than the longest recent duration plus delivery delay.
OVERDUE: Final = 1.15
_DELAYS: Final = 64  # delivery delays remembered (the longest of them counts)


class NotifiedPolling:
    """
    Decides how much polling the live tasks need, from how notifications have been arriving.

    Args:
        registry: The live tasks (and where the switches are reported).
        stretch: Per-task polls come this many times later while notifications are trusted,
            until durations and delivery delays are learned.
        missing_after: Completions in a row found by polls alone before polling returns to normal.
    """

    def __init__(self, registry: Registry, *, stretch: float, missing_after: int) -> None:
        self._registry = registry
        self._stretch = stretch
        self._missing_after = missing_after
        self._scheduler: PollScheduler[TaskHandle] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._delays: deque[float] = deque(maxlen=_DELAYS)
        self._wanted: dict[str, float] = {}  # the stretch each model's numbers ask for
        self.trusting = True
        self.missed = 0  # completions in a row that no notification told
        self.confirmed = 0  # notifications their task's query confirmed
        self.switches = 0  # times polling went back to normal

    def __repr__(self) -> str:
        mode = "trusting" if self.trusting else "missing"
        return (
            f"<NotifiedPolling {mode} stretch={self._stretch:.2f} confirmed={self.confirmed} "
            f"missed={self.missed}>"
        )

    def bind(self, scheduler: PollScheduler[TaskHandle]) -> None:
        """The scheduler whose polls are stretched while notifications are trusted."""
        self._scheduler = scheduler
        self._loop = asyncio.get_running_loop()  # the client opens in its own loop
        scheduler.set_stretch(self._stretch)

    def sweepable(self) -> Iterator[tuple[str, float]]:
        """The sweeper's live tasks: none while notifications are trusted (sweeps pause)."""
        if not self.trusting:
            yield from self._registry.sweepable()

    def hint(self, task_id: str) -> bool | None:
        """
        A notification says `task_id` finished: query it now. Whether it was news; ``None``
        when it was handed to the client's loop from another thread (a `SyncClient`'s receiver
        served elsewhere). Before the client opens it follows no task: not news.
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            return False
        if asyncio.get_running_loop() is not loop:  # called by `Notifications.feed`: in a loop
            loop.call_soon_threadsafe(self._registry.notify, task_id)
            return None
        return self._registry.notify(task_id)

    @property
    def stretch(self) -> float:
        """The stretch of per-task polls while notifications are trusted."""
        return self._stretch

    def ended(self, flight: Flight, snapshot: TaskSnapshot) -> None:
        """A query found `flight`'s task terminal: did a notification tell it first?"""
        if flight.notified:
            self.confirmed += 1
            self.missed = 0
            self._learn(flight, snapshot)
            if not self.trusting:
                self._switch(trusting=True, flight=flight)
            return
        status = snapshot.status
        if flight.created_at is None or flight.announced or status not in _NOTIFIED_STATUSES:
            return  # attached, or found by a sweep, or an end that may have no event
        self.missed += 1
        if self.trusting and self.missed >= self._missing_after:
            self._switch(trusting=False, flight=flight)

    def _learn(self, flight: Flight, snapshot: TaskSnapshot) -> None:
        """
        Learn the stretch from a notified task: its event's delivery delay (the time the client
        saw pass since the create, less the duration the service reports: no clock is compared
        with another) and its model's longest recent duration.
        """
        model, duration = flight.handle.model, snapshot.duration
        assert self._scheduler is not None  # noqa: S101 - polls run once the client is open
        if model is None or duration is None or flight.created_at is None:
            return
        self._delays.append(max(0.0, time.time() - flight.created_at - duration))
        durations = self._scheduler.durations
        longest = durations.quantile(model, 1.0)
        if longest is None:
            return  # not learned yet: the configured stretch stays
        due = OVERDUE * (longest + max(self._delays))
        self._wanted[model] = due / durations.first_delay(model)
        # One stretch for every model: the largest, so no model's tasks are polled early.
        stretch = max(1.0, *self._wanted.values())
        if abs(stretch - self._stretch) > 0.05 * self._stretch:  # hysteresis: no churn
            self._stretch = stretch
            if self.trusting:
                self._scheduler.set_stretch(stretch)

    def _switch(self, *, trusting: bool, flight: Flight) -> None:
        self.trusting = trusting
        assert self._scheduler is not None  # noqa: S101 - polls run once the client is open
        self._scheduler.set_stretch(self._stretch if trusting else 1.0)
        if trusting:
            logger.info("completion notifications arrive again; polling is the fallback again")
            self._registry.emit(EventKind.NOTIFICATIONS_RESUMED, flight.handle)
            return
        self.switches += 1
        logger.warning(
            "no completion notification for the last %d tasks that polls found finished; "
            "polling normally until notifications arrive again",
            self.missed,
        )
        self._registry.emit(EventKind.NOTIFICATIONS_MISSING, flight.handle, missed=self.missed)
