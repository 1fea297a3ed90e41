# Copyright (c) 2026 aioqwenimage contributors. Licensed under the MIT License.
"""
When to poll which task: pure schedule logic, and the one driver task per client that runs it.

Every task is polled from one min-heap of due times, and every poll of every task spends one token
of one global budget (the API allows 20 task queries per second per account, ``dashscope-api.md``
§7). The first poll of a task comes at a low quantile of the durations the server reported for
its model's recent tasks (a conservative default until a few are known); then intervals a fixed
fraction of the learned spread of durations, so a task is found finished soon after it ends with
few polls; past the usual durations they widen slowly. A 429 pauses the whole budget; a 5xx or
network error backs off that task; neither ever ends a wait (``DESIGN.md``, Polling).

Everything here but `PollScheduler.run` is synchronous and takes the time as an argument or from
an injected clock, so the schedule is tested on simulated time.
"""

from __future__ import annotations

import enum
import logging
import math
import random
from collections.abc import Awaitable, Callable, Hashable
from typing import ClassVar, Generic, TypeVar

import anyio
import anyio.abc
import anyio.lowlevel
import attrs

from aioqwenimage._durations import DurationModel
from aioqwenimage._limits import Clock, Sleep
from aioqwenimage._poll_queue import PollQueue
from aioqwenimage._query_budget import QueryBudget
from aioqwenimage._settings import PollPolicy

__all__ = [
    "DurationModel",
    "OutcomeKind",
    "PollOutcome",
    "PollPolicy",
    "PollQueue",
    "PollScheduler",
    "PollStats",
    "QueryBudget",
]

logger = logging.getLogger("aioqwenimage")

K = TypeVar("K", bound=Hashable)


class OutcomeKind(enum.Enum):
    """What one poll found."""

    FINISHED = "finished"
    """The task is terminal (the callback resolved it) or gone: never poll it again."""
    PENDING = "pending"
    """Not finished yet: poll again after the next interval."""
    THROTTLED = "throttled"
    """429: pause the whole budget, then poll again."""
    RETRY = "retry"
    """5xx or a network error: back off this task, then poll again."""


@attrs.frozen
class PollOutcome:
    """
    The answer of the poll callback: `FINISHED`, `PENDING`, `THROTTLED`, `RETRY`, or one made by
    `throttled` / `retry` to carry the server's ``Retry-After``.

    Attributes:
        kind: What the poll found.
        delay: For `THROTTLED` and `RETRY`: the server's ``Retry-After``, a floor of the backoff.
    """

    kind: OutcomeKind
    delay: float | None = None

    FINISHED: ClassVar[PollOutcome]
    PENDING: ClassVar[PollOutcome]
    THROTTLED: ClassVar[PollOutcome]
    RETRY: ClassVar[PollOutcome]

    @classmethod
    def throttled(cls, retry_after: float | None = None) -> PollOutcome:
        """A 429, with the server's ``Retry-After`` when it sent one."""
        return cls(OutcomeKind.THROTTLED, retry_after)

    @classmethod
    def retry(cls, delay: float | None = None) -> PollOutcome:
        """A 5xx or network error, with the server's ``Retry-After`` when it sent one."""
        return cls(OutcomeKind.RETRY, delay)


PollOutcome.FINISHED = PollOutcome(OutcomeKind.FINISHED)
PollOutcome.PENDING = PollOutcome(OutcomeKind.PENDING)
PollOutcome.THROTTLED = PollOutcome(OutcomeKind.THROTTLED)
PollOutcome.RETRY = PollOutcome(OutcomeKind.RETRY)


@attrs.frozen(kw_only=True)
class PollStats:
    """
    What a scheduler holds now. (What polls answered is counted once, by the client's
    ``_events.Recorder``; the scheduler keeps no second count of it.)

    Attributes:
        live: Tasks being polled.
        in_air: Polls awaiting their answer.
    """

    live: int
    in_air: int


@attrs.define
class _Track:
    model: str | None
    polls: int = 0  # answered unfinished, for the intervals
    failures: int = 0  # in a row, for the backoff
    stretched: bool = False  # polled later than usual: sweeps are expected to see it end first
    first_delay: float = 0.0  # unstretched


class PollScheduler(Generic[K]):
    """
    Polls every registered task through one callback, within one query budget.

    `run` is the one driver task (in the client's task group); `add` and `remove` register and
    forget tasks from anywhere in the same event loop. The callback polls one task, resolves it
    when terminal, and says what it found; it should not raise (an exception is logged and
    treated as `PollOutcome.RETRY`, so a bug never ends all waits).

    Args:
        poll: The callback.
        policy: The schedule; defaults to that of `durations`.
        budget: The query budget shared with the client's other task queries.
        clock: Current time in seconds, the clock of `add`'s ``submitted_at``.
        sleep: Waits that many seconds.
        durations: What was learned about the models' durations (shared with the client).
        rng: The source of jitter.
        max_in_air: At most this many polls await their answer at once; due ones wait.
    """

    def __init__(
        self,
        poll: Callable[[K], Awaitable[PollOutcome]],
        *,
        policy: PollPolicy | None = None,
        budget: QueryBudget | None = None,
        clock: Clock = anyio.current_time,
        sleep: Sleep = anyio.sleep,
        durations: DurationModel | None = None,
        rng: random.Random | None = None,
        max_in_air: int = 64,
    ) -> None:
        if max_in_air < 1:
            msg = f"max_in_air must be at least 1, got {max_in_air!r}"
            raise ValueError(msg)
        self._poll = poll
        self._durations = durations or DurationModel(policy)
        self._policy = policy or self._durations.policy
        self._budget = budget or QueryBudget(clock=clock, sleep=sleep)
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._max_in_air = max_in_air
        self._queue: PollQueue[K] = PollQueue()
        self._tracks: dict[K, _Track] = {}
        self._wakeup: anyio.Event | None = None
        self._deadline = math.inf  # when the sleeping driver wakes by itself
        self._running = False
        self._in_air = 0
        self._throttles = 0  # in a row, budget-wide
        self._stretch = 1.0  # per-task delays are multiplied by this (sweeps cover the rest)
        self._crowd = (1.0, 0)  # (stretch, tasks): see `stretch_crowds`
        # Added unstretched while the crowd was still small, and still polled (a crowd may never
        # come: a service generating one task at a time must not keep every task it polled).
        self._before_crowd: dict[K, None] = {}

    @property
    def budget(self) -> QueryBudget:
        """The query budget the polls spend."""
        return self._budget

    @property
    def durations(self) -> DurationModel:
        """What was learned about durations."""
        return self._durations

    @property
    def stats(self) -> PollStats:
        """What the scheduler holds now."""
        return PollStats(live=len(self._tracks), in_air=self._in_air)

    def __contains__(self, key: object) -> bool:
        return key in self._tracks

    def __len__(self) -> int:
        return len(self._tracks)

    def add(
        self,
        key: K,
        model: str | None,
        submitted_at: float,
        *,
        first_due: float | None = None,
    ) -> None:
        """
        Poll `key` until its poll says it is finished or it is `remove`d.

        Args:
            key: The task (any hashable); adding it again restarts its schedule.
            model: Whose learned durations to use; ``None`` for the defaults.
            submitted_at: When the task was created, by this scheduler's clock.
            first_due: When to poll first, by this scheduler's clock, instead of the learned time
                after `submitted_at` (a re-attached task may be long done).
        """
        track = _Track(model)
        if first_due is None:
            delay = self._durations.first_delay(model)
            stretch, (factor, crowd) = self._stretch, self._crowd
            if stretch == 1 and factor > 1:
                if len(self._tracks) < crowd:
                    self._before_crowd[key] = None
                else:
                    stretch = factor
                    self._stretch_before_crowd(factor)
            track.stretched = stretch > 1
            track.first_delay = delay
            first_due = submitted_at + self._policy.jittered(delay * stretch, self._rng)
        self._tracks[key] = track
        self._schedule(key, first_due)

    def _stretch_before_crowd(self, factor: float) -> None:
        """The crowd is there: the tasks added just before it are left to sweeps too."""
        now = self._clock()
        for key in self._before_crowd:
            track = self._tracks[key]
            due = self._queue.due(key)
            if track.polls or track.stretched or due is None or due <= now:
                continue
            track.stretched = True
            self._queue.schedule(key, max(now, due + (factor - 1) * track.first_delay))
        self._before_crowd.clear()

    def remove(self, key: K) -> None:
        """Never poll `key` again; a poll of it in the air is ignored when it answers."""
        self._tracks.pop(key, None)
        self._before_crowd.pop(key, None)
        self._queue.discard(key)

    @property
    def stretch(self) -> float:
        """The factor applied to every per-task delay."""
        return self._stretch

    def set_stretch(self, factor: float) -> None:
        """
        Multiply every per-task delay by `factor` from now on, polls already queued included
        (their remaining wait is rescaled): the fallback schedule of tasks that sweeps cover.
        """
        now = self._clock()
        ratio = factor / self._stretch
        self._stretch = factor
        for key, track in self._tracks.items():
            track.stretched = factor > 1
            due = self._queue.due(key)
            if due is not None and due > now:
                self._queue.schedule(key, now + (due - now) * ratio)
        self.wake()

    def stretch_crowds(self, factor: float, crowd: int) -> None:
        """
        While the stretch is 1, a task added when at least `crowd` others are polled is first
        polled `factor` times later than usual: sweeps run at that many live tasks and should
        see it end first (a factor of 1 turns this off; tasks already added keep their time).
        """
        self._crowd = (factor, crowd)
        self._before_crowd.clear()

    def left_to_sweeps(self, key: K) -> bool:
        """Whether `key` is polled later than usual, its end left to sweeps to see first."""
        track = self._tracks.get(key)
        return track is not None and track.stretched

    def poll_now(self, key: K) -> bool:
        """Bring the next poll of `key` forward to now; False when none is queued."""
        if key not in self._queue:
            return False
        self._schedule(key, self._clock())
        return True

    def wake(self) -> None:
        """Make the driver look at the queue and the budget again (after outside changes)."""
        if self._wakeup is not None:
            self._wakeup.set()

    def _schedule(self, key: K, due: float) -> None:
        self._queue.schedule(key, due)
        if due < self._deadline:
            self.wake()

    async def run(self) -> None:
        """
        Poll due tasks until cancelled.

        Raises:
            RuntimeError: It is already running.
        """
        if self._running:
            msg = "PollScheduler.run() is already running"
            raise RuntimeError(msg)
        self._running = True
        try:
            async with anyio.create_task_group() as tg:
                while True:
                    await self._step(tg)
        finally:
            self._running = False
            self._wakeup = None
            self._deadline = math.inf

    async def _step(self, tg: anyio.abc.TaskGroup) -> None:
        self._wakeup = anyio.Event()
        now = self._clock()
        room = self._max_in_air - self._in_air
        for key in self._queue.pop_ready(now, self._budget, room):
            self._in_air += 1
            tg.start_soon(self._poll_one, key)
        due = self._queue.next_due()
        if due is None or self._in_air >= self._max_in_air:
            # Nothing queued, or no room: an add, a schedule or an answer wakes us.
            self._deadline = math.inf
        elif due <= now:
            self._deadline = self._budget.next_free(now)  # due, but out of tokens
        else:
            self._deadline = due
        await self._sleep_until(self._deadline, now)

    async def _sleep_until(self, deadline: float, now: float) -> None:
        wakeup = self._wakeup
        assert wakeup is not None  # noqa: S101 - set by _step
        if deadline == math.inf:
            await wakeup.wait()
            return
        async with anyio.create_task_group() as race:

            async def alarm() -> None:
                await self._sleep(deadline - now)
                race.cancel_scope.cancel()

            race.start_soon(alarm)
            await wakeup.wait()
            race.cancel_scope.cancel()

    async def _poll_one(self, key: K) -> None:
        track = self._tracks.get(key)
        try:
            outcome = await self._poll(key)
        except Exception:
            logger.exception("the poll callback failed; polling again later")
            outcome = PollOutcome.RETRY
        finally:
            self._in_air -= 1
            if self._in_air == self._max_in_air - 1:
                self.wake()  # there is room again
        now = self._clock()
        kind = outcome.kind
        if kind is OutcomeKind.FINISHED or kind is OutcomeKind.PENDING:
            self._throttles = 0
        # Polls in the air when the first 429 came in are answered 429 too: they belong to the
        # same episode and must not escalate the backoff.
        elif kind is OutcomeKind.THROTTLED and now >= self._budget.paused_until:
            self._throttles += 1
            pause = self._policy.backoff(self._throttles, self._rng, outcome.delay)
            self._budget.pause_until(now + pause)
        if track is None or self._tracks.get(key) is not track:
            return  # removed (or added anew) while in the air
        if kind is OutcomeKind.FINISHED:
            del self._tracks[key]
            self._before_crowd.pop(key, None)
            return
        if kind is OutcomeKind.PENDING:
            track.failures = 0
            track.polls += 1
            interval = self._durations.next_interval(track.model, track.polls) * self._stretch
            due = now + self._policy.jittered(interval, self._rng)
        elif kind is OutcomeKind.THROTTLED:
            due = self._budget.paused_until
        else:
            track.failures += 1
            due = now + self._policy.backoff(track.failures, self._rng, outcome.delay)
        self._schedule(key, due)

    def __repr__(self) -> str:
        return (
            f"<PollScheduler live={len(self._tracks)} in_air={self._in_air} "
            f"running={self._running}>"
        )
