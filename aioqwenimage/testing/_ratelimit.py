"""
The emulator's rate limits: the client's own sliding window, seen from the server's side.

A window admits at most ``limit`` events in any span of ``period`` seconds, which is how the
documented "N per second" and "N per minute" limits behave from the outside (§7). The counting is
the client's `aioqwenimage._limits.SlidingWindow`, so that the two sides cannot drift apart; this
adapter only keeps the server's interface to it, which differs for good reasons: the server
refuses rather than waits (`acquire` answers how long to wait, for the 429's ``Retry-After``),
its windows are exact (no safety margin, no pause), and its time is the wall clock, which may
step back (the window's time must not decrease, so a step back counts as no time passing).
"""

from __future__ import annotations

import math

from aioqwenimage._limits import SlidingWindow as _Window

__all__ = ["SlidingWindow"]


class SlidingWindow:
    """
    At most `limit` admissions in any `period` seconds.

    Args:
        limit: Admissions per period; at least 1 (a fraction admits up to the next whole number).
        period: The window length in seconds (already scaled to real time by the caller).

    Raises:
        ValueError: `limit` < 1 or `period` <= 0.
    """

    __slots__ = ("_latest", "_window", "limit", "period")

    def __init__(self, limit: float, period: float) -> None:
        if limit < 1:
            msg = f"limit must be at least 1, got {limit}"
            raise ValueError(msg)
        if period <= 0:
            msg = f"period must be positive, got {period}"
            raise ValueError(msg)
        self.limit = limit
        self.period = period
        self._window = _Window(math.ceil(limit), period)
        self._latest = -math.inf

    def __repr__(self) -> str:
        used = self._window.used(self._latest)
        return f"<SlidingWindow {used}/{self.limit} per {self.period:g}s>"

    def acquire(self, now: float) -> float:
        """
        Admit one event at `now`, or say how long until one would be admitted.

        Returns:
            ``0.0`` when admitted (and counted); otherwise the seconds until the oldest event
            leaves the window (nothing is counted).
        """
        self._latest = now = max(now, self._latest)
        if self._window.try_acquire(now):
            return 0.0
        return self._window.next_free(now) - now

    def clear(self) -> None:
        """Forget every admission."""
        self._window = _Window(self._window.limit, self.period)
        self._latest = -math.inf
