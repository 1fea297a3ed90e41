# Copyright (c) 2026 aioqwenimage contributors. Licensed under the MIT License.
"""
The poll schedule's settings and what it learns: `PollPolicy` and `DurationModel`.

The first poll of a task comes at a low quantile of the durations the server reported for its
model's recent tasks, and the intervals after it are a fraction of their spread. What is learned
comes from the server, so it is checked and bounded: a duration longer than the client itself saw
the task exist is refused, and the learned first poll never exceeds `PollPolicy.max_first_poll`
(three answers claiming a year-long run once made every later task time out before its first
poll, issue 8 item 9).
"""

from __future__ import annotations

import math
import random
from collections import deque
from typing import Final

import attrs

from aioqwenimage import _retry

__all__ = ["PLAUSIBLE_MARGIN", "WARMUP", "DurationModel", "PollPolicy"]

# Samples of a model needed before its learned quantiles replace the policy's defaults.
WARMUP: Final = 3
# A server-reported duration is implausible when it exceeds the time the client itself saw pass
# since the create by more than this share (plus `PollPolicy.min_interval` for the create's own
# latency): the service cannot have run a task longer than it has existed.
PLAUSIBLE_MARGIN: Final = 0.25


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
        stretch: Once sweeps have proven to find completions, per-task polls (the fallback)
            come this many times later.
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


class DurationModel:
    """
    What a model's tasks take, learned from the server's own timestamps of finished tasks.

    Feed it `observe` (``end_time - submit_time`` of each finished task); it answers when to
    poll a task first (`first_delay`) and how long to wait after each unfinished poll
    (`next_interval`). A model with fewer than `WARMUP` samples, a model of ``None``, and any
    model when the policy does not learn get the policy's defaults.
    """

    def __init__(self, policy: PollPolicy | None = None) -> None:
        self._policy = policy or PollPolicy()
        self._samples: dict[str, deque[float]] = {}
        self._sorted: dict[str, list[float]] = {}  # cache, dropped on observe

    @property
    def policy(self) -> PollPolicy:
        """The policy the schedule follows."""
        return self._policy

    def observe(self, model: str | None, seconds: float, *, elapsed: float | None = None) -> bool:
        """
        Record one finished task's duration, unless it is implausible.

        Args:
            model: The task's model.
            seconds: ``end_time - submit_time`` as the service reported them.
            elapsed: The time the client saw pass between creating the task and learning that
                it ended, when known: a reported duration well beyond it is a server's (or a
                clock's) error, and one such sample must not delay every later first poll.

        Returns:
            Whether the sample was kept; negative, non-finite and implausible ones are not.
        """
        if model is None or not math.isfinite(seconds) or seconds < 0:
            return False
        if elapsed is not None and seconds > (
            elapsed * (1 + PLAUSIBLE_MARGIN) + self._policy.min_interval
        ):
            return False
        samples = self._samples.get(model)
        if samples is None:
            samples = self._samples[model] = deque(maxlen=self._policy.samples)
        samples.append(float(seconds))
        self._sorted.pop(model, None)
        return True

    def count(self, model: str | None) -> int:
        """Durations kept for `model`."""
        return len(self._samples.get(model, ())) if model is not None else 0

    def quantile(self, model: str | None, q: float) -> float | None:
        """The `q` quantile of recent durations (interpolated), or ``None`` until learned."""
        if not self._policy.learn or model is None or self.count(model) < WARMUP:
            return None
        ordered = self._sorted.get(model)
        if ordered is None:
            ordered = self._sorted[model] = sorted(self._samples[model])
        position = q * (len(ordered) - 1)
        low = math.floor(position)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

    def _window(self, model: str | None) -> tuple[float, float] | None:
        low = self.quantile(model, self._policy.quantile)
        high = self.quantile(model, 1.0 - self._policy.quantile)
        return None if low is None or high is None else (low, high)

    def first_delay(self, model: str | None) -> float:
        """Delay after submission of a task's first poll."""
        window = self._window(model)
        # A low quantile: most tasks are still running at the first poll (one wasted query),
        # and the few that were done are late by less than the spread of the fastest ones.
        # Bounded: what is learned comes from the server, and a caller's timeout should never
        # expire before the first look at its task.
        policy = self._policy
        if window is None:
            return policy.first_poll
        return min(window[0], max(policy.max_first_poll, policy.first_poll))

    def next_interval(self, model: str | None, polls_so_far: int) -> float:
        """
        Delay before the next poll of a task whose `polls_so_far` polls all found it unfinished.

        Unlearned: ``min_interval * growth**k``, capped. Learned: a constant interval that covers
        the window of usual durations in about ``1 / spread`` polls, so that detection lags a task's
        end by half an interval on average whatever the time scale; past the window (a slow task)
        it grows by `growth` per poll, capped.
        """
        policy = self._policy
        window = self._window(model)
        k = max(0, polls_so_far - 1)
        if window is None:
            return min(policy.max_interval, policy.min_interval * policy.growth ** min(k, 256))
        low, high = window
        step = min(policy.max_interval, max(policy.min_interval, policy.spread * (high - low)))
        inside = math.ceil((high - low) / step)  # intervals that end inside the window
        beyond = max(0, polls_so_far - inside)
        return min(policy.max_interval, step * policy.growth ** min(beyond, 256))

    def __repr__(self) -> str:
        counts = ", ".join(f"{model}={len(s)}" for model, s in self._samples.items())
        return f"<DurationModel {counts}>"
