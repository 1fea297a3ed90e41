# Copyright (c) 2026 aioqwenimage contributors. Licensed under the MIT License.
"""
A rate window shared through Redis (`SharedWindow`), for `aioqwenimage.redis.RedisCoordinator`.

`acquire` reserves the next admissible event in Redis and sleeps until its time (the submit
lanes, the query budget's control calls). The poll scheduler's synchronous `try_acquire` cannot
wait for Redis, so each window keeps a small bank of events reserved ahead on demand; the bank
grows while it is drained and shrinks while events go unused, and unused events are given back,
so they cost the other processes nothing. Without Redis, this process's share of the limit is
kept locally (`_redis_link.Link`).
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING, Final

import anyio

from aioqwenimage._coordination import WindowSpec
from aioqwenimage._limits import Sleep, SlidingWindow
from aioqwenimage._redis_link import Link, Unavailable

if TYPE_CHECKING:
    from aioqwenimage._redis_scripts import Reservation

__all__ = ["SharedWindow"]

# While a window's bank is empty, the forecast of the next event: about one Redis round trip.
BANK_ETA: Final = 0.005
# A banked event may be spent this long after its time: a busy loop wakes the poll scheduler
# late, and a grace shorter than that would give back every event before it is spent; later, it
# is given back unused. Spending it late moves the event later than the log says: that is the
# event loop's part of the arrival jitter the window's margin is held for (`QUERY_MARGIN`: 30 ms
# of a one-second window), so the log keeps its events further apart only by what the margin
# leaves uncovered. The lateness is real time whatever the window's length: in compressed time
# (a margin of a millisecond or two) the log keeps nearly the whole grace.
GRACE: Final = 0.025


class SharedWindow:
    """A rate window shared through Redis; see the module docstring."""

    def __init__(
        self, link: Link, name: str, spec: WindowSpec, *, sleep: Sleep = anyio.sleep
    ) -> None:
        self._link = link
        self._name = name
        self._spec = spec
        self._sleep = sleep
        self._bank: deque[tuple[float, str]] = deque()  # (local time, event), in time order
        self._grace = GRACE
        self._claim = 1  # events reserved per refill
        self._paused = -math.inf  # local time
        self._used = 0
        self._fallback: SlidingWindow | None = None
        self._lock = anyio.Lock()
        self.given_back: int = 0

    def __repr__(self) -> str:
        return f"<SharedWindow {self._name} {self._spec.limit}/{self._spec.length:g}s>"

    @property
    def limit(self) -> int:
        """Events allowed per window, account-wide."""
        return self._spec.limit

    @property
    def window(self) -> float:
        """The window's length in seconds."""
        return self._spec.length

    @property
    def paused_until(self) -> float:
        """No event before this time, as far as this process knows."""
        return self._paused

    def pause_until(self, until: float) -> None:
        """Pause the window account-wide (in the background); a pause never shortens."""
        if until <= self._paused:
            return
        self._paused = until
        if self._fallback is not None:
            self._fallback.pause_until(until)
        link = self._link
        link.later(lambda: self._share_pause(until))

    async def _share_pause(self, until: float) -> None:
        link = self._link
        _, pause = await link.call(
            lambda: link.scripts.pause(self._name, link.to_server(until)), now_of=lambda r: r[0]
        )
        self._learn_pause(pause)

    def _learn_pause(self, server_pause: float) -> None:
        if server_pause > 0:
            self._paused = max(self._paused, self._link.to_local(server_pause))

    def _local(self) -> SlidingWindow:
        """The window while Redis is away: this process's share of the account's limit."""
        if self._fallback is None:
            share = max(1, self._spec.limit // max(1, self._link.processes))
            self._fallback = SlidingWindow(share, self._spec.length, self._link.clock)
            self._fallback.pause_until(self._paused)
        return self._fallback

    def used(self, now: float) -> int:
        """Events in the window, account-wide, at the last look (or locally, without Redis)."""
        if self._link.degraded:
            return self._local().used(now)
        return self._used

    def next_free(self, now: float) -> float:
        """The time of the next banked event, or a guess while one is being reserved."""
        link = self._link
        if link.degraded:
            return now + BANK_ETA if link.fail_closed else self._local().next_free(now)
        self._drop_stale(now)
        if self._bank:
            return max(now, self._bank[0][0], self._paused)
        link.want(self)
        return max(now + BANK_ETA, self._paused)

    def try_acquire(self, now: float) -> bool:
        """Spend a banked event due by `now`; else ask for more and take nothing."""
        link = self._link
        if link.degraded:
            return not link.fail_closed and self._local().try_acquire(now)
        self._drop_stale(now)
        if self._bank and self._bank[0][0] <= now and self._paused <= now:
            self._bank.popleft()
            if not self._bank:  # drained: reserve more at a time
                self._claim = min(2 * self._claim, self._claim_cap())
            return True
        if not self._bank:
            link.want(self)
        return False

    def _claim_cap(self) -> int:
        return max(1, self._spec.limit // max(1, self._link.processes))

    def _drop_stale(self, now: float) -> None:
        bank = self._bank
        stale: list[str] = []
        while bank and bank[0][0] < now - self._grace:
            stale.append(bank.popleft()[1])
        if stale:
            self._claim = max(1, self._claim // 2)
            self.given_back += len(stale)
            self._give_back(stale)

    def _give_back(self, events: list[str]) -> None:
        link = self._link
        link.later(
            lambda: link.call(
                lambda: link.scripts.give_back(self._name, events), now_of=lambda r: r[0]
            )
        )

    async def refill(self) -> None:
        """Bank the next events (the worker calls this when the bank ran dry)."""
        if self._bank:
            return
        link = self._link
        reservation = await self._reserve(self._claim)
        self._bank.extend((link.to_local(at), event) for event, at in reservation.events)

    async def _reserve(self, count: int, *, urgent: bool = False) -> Reservation:
        link = self._link
        first = link.sequence(count)
        not_before = -math.inf if urgent else link.to_server(self._paused)
        reservation = await link.call(
            lambda: link.scripts.reserve(
                self._name,
                limit=self._spec.limit,
                length=self._spec.length + max(0.0, self._grace - self._spec.margin),
                count=count,
                not_before=not_before,
                prefix=link.process,
                first=first,
                urgent=urgent,
            ),
            now_of=lambda r: r.now,
        )
        self._learn_pause(reservation.pause)
        self._used = reservation.used
        return reservation

    async def acquire(self, *, urgent: bool = False) -> None:
        """
        Reserve the next admissible event account-wide, sleep until its time, take it;
        `urgent`: not held by a pause, nor queued behind this process's waiters (who may be
        sleeping through one).
        """
        if urgent:
            await self._acquire(urgent=True)
            return
        async with self._lock:
            await self._acquire(urgent=False)

    async def _acquire(self, *, urgent: bool) -> None:
        link = self._link
        while True:
            if link.degraded:
                if link.fail_closed:
                    await link.wait_restored()
                    continue
                await self._local().acquire(urgent=urgent)
                return
            now = link.clock()
            self._drop_stale(now)
            if self._bank and not urgent:
                # This process's next reserved event, not one after all of them: the bank is
                # the polls', which can wait; a caller waiting here (a sweep, which frees
                # slots; a cancel) should not.
                at, event = self._bank.popleft()
            else:
                try:
                    reservation = await self._reserve(1, urgent=urgent)
                except Unavailable:
                    continue
                event, server_at = reservation.events[0]
                at = link.to_local(server_at)
                now = link.clock()
            if at > now:
                try:
                    await self._sleep(at - now)
                except BaseException:
                    self._give_back([event])  # a cancelled waiter holds no event
                    raise
            if urgent or self._paused <= at:
                return
            self._give_back([event])  # a pause came meanwhile: take a later one

    async def resynchronise(self) -> None:
        """Redis is back: share a pause still running; the local window is done with."""
        self._fallback = None
        if self._paused > self._link.clock():
            await self._share_pause(self._paused)
