# Copyright (c) 2026 aioqwenimage contributors. Licensed under the MIT License.
"""
Rate and in-flight limits: the public `Limits` settings and the limiters that enforce them.

DashScope limits every model per account (``dashscope-api.md`` §7): a submission rate (2/s, or 2/min
for the max models) and, for async tasks, a number of tasks in flight; and all task queries of the
account share 20 per second. One `SubmitLane` per model enforces the first two, adapting the
in-flight limit down when the server throttles (the account's real cap may be lower than configured,
or shared with another process) and back up on success. `SlidingWindow` is the rate limiter under
both the lanes and the poll scheduler's query budget.

The limiters are safe within one event loop, not across threads. Each takes an injected ``clock``
and ``sleep`` (aiolimiter's mocked loop time): tests run them on virtual time.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, Final

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
    "SubmitLane",
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
# A 429 with at least this share of the lane's rate window used is taken for a rate throttle.
RATE_FULL: Final = 0.8


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


# --- one lane per model --------------------------------------------------------------------------


class SubmitLane:
    """
    One model's submissions: a rate window, a pause set by throttling, and adaptive in-flight slots.

    A create goes: `acquire_slot` (held until the task is terminal, released by whoever sees that)
    then `acquire_submit` then the request; then `on_success` or, on a 429, `on_throttled` while
    the slot is still held, so the lane knows how many tasks the server accepted.

    Args:
        submits_per_second: The submission rate.
        in_flight: The configured in-flight limit; ``None`` for none (synchronous models).
        period: The window the rate is counted over, in seconds: 2 per minute is
            ``submits_per_second=2 / 60, period=60`` and allows a burst of two (see `rate_window`).
        scale: Multiplies every duration (the window, the backoffs); tests compress time with it.
        clock: Current time in seconds.
        sleep: Waits that many seconds.
        rng: The source of jitter.
        backoff: The pause after a throttle without ``Retry-After``; doubles per throttle in a
            row, up to `max_backoff`. A ``Retry-After`` is a floor on top of it.
        jitter: The pause is stretched by up to this fraction, so lanes do not resume in step.
    """

    def __init__(
        self,
        *,
        submits_per_second: float,
        in_flight: int | None,
        period: float = 1.0,
        scale: float = 1.0,
        clock: Clock = anyio.current_time,
        sleep: Sleep = anyio.sleep,
        rng: random.Random | None = None,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        jitter: float = 0.1,
    ) -> None:
        _check_rate("submits_per_second", submits_per_second)
        _check_rate("period", period)
        _check_rate("scale", scale)
        _check_rate("backoff", backoff)
        _check_rate("max_backoff", max_backoff)
        count = submits_per_second * period
        # 2/60 * 60 is 2 only up to rounding; a near-whole count is the whole count it stands for.
        if abs(count - round(count)) < 1e-9:  # noqa: PLR2004
            count = round(count)
        limit, window = rate_window(count, period)
        self._clock = clock
        self._window = SlidingWindow(limit, window * scale * (1 + RATE_MARGIN), clock, sleep=sleep)
        self._slots = InFlightLimiter(in_flight)
        self._configured = in_flight
        self._rng = rng or random.Random()
        self._backoff = backoff * scale
        self._max_backoff = max_backoff * scale
        self._jitter = jitter
        self._paused_until = -math.inf
        self._throttles = 0  # episodes in a row, for the backoff
        self._successes = 0  # in a row, for the additive increase
        # A throttle taken for the rate's: another episode before a window's worth of clean
        # successes proves it was the in-flight cap after all.
        self._suspect = False
        self._clean = 0
        self.throttled = 0
        self.submitted = 0

    @classmethod
    def from_limits(cls, limits: DefaultLimits, **kwargs: Any) -> SubmitLane:
        """A lane enforcing `limits` (see `Limits.for_model`); `kwargs` go to the constructor."""
        return cls(
            submits_per_second=limits.submits_per_second,
            period=limits.period,
            in_flight=limits.in_flight,
            **kwargs,
        )

    @property
    def in_flight(self) -> int:
        """Slots held: tasks being created or not yet terminal."""
        return self._slots.in_flight

    @property
    def limit(self) -> int | None:
        """The current, adapted in-flight limit (``None``: none)."""
        return self._slots.limit

    @property
    def configured(self) -> int | None:
        """The in-flight limit the lane was configured with."""
        return self._configured

    @property
    def waiting(self) -> int:
        """Callers waiting for a slot."""
        return self._slots.waiting

    @property
    def paused_until(self) -> float:
        """Submissions wait until this time (``-inf`` when never paused)."""
        return self._paused_until

    def pause_until(self, until: float) -> None:
        """Hold every submission of the lane until `until`; an earlier pause never shortens it."""
        self._paused_until = max(self._paused_until, until)

    async def acquire_submit(self) -> None:
        """Wait, FIFO, until the rate window and any pause allow one submission, and take it."""
        await self._window.acquire(not_before=lambda: self._paused_until)
        self.submitted += 1

    async def acquire_slot(self) -> None:
        """Wait, FIFO, for an in-flight slot; release it with `release_slot` when terminal."""
        await self._slots.acquire()

    def try_acquire_slot(self) -> bool:
        """Take a slot when one is free and nobody waits; never waits."""
        return self._slots.try_acquire()

    def release_slot(self) -> None:
        """
        Give back a slot taken with `acquire_slot`.

        Raises:
            RuntimeError: No slot is held.
        """
        self._slots.release()

    def on_success(self) -> None:
        """A create succeeded: after `limit` successes in a row, allow one more task in flight."""
        self._throttles = 0
        self._clean += 1
        if self._clean >= self._window.limit:
            self._suspect = False
        limit = self._slots.limit
        if limit is None or limit == self._configured:
            return
        self._successes += 1
        if self._successes >= limit:
            self._successes = 0
            self._slots.set_limit(limit + 1)

    def on_throttled(
        self, retry_after: float | None = None, *, accepted: int | None = None
    ) -> float:
        """
        A create was throttled (429): pause the lane and, unless the lane's own rate window is
        full (then the rate, not the in-flight cap, is the likely cause), lower its in-flight limit.

        Call it while the throttled create still holds its slot, then release or reuse the slot.
        Called after the release, the limit lands one lower than the server's cap; the additive
        increase repairs that within `limit` successes.

        Args:
            retry_after: The server's ``Retry-After``, a floor of the pause.
            accepted: How many of the lane's tasks the server is known to hold (created and not
                ended); the new limit when this proves to be the in-flight cap. Without it, the
                slots held less this one: too high while other creates are in the air.

        Returns:
            The end of the pause.
        """
        self.throttled += 1
        self._successes = 0
        self._clean = 0
        now = self._clock()
        # One burst of rejected creates is one episode: the first 429 decides, the others (sent
        # before the lane paused) only extend the pause. Escalating or cutting once per 429
        # would pause for 30 s and starve the lane after a single burst.
        if now >= self._paused_until:
            self._throttles += 1
            # DashScope answers the same 429 for "too many submissions per second" and "too
            # many tasks in flight". With our own rate window (nearly) full, the rate is the
            # likelier cause (the service counts arrivals, and queueing on the way can bunch a
            # few of ours into its window): pause but keep the in-flight limit, whose cut would
            # slow the lane for thousands of tasks. If it happens again before a window's worth
            # of clean successes, it was the in-flight cap: step down.
            if self._window.used(now) >= RATE_FULL * self._window.limit and not self._suspect:
                self._suspect = True
            else:
                self._step_down(accepted)
        floor = self._backoff * 2.0 ** min(self._throttles - 1, 32)
        delay = max(retry_after or 0.0, min(floor, self._max_backoff))
        until = now + delay * (1.0 + self._rng.uniform(0.0, self._jitter))
        self.pause_until(until)
        return until

    def _step_down(self, accepted: int | None) -> None:
        # The server holds `accepted` of our tasks and refused one more: its cap is `accepted`.
        # Step straight down to it rather than halving (a hidden cap is found in one episode, not
        # log(n) of them); min() keeps a lower limit already learnt. Never below 1, or the lane
        # would stall.
        current = self._slots.limit
        lowered = max(1, self._slots.in_flight - 1 if accepted is None else accepted)
        self._slots.set_limit(lowered if current is None else min(current, lowered))

    def __repr__(self) -> str:
        limit = "unlimited" if self.limit is None else self.limit
        return (
            f"<SubmitLane in_flight={self.in_flight}/{limit} configured={self._configured} "
            f"waiting={self.waiting} submits={self._window.limit}/{self._window.window:g}s>"
        )
