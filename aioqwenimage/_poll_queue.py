"""
The queue of due polls and the budget that meters them: pure, clock-driven pieces of the one
poll scheduler (``_scheduler``).

`PollQueue` orders tasks by when they are due; `QueryBudget` is the client's share of the
account's 20 task queries per second, a sliding window that a 429 pauses as a whole. Both take
the time as an argument (or an injected clock), so they are tested on simulated time.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar

import anyio
import anyio.lowlevel

from aioqwenimage._limits import RATE_MARGIN, Clock, Sleep, SlidingWindow, rate_window

__all__ = ["Budget", "PollQueue", "QueryBudget"]

K = TypeVar("K", bound=Hashable)


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
    """

    def __init__(
        self,
        queries_per_second: float = 15.0,
        *,
        scale: float = 1.0,
        clock: Clock = anyio.current_time,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        limit, window = rate_window(queries_per_second)
        if not (math.isfinite(scale) and scale > 0):
            msg = f"scale must be a positive finite number, got {scale!r}"
            raise ValueError(msg)
        self._window = SlidingWindow(limit, window * scale * (1 + RATE_MARGIN), clock, sleep=sleep)
        self._paused_until = -math.inf
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
        return self._paused_until

    def pause_until(self, until: float) -> None:
        """Hold every query until `until`; an earlier time never shortens a pause."""
        self._paused_until = max(self._paused_until, until)

    def next_free(self, now: float) -> float:
        """The earliest time, not before `now`, at which a query would be allowed."""
        return max(self._paused_until, self._window.next_free(now))

    def try_acquire(self, now: float) -> bool:
        """Take a token at `now` when allowed; else take nothing."""
        if now < self._paused_until or not self._window.try_acquire(now):
            return False
        self.spent += 1
        return True

    async def acquire(self) -> None:
        """Wait for a token, FIFO among callers of this method, and take it."""
        await self._window.acquire(not_before=lambda: self._paused_until)
        self.spent += 1

    def __repr__(self) -> str:
        return f"<QueryBudget {self.limit}/{self.window:g}s spent={self.spent}>"


class PollQueue(Generic[K]):
    """
    Keys by due time: a min-heap of ``(due, seq, key)`` with lazy deletion.

    `schedule` of a queued key moves it (the old entry goes stale); `discard` forgets it; stale
    entries are skipped when they reach the top and purged when they outnumber the live ones.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, K]] = []
        self._live: dict[K, tuple[float, int]] = {}
        self._seq = itertools.count()

    def __contains__(self, key: object) -> bool:
        return key in self._live

    def __len__(self) -> int:
        return len(self._live)

    def due(self, key: K) -> float | None:
        """When `key` is due, or ``None`` when it is not queued."""
        entry = self._live.get(key)
        return None if entry is None else entry[0]

    def schedule(self, key: K, due: float) -> None:
        """Queue `key` for `due`, replacing its earlier due time if it had one."""
        seq = next(self._seq)
        self._live[key] = (due, seq)
        heapq.heappush(self._heap, (due, seq, key))
        self._compact()

    def discard(self, key: K) -> None:
        """Never pop `key` again (unless scheduled anew); unknown keys are fine."""
        if self._live.pop(key, None) is not None:
            self._compact()

    def _compact(self) -> None:
        # Keeps memory and pop cost proportional to the live keys despite lazy deletion: a dead
        # entry holds its key, and a finished task's handle holds its result. Rebuilding when a
        # quarter of the heap is dead costs O(live) every O(live / 4) changes: O(1) amortised.
        if len(self._heap) > len(self._live) + len(self._live) // 4 + 64:
            self._heap = [(due, seq, key) for key, (due, seq) in self._live.items()]
            heapq.heapify(self._heap)

    def _drop_stale(self) -> None:
        heap, live = self._heap, self._live
        while heap:
            due, seq, key = heap[0]
            if live.get(key) == (due, seq):
                return
            heapq.heappop(heap)

    def next_due(self) -> float | None:
        """The earliest due time, or ``None`` when nothing is queued."""
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_ready(
        self, now: float, budget: Budget | None = None, limit: int | None = None
    ) -> list[K]:
        """
        Unqueue and return the keys due by `now`, earliest first, each spending a token.

        Stops when `budget` refuses a token or after `limit` keys, leaving the rest queued.
        """
        ready: list[K] = []
        while limit is None or len(ready) < limit:
            self._drop_stale()
            if not self._heap or self._heap[0][0] > now:
                break
            if budget is not None and not budget.try_acquire(now):
                break
            _, _, key = heapq.heappop(self._heap)
            del self._live[key]
            ready.append(key)
        return ready

    def __repr__(self) -> str:
        return f"<PollQueue live={len(self._live)} heap={len(self._heap)}>"
