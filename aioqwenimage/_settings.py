"""
The client's settings, as small frozen values: the transport's (timeouts, pools, retries), the
rate and in-flight limits, and the poll policy.

Each is checked when built, so that a wrong value fails in the constructor rather than as a hang
or a crash under load, and each is hashable. They say what is allowed; the mechanisms that
enforce them live elsewhere (``_limits`` and ``_lane`` for the limits, ``_scheduler`` for the
poll policy, ``_transport`` for the rest), so that a mechanism can change without touching the
public values.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping
from typing import Final

import attrs

from aioqwenimage import _retry
from aioqwenimage._catalog import DefaultLimits
from aioqwenimage._errors import InvalidRequestError
from aioqwenimage._timeouts import network_timeout

__all__ = [
    "DEFAULT_QUERIES_PER_SECOND",
    "WARMUP",
    "Limits",
    "ModelLimits",
    "PollPolicy",
    "PoolLimits",
    "RetryPolicy",
    "Timeouts",
    "rate_window",
]

DEFAULT_QUERIES_PER_SECOND: Final = 15.0
# Samples of a model needed before its learned quantiles replace the policy's defaults.
WARMUP: Final = 3


# --- the transport -------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Timeouts:
    """
    Network timeouts, in seconds.

    Every request also has a total deadline, so that an answer trickling in a byte at a time
    cannot hold a connection (and the poll or create waiting on it) for ever.

    Attributes:
        connect: Establishing a connection (TCP and TLS).
        control: Between two chunks of the answer of a create, poll, list or cancel.
        generation: A synchronous generation, whole: DashScope allows up to 300 s.
        download: Between two chunks of a result download.
        control_total: A create, whole (connection, request and answer).
        query_total: A poll, list or cancel, whole. Their answers are a few KiB, so this is
            short: a drip-fed answer gives its connection back to the other tasks' polls soon.
        download_total: One result download, whole.
    """

    connect: float = 10.0
    control: float = 30.0
    generation: float = 300.0
    download: float = 60.0
    control_total: float = 60.0
    query_total: float = 10.0
    download_total: float = 300.0

    def __attrs_post_init__(self) -> None:
        for field in attrs.fields(Timeouts):
            value = getattr(self, field.name)
            if value is not None:  # None: a limit that is off, where one may be
                network_timeout(value, f"Timeouts.{field.name}")


@attrs.frozen(kw_only=True)
class PoolLimits:
    """
    Connection limits per pool, how long idle connections are kept, and how large an answer
    may grow.

    Attributes:
        control: Connections for creates.
        query: Connections for polls, lists and cancels; also the most polls awaiting an answer
            at once.
        long: Connections for synchronous generations (each holds one for the whole call).
        download: Connections to the result host.
        keepalive: Idle seconds before a pooled connection is closed; longer than the longest
            poll interval so that polls reuse connections (the 2.0 SDK's 5 s does not).
        max_answer_bytes: The largest API answer read (JSON; real ones are a few KiB); a
            longer one is cut off and treated as unreadable.
        max_download_bytes: The largest result image downloaded (real ones are a few MiB);
            a larger one fails with `UnsafeResultError` and nothing is kept.
    """

    control: int = 32
    query: int = 32
    long: int = 256
    download: int = 16
    keepalive: float = 30.0
    max_answer_bytes: int = 4 * 1024 * 1024
    max_download_bytes: int = 100 * 1024 * 1024

    def __attrs_post_init__(self) -> None:
        for field in attrs.fields(PoolLimits):
            _check_positive(f"PoolLimits.{field.name}", getattr(self, field.name))


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """
    Retries of idempotent calls (list, cancel, downloads): capped, jittered exponential backoff.

    Attributes:
        attempts: Tries in all, the first included.
        base: The first backoff, in seconds.
        cap: The largest backoff, in seconds.
        max_retry_after: The longest server-given wait (``Retry-After``) honoured, in seconds,
            everywhere: polls, creates, lists. A longer one (``inf``, ``1e9``) is cut to this;
            one that is not a non-negative number (NaN, negative, an HTTP date) is ignored.
    """

    attempts: int = 5
    base: float = 0.5
    cap: float = 20.0
    max_retry_after: float = 60.0

    def __attrs_post_init__(self) -> None:
        _check_positive("RetryPolicy.max_retry_after", self.max_retry_after)

    def backoff(self, attempt: int, rng: random.Random, floor: float | None = None) -> float:
        """
        The delay before retry number `attempt` (1-based); `floor` is a ``Retry-After``, waited
        plus up to 10 % of it and 50 ms (``_retry.backoff``, the formula of every retry).
        """
        return _retry.backoff(
            attempt, rng, base=self.base, cap=self.cap, floor=floor, floor_pad=0.05
        )

    def scaled(self, factor: float) -> RetryPolicy:
        """The same policy with every delay times `factor` (tests compress time with it)."""
        return attrs.evolve(
            self,
            base=self.base * factor,
            cap=self.cap * factor,
            max_retry_after=self.max_retry_after * factor,
        )


def _check_positive(name: str, value: object) -> None:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value <= 0
    ):
        msg = f"{name} must be a positive finite number, got {value!r}"
        raise InvalidRequestError(msg, parameter=name)


# --- rate and in-flight limits -------------------------------------------------------------------


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


# --- polling -------------------------------------------------------------------------------------


def _positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        msg = f"PollPolicy.{name} must be a positive finite number, got {value!r}"
        raise ValueError(msg)


@attrs.frozen(kw_only=True)
class PollPolicy:
    """
    How tasks are polled. All durations are in seconds; `scaled` compresses them for tests.

    Attributes:
        first_poll: Delay after submission of the first poll while nothing has been learned about
            the model (its fastest tasks take about 5 s).
        max_first_poll: The learned first poll never comes later than this (or than
            `first_poll`, if larger), whatever durations the service reports.
        min_interval: The first interval after an unfinished poll, while nothing is learned; the
            smallest interval ever; and the first step of the retry backoff.
        max_interval: The largest interval between two polls of an unfinished task.
        growth: Each further interval is the previous times this, up to `max_interval`.
        jitter: Each delay is spread by up to this fraction either way, so that tasks submitted
            together are not polled together.
        learn: Learn the first poll and the intervals per model from finished tasks.
        samples: Recent durations kept per model.
        quantile: Once learned, the first poll comes at this quantile of recent durations; the
            learned window of durations runs from it to ``1 - quantile``.
        spread: Once learned, the interval inside that window is this fraction of its width (so
            about ``1 / spread`` polls cover it), kept within `min_interval`..`max_interval`.
        max_backoff: The largest delay after a failed poll (5xx, network error, 429).
        sweep: Also learn completions of many tasks at once from the task list (see
            ``_sweep``): one query answers for every live task.
        sweep_interval: The shortest time between two sweeps.
        sweep_min_live: Sweep only with at least this many live tasks; below, polls are cheaper.
        sweep_share: The part of the query budget sweeps may spend.
        stretch: Per-task polls (the fallback) come this many times later while sweeps see
            completions first: once sweeps have proven to, and for the first poll of a task
            submitted among at least `sweep_min_live` others until they have not (most tasks
            left to them found ended by their own polls instead).
    """

    first_poll: float = 5.0
    max_first_poll: float = 120.0
    min_interval: float = 1.0
    max_interval: float = 5.0
    growth: float = 1.25
    jitter: float = 0.1
    learn: bool = True
    samples: int = 64
    quantile: float = 0.2
    spread: float = 0.35
    max_backoff: float = 30.0
    sweep: bool = True
    sweep_interval: float = 0.2
    sweep_min_live: int = 8
    sweep_share: float = 0.15
    stretch: float = 3.0

    def __attrs_post_init__(self) -> None:
        for name in (
            "first_poll",
            "max_first_poll",
            "min_interval",
            "max_interval",
            "spread",
            "max_backoff",
            "sweep_interval",
        ):
            _positive(name, getattr(self, name))
        if self.min_interval > self.max_interval:
            msg = (
                f"PollPolicy.min_interval ({self.min_interval}) must not exceed "
                f"max_interval ({self.max_interval})"
            )
            raise ValueError(msg)
        if not (math.isfinite(self.growth) and self.growth >= 1):
            msg = f"PollPolicy.growth must be at least 1, got {self.growth!r}"
            raise ValueError(msg)
        if not 0 <= self.jitter < 1:
            msg = f"PollPolicy.jitter must be in [0, 1), got {self.jitter!r}"
            raise ValueError(msg)
        if isinstance(self.samples, bool) or not isinstance(self.samples, int):
            msg = f"PollPolicy.samples must be an integer, got {self.samples!r}"
            raise TypeError(msg)
        if self.samples < WARMUP:
            msg = f"PollPolicy.samples must be at least {WARMUP}, got {self.samples!r}"
            raise ValueError(msg)
        if not 0 < self.sweep_share <= 1 or self.stretch < 1 or self.sweep_min_live < 1:
            msg = (
                "PollPolicy.sweep_share must be in (0, 1], stretch at least 1 and "
                f"sweep_min_live at least 1, got {self.sweep_share!r}, {self.stretch!r}, "
                f"{self.sweep_min_live!r}"
            )
            raise ValueError(msg)
        if not 0 < self.quantile < 0.5:  # noqa: PLR2004 - a low quantile, below the median
            msg = f"PollPolicy.quantile must be in (0, 0.5), got {self.quantile!r}"
            raise ValueError(msg)

    def scaled(self, factor: float) -> PollPolicy:
        """The same policy with every duration times `factor` (tests compress time with it)."""
        _positive("scaled() factor", factor)
        return attrs.evolve(
            self,
            first_poll=self.first_poll * factor,
            max_first_poll=self.max_first_poll * factor,
            min_interval=self.min_interval * factor,
            max_interval=self.max_interval * factor,
            max_backoff=self.max_backoff * factor,
            sweep_interval=self.sweep_interval * factor,
        )

    def jittered(self, delay: float, rng: random.Random) -> float:
        """`delay` spread by up to `jitter` either way."""
        return delay * (1.0 + rng.uniform(-self.jitter, self.jitter))

    def backoff(self, attempt: int, rng: random.Random, floor: float | None = None) -> float:
        """
        The delay after failure number `attempt` (1-based) in a row: capped exponential.

        Half of it is random ("equal jitter": spread out, never near zero). A server's
        ``Retry-After`` (`floor`) is respected, plus up to `jitter` of it.
        """
        return _retry.backoff(
            attempt,
            rng,
            base=self.min_interval,
            cap=self.max_backoff,
            floor=floor,
            floor_spread=self.jitter,
        )


PollPolicy.__module__ = "aioqwenimage"
