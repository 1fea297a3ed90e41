"""
Sliding-window rate limits, on an injected clock.

A window admits at most ``limit`` events in any span of ``period`` seconds, which is how the
documented "N per second" and "N per minute" limits behave from the outside (§7). The caller passes
``now``, so the logic is pure and tests drive it with plain numbers.
"""

from __future__ import annotations

from collections import deque

__all__ = ["SlidingWindow"]


class SlidingWindow:
    """
    At most `limit` admissions in any `period` seconds.

    Args:
        limit: Admissions per period; at least 1.
        period: The window length in seconds (already scaled to real time by the caller).

    Raises:
        ValueError: `limit` < 1 or `period` <= 0.
    """

    __slots__ = ("_events", "limit", "period")

    def __init__(self, limit: int, period: float) -> None:
        if limit < 1:
            msg = f"limit must be at least 1, got {limit}"
            raise ValueError(msg)
        if period <= 0:
            msg = f"period must be positive, got {period}"
            raise ValueError(msg)
        self.limit = limit
        self.period = period
        self._events: deque[float] = deque()

    def __repr__(self) -> str:
        return f"<SlidingWindow {len(self._events)}/{self.limit} per {self.period:g}s>"

    def acquire(self, now: float) -> float:
        """
        Admit one event at `now`, or say how long until one would be admitted.

        Returns:
            ``0.0`` when admitted (and counted); otherwise the seconds until the oldest event
            leaves the window (nothing is counted).
        """
        events = self._events
        horizon = now - self.period
        while events and events[0] <= horizon:
            events.popleft()
        if len(events) < self.limit:
            events.append(now)
            return 0.0
        return events[0] - horizon

    def clear(self) -> None:
        """Forget every admission."""
        self._events.clear()
