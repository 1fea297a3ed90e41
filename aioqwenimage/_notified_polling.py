"""
Polling as the safety net of completion notifications, and the switch back when they stop.

With notifications on, a task's completion is expected as an event; its one confirming query is
the only poll it needs. Polls stay, as the fallback for the events EventBridge loses or delays:

- **Trusting** (the start): per-task polls are stretched by `stretch` (`PollScheduler.set_stretch`:
  the first poll comes `stretch` times later than the learned one, and so do the intervals after
  it), so a task is polled only once its notification is overdue; sweeps pause (the sweeper is
  given no live tasks).
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
from collections.abc import Iterator

from aioqwenimage._handle import TaskHandle
from aioqwenimage._models import EventKind, TaskStatus
from aioqwenimage._registry import Flight, Registry
from aioqwenimage._scheduler import PollScheduler

__all__ = ["NotifiedPolling"]

logger = logging.getLogger("aioqwenimage")

# The statuses EventBridge documents an event for; a CANCELED task may end silently.
_NOTIFIED_STATUSES = frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED})


class NotifiedPolling:
    """
    Decides how much polling the live tasks need, from how notifications have been arriving.

    Args:
        registry: The live tasks (and where the switches are reported).
        stretch: Per-task polls come this many times later while notifications are trusted.
        missing_after: Completions in a row found by polls alone before polling returns to normal.
    """

    def __init__(self, registry: Registry, *, stretch: float, missing_after: int) -> None:
        self._registry = registry
        self._stretch = stretch
        self._missing_after = missing_after
        self._scheduler: PollScheduler[TaskHandle] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.trusting = True
        self.missed = 0  # completions in a row that no notification told
        self.confirmed = 0  # notifications their task's query confirmed
        self.switches = 0  # times polling went back to normal

    def __repr__(self) -> str:
        mode = "trusting" if self.trusting else "missing"
        return f"<NotifiedPolling {mode} confirmed={self.confirmed} missed={self.missed}>"

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

    def ended(self, flight: Flight, status: TaskStatus) -> None:
        """A query found `flight`'s task terminal: did a notification tell it first?"""
        if flight.notified:
            self.confirmed += 1
            self.missed = 0
            if not self.trusting:
                self._switch(trusting=True, flight=flight)
            return
        if flight.created_at is None or flight.announced or status not in _NOTIFIED_STATUSES:
            return  # attached, or found by a sweep, or an end that may have no event
        self.missed += 1
        if self.trusting and self.missed >= self._missing_after:
            self._switch(trusting=False, flight=flight)

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
