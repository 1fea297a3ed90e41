# Copyright (c) 2026 aioqwenimage contributors. Licensed under the MIT License.
"""
Rate and in-flight limits: the public `Limits` settings and the limiters that enforce them.

DashScope limits every model per account (``dashscope-api.md`` §7): a submission rate (2/s, or 2/min
for the max models) and, for async tasks, a number of tasks in flight; and all task queries of the
account share 20 per second. `SlidingWindow` is the rate limiter under the per-model submit lanes
(``_lane``) and the poll scheduler's query budget; `InFlightLimiter` holds the in-flight slots.

The limiters are safe within one event loop, not across threads. Each takes an injected ``clock``
and ``sleep`` (aiolimiter's mocked loop time): tests run them on virtual time.
"""

from __future__ import annotations

import contextlib
import math
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Final

import anyio
import anyio.lowlevel
import attrs

from aioqwenimage._catalog import DefaultLimits

__all__ = [
    "Clock",
    "InFlightLimiter",
    "Limits",
    "ModelLimits",
    "Sleep",
    "SlidingWindow",
    "make_overall_cap",
    "rate_window",
]

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

DEFAULT_QUERIES_PER_SECOND: Final = 15.0
# The service counts a window by arrival, we by sending: network jitter can squeeze `limit`
# sends spaced exactly one window apart into less than a window on arrival. Holding our windows
# this much longer keeps that from ever costing a 429 (and a 429 would cost a lane pause).
RATE_MARGIN: Final = 0.05


# --- the public settings -------------------------------------------------------------------------


def _check_rate(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"{name} must be a number, got {value!r}"
        raise TypeError(msg)
    if not (math.isfinite(value) and value > 0):
        msg = f"{name} must be a positive finite number, got {value!r}"
        raise ValueError(msg)


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"{name} must be an integer, got {value!r}"
        raise TypeError(msg)
    if value < 1:
        msg = f"{name} must be at least 1, got {value!r}"
        raise ValueError(msg)


@attrs.frozen(kw_only=True)
class ModelLimits:
    """
    Limits of one model that differ from the documented defaults (for accounts with raised quotas).

    Attributes:
        in_flight: Async tasks of this model in flight at once; ``None`` keeps the catalog default.
        submits_per_second: Submissions of this model per second; a rate below one means one
            submission every ``1 / submits_per_second`` seconds (``1 / 30``: one every 30 s).
            ``None`` keeps the catalog default.
    """

    in_flight: int | None = None
    submits_per_second: float | None = None

    def __attrs_post_init__(self) -> None:
        if self.in_flight is not None:
            _check_count("ModelLimits.in_flight", self.in_flight)
        if self.submits_per_second is not None:
            _check_rate("ModelLimits.submits_per_second", self.submits_per_second)


class _FrozenMapping(Mapping[str, ModelLimits]):
    """A read-only, hashable mapping, so that `Limits` stays a hashable value."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, ModelLimits]) -> None:
        self._data = dict(data)

    def __getitem__(self, key: str) -> ModelLimits:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __repr__(self) -> str:
        return repr(self._data)


def _freeze_models(value: object) -> _FrozenMapping:
    if not isinstance(value, Mapping):
        msg = f"Limits.models must be a mapping of model name to ModelLimits, got {value!r}"
        raise TypeError(msg)
    for name, limits in value.items():
        if not isinstance(name, str) or not name:
            msg = f"Limits.models keys must be model names, got {name!r}"
            raise TypeError(msg)
        if not isinstance(limits, ModelLimits):
            msg = f"Limits.models[{name!r}] must be a ModelLimits, got {limits!r}"
            raise TypeError(msg)
    return _FrozenMapping(value)


@attrs.frozen(kw_only=True)
class Limits:
    """
    The client's limits: one query budget, an optional overall cap, per-model overrides.

    Attributes:
        queries_per_second: Every poll, list and cancel of this client, all models together. The
            API allows 20 per account; the default leaves room for other processes.
        max_in_flight: At most this many tasks in flight over all models; ``None`` for no cap
            beyond the per-model ones.
        models: Per-model overrides; a model not named keeps its catalog defaults.
    """

    queries_per_second: float = DEFAULT_QUERIES_PER_SECOND
    max_in_flight: int | None = None
    models: Mapping[str, ModelLimits] = attrs.field(factory=dict, converter=_freeze_models)

    def __attrs_post_init__(self) -> None:
        _check_rate("Limits.queries_per_second", self.queries_per_second)
        if self.max_in_flight is not None:
            _check_count("Limits.max_in_flight", self.max_in_flight)

    def for_model(self, model: str, defaults: DefaultLimits) -> DefaultLimits:
        """The limits in force for `model`: its catalog `defaults` with this object's overrides."""
        override = self.models.get(model)
        if override is None:
            return defaults
        submits, period = defaults.submits, defaults.period
        if override.submits_per_second is not None:
            submits, period = rate_window(override.submits_per_second)
        in_flight = defaults.in_flight if override.in_flight is None else override.in_flight
        return DefaultLimits(submits=submits, period=period, in_flight=in_flight)


ModelLimits.__module__ = "aioqwenimage"
Limits.__module__ = "aioqwenimage"


# --- the sliding window --------------------------------------------------------------------------


def rate_window(count: float, per: float = 1.0) -> tuple[int, float]:
    """
    A rate of `count` events per `per` seconds as (events, window seconds) for a `SlidingWindow`.

    Whole counts keep their window (2 per minute is 2 per 60 s, not 1 per 30 s: the server counts
    that way, and the burst is allowed); a fraction keeps the whole part and stretches the window
    so the rate is unchanged (0.5/s is 1 per 2 s, 2.5/s is 2 per 0.8 s).

    Raises:
        ValueError: `count` or `per` is not positive and finite.
    """
    _check_rate("rate", count)
    _check_rate("period", per)
    if float(count).is_integer():
        return int(count), float(per)
    limit = max(1, math.floor(count))
    return limit, limit * per / count


class SlidingWindow:
    """
    An exact sliding-window log: at most `limit` events in any half-open interval of `window` s.

    The pure methods take the current time, which must never decrease between calls; `acquire`
    reads it from the injected clock. Events are only ever added at or after the latest one, so
    checking the `limit`-th latest is enough to keep the invariant (a new event at ``t`` with
    ``log[-limit] + window <= t`` leaves at most ``limit - 1`` others in ``(t - window, t]``).
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
        """The earliest time, not before `now`, at which an event would be admitted."""
        self._prune(now)
        log = self._log
        if not log:
            return now
        free = max(now, log[-1])
        if len(log) >= self._limit:
            free = max(free, log[-self._limit] + self._window)
        return free

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

    async def acquire(self, not_before: Clock | None = None) -> None:
        """
        Wait for a slot, in FIFO order with other `acquire` callers, and take it.

        Args:
            not_before: Called after each wait: the earliest time the slot may be used (a pause
                set by throttling); when it moved past the reserved slot, the slot is given back
                and a later one taken.
        """
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
                if not_before is None or not_before() <= at:
                    return
                self.cancel_reservation(at)

    def __repr__(self) -> str:
        return f"<SlidingWindow {len(self._log)}/{self._limit} per {self._window:g}s>"


# --- in-flight slots -----------------------------------------------------------------------------


class InFlightLimiter:
    """
    A FIFO counting semaphore whose limit can change while it is held (``None``: no limit).

    A slot is handed to the first waiter at release time, so a newcomer never overtakes a waiter.
    A waiter cancelled after being handed a slot passes it on: no slot leaks.
    """

    def __init__(self, limit: int | None = None) -> None:
        if limit is not None:
            _check_count("limit", limit)
        self._limit = limit
        self._held = 0
        self._waiters: deque[anyio.Event] = deque()

    @property
    def limit(self) -> int | None:
        """The current limit, ``None`` for none."""
        return self._limit

    @property
    def in_flight(self) -> int:
        """Slots held."""
        return self._held

    @property
    def waiting(self) -> int:
        """Callers waiting for a slot."""
        return len(self._waiters)

    def _has_room(self) -> bool:
        return self._limit is None or self._held < self._limit

    def set_limit(self, limit: int | None) -> None:
        """Change the limit; slots already held above a lower limit stay held."""
        if limit is not None:
            _check_count("limit", limit)
        self._limit = limit
        self._hand_over()

    def _hand_over(self) -> None:
        while self._waiters and self._has_room():
            self._held += 1
            self._waiters.popleft().set()

    def try_acquire(self) -> bool:
        """Take a slot when one is free and nobody waits for it."""
        if self._waiters or not self._has_room():
            return False
        self._held += 1
        return True

    async def acquire(self) -> None:
        """Wait for a slot, first come first served, and take it."""
        await anyio.lowlevel.checkpoint_if_cancelled()
        if self.try_acquire():
            return
        event = anyio.Event()
        self._waiters.append(event)
        try:
            await event.wait()
        except BaseException:
            if event.is_set():
                self.release()  # handed a slot while being cancelled: pass it on
            else:
                self._waiters.remove(event)
            raise

    def release(self) -> None:
        """
        Give a slot back.

        Raises:
            RuntimeError: No slot is held.
        """
        if self._held <= 0:
            msg = "release() without a slot held"
            raise RuntimeError(msg)
        self._held -= 1
        self._hand_over()

    def __repr__(self) -> str:
        limit = "unlimited" if self._limit is None else self._limit
        return f"<InFlightLimiter {self._held}/{limit} waiting={len(self._waiters)}>"


def make_overall_cap(max_in_flight: int | None) -> InFlightLimiter:
    """
    The cap over all lanes (`Limits.max_in_flight`); with ``None`` it never blocks.

    Take a lane's slot before this one: a caller queued here then never holds a slot that
    another model's caller needs.
    """
    return InFlightLimiter(max_in_flight)
