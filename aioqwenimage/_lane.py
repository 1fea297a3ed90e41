# Copyright (c) 2026 aioqwenimage contributors. Licensed under the MIT License.
"""
One submit lane per model: a rate window, a pause set by throttling, an adaptive in-flight limit.

DashScope answers the same 429 for "too many submissions per second" and "too many tasks in
flight" (``dashscope-api.md`` §6), and the account's real in-flight cap may be lower than
configured or shared with another process. So the lane steps its in-flight limit down to what the
server held when it refused a create, and back up on success. Transient throttles are the normal
case, not an edge (DashScope answers bursts with ``Throttling.BurstRate`` routinely): a throttle
the evidence puts down to the rate leaves the limit alone, and a cut that the creates still in
the air at the time contradict is undone, so that a few 429s never cost concurrency for the rest
of a run (issue 8, item 7: 5% transient 429s once cut a limit of 300 to 12 for good). A hidden
cap is still found, and probed for growth only slowly (one more task after `limit` successes).
"""

from __future__ import annotations

import random
from typing import Any, Final

import anyio

from aioqwenimage._catalog import DefaultLimits
from aioqwenimage._coordination import Coordinator, Lease, WindowSpec
from aioqwenimage._limits import Clock, LocalCoordinator, Sleep
from aioqwenimage._settings import _check_rate

__all__ = ["BATCH_ODDS", "BURST_CODES", "COUNT_SLACK", "RATE_FULL", "RATE_SLACK", "SubmitLane"]

# A 429 with at least this share of the lane's rate window used is taken for a rate throttle.
RATE_FULL: Final = 0.8
# DashScope's code for bursts of requests: about the rate, never the tasks in flight (§6).
BURST_CODES: Final = frozenset({"Throttling.BurstRate"})
# The lane's count of tasks the server holds runs ahead of the server's own by the tasks that
# ended unseen (between two polls): evidence from counts must beat it by this much. To undo a
# cut, a create in the air must be accepted this far above it; to take a throttle for the rate,
# the server must have taken a task with this many more held since the last episode (a larger
# margin: against a hidden cap of 20, 2 gave 5-6% of creates answered 429, 4 gave 3-4%).
COUNT_SLACK: Final = 2
RATE_SLACK: Final = 4
# A cut is undone only while the creates in the air at it were accepted at least this many
# times as often as refused.
BATCH_ODDS: Final = 4


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
        name: The name of the lane's window and slot pool (``"submit:<model>"``): a shared
            coordinator shares them under it.
        coordinator: Where the window and the slots are kept; by default in process, on `clock`
            and `sleep`. The adaptive in-flight limit is the lane's own, in any case.
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
        name: str = "submit",
        coordinator: Coordinator | None = None,
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
        spec = WindowSpec.from_rate(count, period, scale=scale)
        coordinator = coordinator or LocalCoordinator(clock, sleep)
        self._clock = clock
        self._window = coordinator.window(name, spec)
        self._slots = coordinator.slots(name, in_flight)
        self._configured = in_flight
        self._rng = rng or random.Random()
        self._backoff = backoff * scale
        self._max_backoff = max_backoff * scale
        self._jitter = jitter
        self._throttles = 0  # episodes in a row, for the backoff
        self._successes = 0  # in a row, for the additive increase
        # A throttle taken for the rate's: another episode before a window's worth of clean
        # successes proves it was the in-flight cap after all.
        self._suspect = False
        self._clean = 0
        # Tasks created and not yet ended: the lane's own count of what the server holds.
        self._accepted = 0
        # After a cut: the level it was cut to, the limit before it, and how many creates were
        # still in the air. One of those accepted above the cut level proves the throttle was
        # about the rate after all: the limit before the cut comes back.
        self._cut_level: int | None = None
        self._restore: int | None = None
        self._in_air_at_cut = 0
        self._batch_accepted = self._batch_refused = 0  # answers of those, since the cut
        # The most tasks held when the server accepted one more, since the last throttle
        # episode: a throttle with clearly fewer held is no in-flight cap.
        self._proven = 0
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
    def accepted(self) -> int:
        """Tasks created (``on_success(task=True)``) whose slot is not yet released."""
        return self._accepted

    @property
    def paused_until(self) -> float:
        """Submissions wait until this time (``-inf`` when never paused)."""
        return self._window.paused_until

    def pause_until(self, until: float) -> None:
        """Hold every submission of the lane until `until`; an earlier pause never shortens it."""
        self._window.pause_until(until)

    async def acquire_submit(self) -> None:
        """Wait, FIFO, until the rate window and any pause allow one submission, and take it."""
        await self._window.acquire()
        self.submitted += 1

    async def acquire_slot(self) -> Lease:
        """Wait, FIFO, for an in-flight slot; release it with `release_slot` when terminal."""
        return await self._slots.acquire()

    def try_acquire_slot(self) -> bool:
        """Take a slot when one is free and nobody waits; never waits."""
        return self._slots.try_lease() is not None

    def release_slot(self, lease: Lease | None = None, *, task: bool = False) -> None:
        """
        Give back a slot taken with `acquire_slot`: its `lease`, or the oldest one held.

        A lease already released is left alone (releasing twice is harmless).

        Args:
            lease: The slot's lease, as `acquire_slot` returned it.
            task: The slot was held by a task created with ``on_success(task=True)``.

        Raises:
            RuntimeError: No lease is given and no slot is held.
        """
        if lease is None:
            self._slots.release()
        elif lease.released:
            return
        else:
            lease.release()
        if task:
            self._accepted = max(0, self._accepted - 1)

    def on_success(self, *, task: bool = False) -> None:
        """
        A create succeeded: after `limit` successes in a row, allow one more task in flight.

        A cut proven wrong is undone at once: when a create that was already in the air at the
        cut is accepted with more of the lane's tasks held than the cut allowed (and those
        creates were mostly accepted), the throttle was not the in-flight cap, and the limit
        before the cut comes back.

        Args:
            task: It created an async task, held by the server until its slot is released with
                ``release_slot(task=True)``; the count of those is the evidence.
        """
        self._throttles = 0
        self._clean += 1
        if self._clean >= self._window.limit:
            self._suspect = False
        # Answers come back roughly in order: while creates that were in the air at the last cut
        # are still to answer, this is one of them.
        from_before_cut = self._in_air_at_cut > 0
        if from_before_cut:
            self._in_air_at_cut -= 1
            self._batch_accepted += 1
        if task:
            self._accepted += 1
            self._proven = max(self._proven, self._accepted)
            cut = self._cut_level
            # At a real cap most of those creates are refused (a few get in as tasks end
            # unseen); after a transient 429, most are accepted.
            mostly_accepted = self._batch_refused * BATCH_ODDS <= self._batch_accepted
            if (
                from_before_cut
                and mostly_accepted
                and cut is not None
                and self._accepted >= cut + COUNT_SLACK
            ):
                # Later evidence is not trusted this way: at a real cap, the count's lead (tasks
                # ended unseen) grows and shrinks, and undoing on it costs a burst of 429s.
                self._cut_level = None
                self._successes = 0
                self._slots.set_limit(self._restore)
                return
        limit = self._slots.limit
        if limit is None or limit == self._configured:
            return
        self._successes += 1
        if self._successes >= limit:
            self._successes = 0
            self._slots.set_limit(limit + 1)

    def on_throttled(
        self,
        retry_after: float | None = None,
        *,
        accepted: int | None = None,
        code: str | None = None,
    ) -> float:
        """
        A create was throttled (429): pause the lane and, unless the evidence says the rate is
        the cause (a burst code, the lane's own rate window full, or the server having taken a
        task with clearly more of ours held), lower its in-flight limit.

        A cut that a create already in the air contradicts (accepted with more tasks held than
        the cut allowed) is undone, see `on_success`.

        Call it while the throttled create still holds its slot, then release or reuse the slot.
        Called after the release, the limit lands one lower than the server's cap; the additive
        increase repairs that within `limit` successes.

        Args:
            retry_after: The server's ``Retry-After``, a floor of the pause.
            accepted: How many of the lane's tasks the server is known to hold (created and not
                ended, see `accepted`); the new limit when this proves to be the in-flight cap.
                Without it, the slots held less this one: too high while other creates are in
                the air.
            code: The answer's error code; ``Throttling.BurstRate`` is about the rate.

        Returns:
            The end of the pause.
        """
        self.throttled += 1
        if self._in_air_at_cut > 0:  # one of the creates in the air at the last cut
            self._in_air_at_cut -= 1
            self._batch_refused += 1
        self._successes = 0
        self._clean = 0
        now = self._clock()
        # One burst of rejected creates is one episode: the first 429 decides, the others (sent
        # before the lane paused) only extend the pause. Escalating or cutting once per 429
        # would pause for 30 s and starve the lane after a single burst.
        if now >= self._window.paused_until:
            self._throttles += 1
            # DashScope answers the same 429 for "too many submissions per second" and "too
            # many tasks in flight". With our own rate window (nearly) full, the rate is the
            # likelier cause (the service counts arrivals, and queueing on the way can bunch a
            # few of ours into its window): pause but keep the in-flight limit, whose cut would
            # slow the lane for thousands of tasks. If it happens again before a window's worth
            # of clean successes, it was the in-flight cap: step down. Stronger evidence of
            # the rate: a burst code, or the server having taken a task with more of ours held
            # than now (that evidence is spent on this episode, the next needs a new success).
            if code in BURST_CODES:
                pass
            elif accepted is not None and accepted + RATE_SLACK < self._proven:
                self._proven = accepted
            elif self._window.used(now) >= RATE_FULL * self._window.limit and not self._suspect:
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
        if current is not None and lowered >= current:
            return  # the limit already keeps below what the server held
        # Undoing restores the limit before the first of a run of cuts: the later ones of the
        # run were taken from a limit that was itself perhaps wrongly lowered.
        if self._cut_level is None:
            self._restore = current
        self._cut_level = lowered
        self._in_air_at_cut = max(0, self._slots.in_flight - self._accepted - 1)
        self._batch_accepted = self._batch_refused = 0
        self._slots.set_limit(lowered)

    def __repr__(self) -> str:
        limit = "unlimited" if self.limit is None else self.limit
        return (
            f"<SubmitLane in_flight={self.in_flight}/{limit} configured={self._configured} "
            f"waiting={self.waiting} submits={self._window.limit}/{self._window.window:g}s>"
        )
