"""
The queue of due polls: a pure, clock-driven piece of the one poll scheduler (``_scheduler``).

`PollQueue` orders tasks by when they are due and hands them out as a budget allows (the
`QueryBudget` of ``_limits``, the client's share of the account's 20 task queries per second).
It takes the time as an argument, so it is tested on simulated time.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from typing import Generic, TypeVar

from aioqwenimage._query_budget import Budget

__all__ = ["PollQueue"]

K = TypeVar("K", bound=Hashable)


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
