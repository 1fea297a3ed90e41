# Copyright (c) 2026 aioqwenimage contributors. Licensed under the MIT License.
"""
What the poll schedule learns: `DurationModel`, the durations of a model's tasks.
Its settings are a `PollPolicy` (``_settings``).

The first poll of a task comes at a low quantile of the durations the server reported for its
model's recent tasks, and the intervals after it are a fraction of their spread. What is learned
comes from the server, so it is checked and bounded: a duration longer than the client itself saw
the task exist is refused, and the learned first poll never exceeds `PollPolicy.max_first_poll`
(three answers claiming a year-long run once made every later task time out before its first
poll, issue 8 item 9).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Final

from aioqwenimage._settings import WARMUP, PollPolicy

__all__ = ["PLAUSIBLE_MARGIN", "DurationModel"]

# A server-reported duration is implausible when it exceeds the time the client itself saw pass
# since the create by more than this share (plus `PollPolicy.min_interval` for the create's own
# latency): the service cannot have run a task longer than it has existed.
PLAUSIBLE_MARGIN: Final = 0.25


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
