"""
Events and counters of one client: each fact counted once, in one place, reported once.

Every part of a generation's path (paid requests, polls, sweeps, cancels, downloads) tells the
`Recorder` what happened; it keeps the one counter of each fact that `Client.stats` shows, writes
the log line and calls the user's event hooks. Nothing else counts requests, retries or throttles.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aioqwenimage._models import ClientStats, EventKind, TaskEvent, TaskStatus

__all__ = ["EventHook", "Recorder"]

logger = logging.getLogger("aioqwenimage")

EventHook = Callable[[TaskEvent], object]
"""A callable given each `TaskEvent` of a client (``Client(event_hooks=[...])``); what it returns
is ignored, and an exception it raises is logged, never propagated."""

# Retries and throttling are what an operator tunes limits by: INFO; a task that may run with
# nobody able to follow it: WARNING; the rest is DEBUG.
_LEVELS = {
    EventKind.THROTTLED: logging.INFO,
    EventKind.RETRIED: logging.INFO,
    EventKind.COORDINATION_LOST: logging.INFO,
    EventKind.COORDINATION_RESTORED: logging.INFO,
    EventKind.LOST_TRACK: logging.WARNING,
}


class Recorder:
    """The counters behind `ClientStats`, and the one way an event reaches the log and the hooks."""

    def __init__(self, hooks: Iterable[EventHook] = ()) -> None:
        self._hooks = tuple(hooks)
        # HTTP requests sent, by kind; downloads always shown, so that a zero can be read.
        self.requests: Counter[str] = Counter(download=0)
        self.finished: Counter[str] = Counter()  # outcomes, by terminal status (or ERROR)
        self.polls = 0  # task queries answered with a readable snapshot
        self.throttled = 0  # 429 answers
        self.retries = 0  # requests sent again after a transient failure
        self.submitted = 0  # generations started
        self.uncertain = 0  # paid requests whose outcome is unknown

    def __repr__(self) -> str:
        return f"<Recorder requests={sum(self.requests.values())} hooks={len(self._hooks)}>"

    def sent(self, kind: str) -> None:
        """One HTTP request of `kind` (``create``, ``sync``, ``poll``, ``list``, ...) left."""
        self.requests[kind] += 1

    def retried(self, *, throttled: bool = False) -> None:
        """A request will be sent again; `throttled`: because of a 429."""
        self.retries += 1
        if throttled:
            self.throttled += 1

    def snapshot(self, in_flight: Mapping[str, int]) -> ClientStats:
        """The counters now, with the slots held by model."""
        return ClientStats(
            requests=dict(self.requests),
            polls=self.polls,
            throttled=self.throttled,
            retries=self.retries,
            submitted=self.submitted,
            finished=dict(self.finished),
            in_flight=dict(in_flight),
            uncertain=self.uncertain,
        )

    def report(
        self,
        kind: EventKind,
        model: str | None,
        task_id: str | None,
        status: TaskStatus | None,
        detail: Mapping[str, Any],
    ) -> None:
        """Log an event and give it to every hook; a hook that raises is logged and skipped."""
        event = TaskEvent(
            kind=kind, model=model, task_id=task_id, status=status, at=time.time(), detail=detail
        )
        level = _LEVELS.get(kind, logging.DEBUG)
        logger.log(level, "%s task=%s model=%s %s", kind.value, task_id, model, detail)
        for hook in self._hooks:
            try:
                hook(event)
            except Exception:  # noqa: PERF203 - each hook is isolated from the others' failures
                logger.exception("an event hook raised; ignoring it")
