# Copyright (c) 2026 aioqwenimage contributors. Licensed under the MIT License.
"""
The rate and in-flight limiters, in process: one sliding window, one slot pool.

DashScope limits every model per account (``dashscope-api.md`` §7): a submission rate and, for
async tasks, a number of tasks in flight; all task queries of the account share 20 per second.
One `SlidingWindow` (with a pause and reservations) meters them all: the submit lanes
(``_lane``), the query budget (``_query_budget``), the emulator's limits (``testing._ratelimit``).
`InFlightLimiter` holds slots as leases. `LocalCoordinator` hands both out by name: the
in-process implementation of the ``_coordination`` seam, which a shared one can later replace.

The limiters are safe within one event loop, not across threads. Each takes an injected ``clock``
and ``sleep``: tests run them on virtual time.
"""

from __future__ import annotations

import bisect
import contextlib
import math
from collections import deque
from collections.abc import Awaitable, Callable

import anyio
import anyio.lowlevel
import attrs

from aioqwenimage._coordination import WindowSpec
from aioqwenimage._settings import _check_count, _check_rate, rate_window

__all__ = [
    "Clock",
    "InFlightLimiter",
    "LocalCoordinator",
    "Sleep",
    "SlidingWindow",
    "SlotLease",
    "make_overall_cap",
]

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


# --- the sliding window --------------------------------------------------------------------------


class SlidingWindow:
    """
    An exact sliding-window log: at most `limit` events in any half-open interval of `window` s,
    and none before `paused_until` (a 429 pauses a window as a whole).

    The pure methods take the current time, which must never decrease between calls; `acquire`
    reads it from the injected clock. Events are added at or after the latest one, so checking
    the `limit`-th latest is enough to keep the invariant (a new event at ``t`` with
    ``log[-limit] + window <= t`` leaves at most ``limit - 1`` others in ``(t - window, t]``);
    the one exception, `try_urgent`, counts the events on both sides of its own.
    """

    def __init__(
        self,
        limit: int,
        window: float,
        clock: Clock = anyio.current_time,
        *,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        _check_count("limit", limit)
        _check_rate("window", window)
        self._limit = limit
        self._window = float(window)
        self._clock = clock
        self._sleep = sleep
        self._log: deque[float] = deque()
        self._paused_until = -math.inf
        # Async acquirers queue here in FIFO order; only the one holding it sleeps on a slot.
        self._lock = anyio.Lock()

    @classmethod
    def from_rate(
        cls,
        count: float,
        per: float = 1.0,
        clock: Clock = anyio.current_time,
        *,
        sleep: Sleep = anyio.sleep,
    ) -> SlidingWindow:
        """A window admitting `count` events per `per` seconds (see `rate_window`)."""
        limit, window = rate_window(count, per)
        return cls(limit, window, clock, sleep=sleep)

    @property
    def limit(self) -> int:
        """Events allowed per window."""
        return self._limit

    @property
    def window(self) -> float:
        """The window's length in seconds."""
        return self._window

    @property
    def paused_until(self) -> float:
        """No event before this time (``-inf`` when never paused)."""
        return self._paused_until

    def pause_until(self, until: float) -> None:
        """Admit nothing before `until`; an earlier time never shortens a pause."""
        self._paused_until = max(self._paused_until, until)

    def _prune(self, now: float) -> None:
        # An event at or before now - window constrains nothing from now on.
        horizon = now - self._window
        log = self._log
        while log and log[0] <= horizon:
            log.popleft()

    def used(self, now: float) -> int:
        """Events (and reservations) in the window ending at `now`, or later."""
        self._prune(now)
        return len(self._log)

    def next_free(self, now: float) -> float:
        """The earliest time, not before `now` nor the pause, at which an event is admitted."""
        self._prune(now)
        log = self._log
        free = max(now, self._paused_until)
        if not log:
            return free
        free = max(free, log[-1])
        if len(log) >= self._limit:
            free = max(free, log[-self._limit] + self._window)
        return free

    def try_urgent(self, now: float) -> bool:
        """
        Record an event at `now` ahead of the pause and of the reservations waiting behind it,
        when no window containing `now` would then hold more than `limit` events (it counts
        every event less than a window away, either side); else change nothing.
        """
        self._prune(now)
        if sum(1 for at in self._log if at < now + self._window) >= self._limit:
            return False
        bisect.insort(self._log, now)  # sorted: `next_free` reads the `limit`-th latest
        return True

    def try_acquire(self, now: float) -> bool:
        """Record an event at `now` when the window admits one; else change nothing."""
        if self.next_free(now) > now:
            return False
        self._log.append(now)
        return True

    def reserve(self, now: float, after: float = -math.inf) -> float:
        """
        Record an event at the earliest admissible time not before `after`, and return that time.

        A reservation in the future blocks `try_acquire` until it has passed: callers that wait
        for a slot are served before callers that only try (the query budget's control calls
        before polls). Undo it with `cancel_reservation`.
        """
        # Pruning goes by `now`, never by `after`: events before a future start still bind the
        # try_acquire callers of the meantime should this reservation be cancelled.
        at = max(self.next_free(now), after)
        self._log.append(at)
        return at

    def cancel_reservation(self, at: float) -> None:
        """Forget a reservation made by `reserve` (a subset of an admissible log is admissible)."""
        # Not found: already pruned, being in the past, where it constrains nothing any more.
        with contextlib.suppress(ValueError):
            self._log.remove(at)

    async def acquire(self, not_before: Clock | None = None, *, urgent: bool = False) -> None:
        """
        Wait for a slot, in FIFO order with other `acquire` callers, and take it.

        Args:
            not_before: Called after each wait: the earliest time the slot may be used, on top
                of the window's own pause. When either moved past the reserved slot, the slot is
                given back and a later one taken.
            urgent: The window's pause does not hold this one (its rate does): it goes at once
                when `try_urgent` allows, else it waits its turn like any other.
        """
        if urgent and not_before is None and self.try_urgent(self._clock()):
            return
        async with self._lock:
            while True:
                now = self._clock()
                at = self.reserve(now, not_before() if not_before is not None else -math.inf)
                if at <= now:
                    return
                try:
                    await self._sleep(at - now)
                except BaseException:
                    self.cancel_reservation(at)  # a cancelled waiter leaks no slot
                    raise
                if self._paused_until <= at and (not_before is None or not_before() <= at):
                    return
                self.cancel_reservation(at)

    def __repr__(self) -> str:
        return f"<SlidingWindow {len(self._log)}/{self._limit} per {self._window:g}s>"


# --- in-flight slots -----------------------------------------------------------------------------


class SlotLease:
    """One slot of an `InFlightLimiter`, given back exactly once however often it is released."""

    __slots__ = ("_limiter", "_released")

    def __init__(self, limiter: InFlightLimiter) -> None:
        self._limiter = limiter
        self._released = False

    @property
    def released(self) -> bool:
        """Given back."""
        return self._released

    @property
    def expires(self) -> float:
        """Never: a lease in process lives as long as its holder keeps it."""
        return math.inf

    def release(self) -> None:
        """Give the slot back; a second call does nothing."""
        if not self._released:
            self._released = True
            self._limiter._give_back(self)  # noqa: SLF001 - the limiter's own lease


@attrs.define(eq=False)
class _Waiter:
    event: anyio.Event = attrs.Factory(anyio.Event)
    lease: SlotLease | None = None  # set when handed a slot, just before `event`


class InFlightLimiter:
    """
    A FIFO counting semaphore of leases whose limit can change while it is held (``None``: none).

    A slot is handed to the first waiter at release time, so a newcomer never overtakes a waiter.
    A waiter cancelled after being handed a slot passes it on: no slot leaks. Slots may be given
    back through their `SlotLease` or, by callers that keep only a count, with `release`.
    """

    def __init__(self, limit: int | None = None) -> None:
        if limit is not None:
            _check_count("limit", limit)
        self._limit = limit
        # The leases held, oldest first (a dict keeps the order and removes in O(1)).
        self._held: dict[SlotLease, None] = {}
        self._waiters: deque[_Waiter] = deque()

    @property
    def limit(self) -> int | None:
        """The current limit, ``None`` for none."""
        return self._limit

    @property
    def in_flight(self) -> int:
        """Slots held."""
        return len(self._held)

    @property
    def waiting(self) -> int:
        """Callers waiting for a slot."""
        return len(self._waiters)

    def _has_room(self) -> bool:
        return self._limit is None or len(self._held) < self._limit

    def _grant(self) -> SlotLease:
        lease = SlotLease(self)
        self._held[lease] = None
        return lease

    def _give_back(self, lease: SlotLease) -> None:
        del self._held[lease]
        self._hand_over()

    def set_limit(self, limit: int | None) -> None:
        """Change the limit; slots already held above a lower limit stay held."""
        if limit is not None:
            _check_count("limit", limit)
        self._limit = limit
        self._hand_over()

    def _hand_over(self) -> None:
        while self._waiters and self._has_room():
            waiter = self._waiters.popleft()
            waiter.lease = self._grant()
            waiter.event.set()

    def try_lease(self) -> SlotLease | None:
        """A slot when one is free and nobody waits for it; else ``None``."""
        if self._waiters or not self._has_room():
            return None
        return self._grant()

    def try_acquire(self) -> bool:
        """Take a slot when one is free and nobody waits for it (give it back with `release`)."""
        return self.try_lease() is not None

    async def acquire(self) -> SlotLease:
        """Wait for a slot, first come first served, and take it."""
        await anyio.lowlevel.checkpoint_if_cancelled()
        lease = self.try_lease()
        if lease is not None:
            return lease
        waiter = _Waiter()
        self._waiters.append(waiter)
        try:
            await waiter.event.wait()
        except BaseException:
            if waiter.lease is not None:
                waiter.lease.release()  # handed a slot while being cancelled: pass it on
            else:
                self._waiters.remove(waiter)
            raise
        assert waiter.lease is not None  # noqa: S101 - set together with the event
        return waiter.lease

    def release(self) -> None:
        """
        Give back the oldest slot held.

        Raises:
            RuntimeError: No slot is held.
        """
        if not self._held:
            msg = "release() without a slot held"
            raise RuntimeError(msg)
        next(iter(self._held)).release()

    def __repr__(self) -> str:
        limit = "unlimited" if self._limit is None else self._limit
        return f"<InFlightLimiter {len(self._held)}/{limit} waiting={len(self._waiters)}>"


def make_overall_cap(max_in_flight: int | None) -> InFlightLimiter:
    """
    The cap over all lanes (`Limits.max_in_flight`); with ``None`` it never blocks.

    Take a lane's slot before this one: a caller queued here then never holds a slot that
    another model's caller needs.
    """
    return InFlightLimiter(max_in_flight)


# --- the in-process coordinator ------------------------------------------------------------------


class LocalCoordinator:
    """The in-process `Coordinator`: this process's windows and slot pools, by name."""

    def __init__(self, clock: Clock = anyio.current_time, sleep: Sleep = anyio.sleep) -> None:
        self._clock = clock
        self._sleep = sleep
        self._windows: dict[str, SlidingWindow] = {}
        self._pools: dict[str, InFlightLimiter] = {}

    def window(self, name: str, spec: WindowSpec) -> SlidingWindow:
        """The window called `name`, created with `spec` on first use."""
        if name not in self._windows:
            self._windows[name] = SlidingWindow(
                spec.limit, spec.length, self._clock, sleep=self._sleep
            )
        return self._windows[name]

    def slots(self, name: str, limit: int | None) -> InFlightLimiter:
        """The pool called `name`, created with `limit` on first use."""
        if name not in self._pools:
            self._pools[name] = InFlightLimiter(limit)
        return self._pools[name]
