# Copyright (c) 2026 aioqwenimage contributors. Licensed under the MIT License.
"""
The query budget: the one window of task queries (polls, lists, cancels) of a client.

The account allows 20 task queries per second for all its keys (``dashscope-api.md`` §7). The
poll scheduler takes tokens without waiting (`Budget.try_acquire`, through ``_poll_queue``); the
other queries wait for theirs (`QueryBudget.acquire`). The window is a `_limits.SlidingWindow`
in process, or a shared one when a coordinator keeps it (its name: ``"queries"``).
"""

from __future__ import annotations

import math
from typing import Final, Protocol

import anyio

from aioqwenimage._coordination import QUERIES, QUERY_MARGIN, Coordinator, WindowSpec
from aioqwenimage._limits import Clock, LocalCoordinator, Sleep, SlidingWindow
from aioqwenimage._settings import DEFAULT_QUERIES_PER_SECOND

__all__ = ["BURST", "Budget", "QueryBudget"]

# Polls leave in bursts of at most this part of the window's limit, in this part of its length
# (twice the mean rate over an eighth of the window): a window allows its whole limit at once,
# but a burst of polls (a sweep announcing twenty finished tasks) reaches the service spread
# over the time its requests take to be read, and the tail of one burst and the head of the
# next, a window later, then fall into one second there (429s seen in B5's single process).
# Shared through Redis, the account's log hands each process its events already spread.
BURST: Final = (1 / 4, 1 / 8)


class Budget(Protocol):
    """Anything `PollQueue.pop_ready` can spend tokens of."""

    def try_acquire(self, now: float) -> bool:
        """Take one token at `now`, or return False and take nothing."""
        ...  # pragma: no cover


class QueryBudget:
    """
    The one budget of task queries (polls, lists, cancels) of a client, over all models.

    A sliding window of `queries_per_second` per second, and a pause: a 429 on a query means the
    account's quota is in use elsewhere too, so every query waits, not just the one throttled.
    Polls take tokens with `try_acquire`; other calls wait with `acquire`, which reserves the
    next free token and so goes before polls that are due later.

    Args:
        queries_per_second: The rate.
        scale: Multiplies the window (tests compress time with it).
        clock: Current time in seconds.
        sleep: Waits that many seconds.
        coordinator: Where the window is kept (its name: ``"queries"``); by default in process,
            on `clock` and `sleep`.
    """

    def __init__(
        self,
        queries_per_second: float = DEFAULT_QUERIES_PER_SECOND,
        *,
        scale: float = 1.0,
        clock: Clock = anyio.current_time,
        sleep: Sleep = anyio.sleep,
        coordinator: Coordinator | None = None,
    ) -> None:
        spec = WindowSpec.from_rate(queries_per_second, scale=scale, margin=QUERY_MARGIN)
        self._window = (coordinator or LocalCoordinator(clock, sleep)).window(QUERIES, spec)
        share, grain = BURST
        self._burst = (
            SlidingWindow(math.ceil(share * spec.limit), grain * spec.length, clock, sleep=sleep)
            if coordinator is None or isinstance(coordinator, LocalCoordinator)
            else None
        )
        self.spent = 0

    @property
    def limit(self) -> int:
        """Queries allowed per window."""
        return self._window.limit

    @property
    def window(self) -> float:
        """The window's length in seconds."""
        return self._window.window

    @property
    def paused_until(self) -> float:
        """No query before this time (``-inf`` when never paused)."""
        return self._window.paused_until

    def pause_until(self, until: float) -> None:
        """Hold every query until `until`; an earlier time never shortens a pause."""
        self._window.pause_until(until)

    def next_free(self, now: float) -> float:
        """The earliest time, not before `now`, at which a query would be allowed."""
        free = self._window.next_free(now)
        return free if self._burst is None else max(free, self._burst.next_free(now))

    def try_acquire(self, now: float) -> bool:
        """Take a token at `now` when allowed; else take nothing."""
        burst = self._burst
        if burst is not None and burst.next_free(now) > now:
            return False
        if not self._window.try_acquire(now):
            return False
        if burst is not None:
            burst.try_acquire(now)
        self.spent += 1
        return True

    async def acquire(self, *, urgent: bool = False) -> None:
        """
        Wait for a token, FIFO among callers of this method, and take it. `urgent`: a 429's
        pause does not hold this query (the rate does): a remote cancel, which may save a paid
        image if it arrives before the task starts, is worth a possible second 429.
        """
        await self._window.acquire(urgent=urgent)
        self.spent += 1

    def __repr__(self) -> str:
        return f"<QueryBudget {self.limit}/{self.window:g}s spent={self.spent}>"
