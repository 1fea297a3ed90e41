# Copyright (c) 2026 aioqwenimage contributors. Licensed under the MIT License.

"""
The adaptive in-flight limit under throttling: transient 429s must not cut it for good, a hidden
cap must still be found.

The pure tests drive a `SubmitLane` through a small discrete-event model of a server on a fake
clock (no event loop, no sleeps); the end-to-end ones run the client against the emulator.
"""

from __future__ import annotations

import heapq
import random
import time

import anyio
import attrs

import aioqwenimage as q
from aioqwenimage._lane import SubmitLane
from aioqwenimage.testing import EmulatorLimits, FakeDashScope, Fault, ModelQuota

MODEL = "qwen-image-plus"


@attrs.define
class _Run:
    makespan: float
    throttled: int
    limits: list[int]  # the lane's limit after each create's answer
    peak: int  # the most tasks the server held at once
    held: list[int]  # tasks the server held at each create's answer


def _simulate(
    *,
    tasks: int,
    configured: int | None,
    throttle_rate: float = 0.0,
    cap: int | None = None,
    duration: float = 1.0,
    rtt: float = 0.01,
    lag: float = 0.0,
    seed: int = 7,
) -> _Run:
    """
    `tasks` creates through one lane against a server that answers `throttle_rate` of them with
    a transient 429 and, with `cap`, refuses any create beyond `cap` tasks held. The client
    learns that a task ended up to `lag` after it did (polls are not instant), so its count of
    tasks held runs ahead of the server's.
    """
    rng = random.Random(seed)
    now = 0.0
    lane = SubmitLane(
        submits_per_second=100_000,
        in_flight=configured,
        clock=lambda: now,
        rng=random.Random(seed),
        backoff=rtt,
        max_backoff=10 * rtt,
        jitter=0.0,
    )
    events: list[tuple[float, int, str]] = []  # (time, tie-break, kind)
    counter = 0
    left = tasks
    held = peak = throttled = 0
    limits: list[int] = []
    helds: list[int] = []

    def push(at: float, kind: str) -> None:
        nonlocal counter
        counter += 1
        heapq.heappush(events, (at, counter, kind))

    def send() -> None:
        nonlocal left
        while left and now >= lane.paused_until and lane.try_acquire_slot():
            left -= 1
            push(now + rtt, "answer")
        if left and now < lane.paused_until:
            push(lane.paused_until, "wake")

    send()
    while events:
        now, _, kind = heapq.heappop(events)
        if kind == "answer":
            refused = (cap is not None and held >= cap) or rng.random() < throttle_rate
            if refused:
                throttled += 1
                lane.on_throttled(rtt, accepted=lane.accepted)
                lane.release_slot()
                left += 1
            else:
                held += 1
                peak = max(peak, held)
                lane.on_success(task=True)
                ends = now + duration * rng.uniform(0.8, 1.2)
                push(ends, "ended")
                push(ends + rng.uniform(0.0, lag), "done")
            limits.append(lane.limit if lane.limit is not None else -1)
            helds.append(held)
        elif kind == "ended":
            held -= 1
        elif kind == "done":
            lane.release_slot(task=True)
        send()
    return _Run(makespan=now, throttled=throttled, limits=limits, peak=peak, held=helds)


def test_transient_throttles_do_not_collapse_the_limit():
    """5% random 429s without a server cap: about the fault-free makespan, limit kept high."""
    clean = _simulate(tasks=3000, configured=300)
    noisy = _simulate(tasks=3000, configured=300, throttle_rate=0.05)
    assert 100 < noisy.throttled  # the faults did fire
    assert noisy.makespan <= 1.2 * clean.makespan
    # Past the start, the limit stays near the configured one: cuts are undone.
    settled = noisy.limits[len(noisy.limits) // 5 :]
    assert 0.8 * 300 <= sum(settled) / len(settled)
    assert 0.8 * 300 <= noisy.peak


def test_a_cut_contradicted_by_a_create_in_the_air_is_undone():
    """A create in the air at the cut, accepted above the cut level, restores the old limit."""
    lane = SubmitLane(submits_per_second=1000, in_flight=300, clock=lambda: 0.0, jitter=0.0)
    for _ in range(40):
        assert lane.try_acquire_slot()
    for _ in range(30):
        lane.on_success(task=True)
    lane.on_throttled(None, accepted=lane.accepted)  # 9 other creates in the air
    lane.release_slot()
    assert 30 == lane.limit
    lane.on_success(task=True)  # 31 held: within the count's lead over the server's
    assert 30 == lane.limit
    lane.on_success(task=True)  # 32 held: the server took more than the cut allowed
    assert 300 == lane.limit


def _churn(lane: SubmitLane, times: int) -> None:
    """`times` tasks end and as many new ones are accepted: the same number held."""
    for _ in range(times):
        lane.release_slot(task=True)
        assert lane.try_acquire_slot()
        lane.on_success(task=True)


def _add(lane: SubmitLane) -> None:
    """One more task accepted."""
    assert lane.try_acquire_slot()
    lane.on_success(task=True)


def test_a_cut_later_exceeded_grows_back_additively():
    """Successes above a cut, from creates sent after it, only bring the slow additive growth."""
    lane = SubmitLane(submits_per_second=1000, in_flight=300, clock=lambda: 0.0, jitter=0.0)
    for _ in range(30):
        _add(lane)
    assert lane.try_acquire_slot()
    lane.on_throttled(None, accepted=lane.accepted)  # nothing else in the air
    lane.release_slot()
    assert 30 == lane.limit
    _churn(lane, 30)  # one more task after `limit` successes
    assert 31 == lane.limit
    _add(lane)
    _churn(lane, 30)
    assert 32 == lane.limit
    _add(lane)  # 32 held, two above the cut: at a real cap, only the count's lead
    assert 32 == lane.limit
    _churn(lane, 31)
    assert 33 == lane.limit


def test_a_burst_code_never_cuts_the_limit():
    """``Throttling.BurstRate`` is about the rate: the lane pauses and keeps its limit."""
    lane = SubmitLane(submits_per_second=1000, in_flight=50, clock=lambda: 0.0, jitter=0.0)
    for _ in range(10):
        assert lane.try_acquire_slot()
        lane.on_success(task=True)
    until = lane.on_throttled(2.0, accepted=lane.accepted, code="Throttling.BurstRate")
    assert (50, 2.0) == (lane.limit, until)


def test_a_hidden_cap_is_still_found():
    """Told 50 against a hidden cap of 20: the lane settles at the cap, few creates refused."""
    run = _simulate(tasks=2000, configured=50, cap=20, lag=0.1)
    middle = slice(len(run.held) // 5, 4 * len(run.held) // 5)
    held = run.held[middle]
    assert 0.9 * 20 <= sum(held) / len(held)
    assert run.throttled <= 0.1 * 2000
    assert max(run.limits[middle]) <= 25  # it probes, it does not run back to 50


def test_a_confirmed_cap_is_not_undone_by_successes_below_it():
    """Successes at or below the level of a cut leave the limit to the slow additive increase."""
    lane = SubmitLane(submits_per_second=1000, in_flight=50, clock=lambda: 0.0, jitter=0.0)
    for _ in range(21):
        assert lane.try_acquire_slot()
    for _ in range(20):
        lane.on_success(task=True)
    lane.on_throttled(None, accepted=lane.accepted)
    lane.release_slot()
    assert 20 == lane.limit
    for _ in range(5):  # a task ends, the next one takes its place: never more than 20 held
        lane.release_slot(task=True)
        assert lane.try_acquire_slot()
        lane.on_success(task=True)
    assert 20 == lane.limit


# --- end to end, against the emulator -----------------------------------------------------------

SCALE = 0.01


async def _run_emulated(count: int, *, throttle_rate: float) -> tuple[float, int, float]:
    """
    (seconds, 429s sent, mean slots held over the middle half) for `count` generations, 100 in
    flight at most: the configured limit, not the machine, sets the pace.
    """
    limits = EmulatorLimits(
        task_queries_per_second=5000, models={MODEL: ModelQuota(in_flight=None, submits=5000)}
    )
    async with FakeDashScope(
        time_scale=SCALE, seed=3, limits=limits, durations={MODEL: (30.0, 42.0)}
    ) as fake:
        if throttle_rate:
            fake.faults.add(Fault(kind="throttle", endpoints="create", rate=throttle_rate))
        client = q.Client(
            api_key=fake.api_key,
            base_url=fake.base_url,
            time_scale=SCALE,
            seed=5,
            poll=q.PollPolicy(first_poll=30, min_interval=2, max_interval=5, sweep=False),
            limits=q.Limits(
                queries_per_second=3000,
                models={MODEL: q.ModelLimits(in_flight=100, submits_per_second=5000)},
            ),
        )
        done = 0
        limits: list[int] = []
        async with client:
            started = time.perf_counter()

            async def one(index: int) -> None:
                nonlocal done
                await client.generate(f"prompt {index}", model=MODEL)
                done += 1
                # Slots held never exceed the lane's limit: a limit cut to 13-18 holds no more.
                held = client.stats.in_flight.get(MODEL, 0)
                if count // 4 < done <= 3 * count // 4:
                    limits.append(held)

            with anyio.fail_after(120):
                async with anyio.create_task_group() as tg:
                    for index in range(count):
                        tg.start_soon(one, index)
            elapsed = time.perf_counter() - started
        assert count == fake.stats.tasks_created[MODEL]
        return elapsed, fake.stats.requests["create"].get(429, 0), sum(limits) / len(limits)


async def test_transient_throttles_keep_the_fault_free_pace_end_to_end():
    """600 generations with 5% of creates answered 429 take about the fault-free time."""
    clean, _, _ = await _run_emulated(600, throttle_rate=0.0)
    noisy, throttled, mean_limit = await _run_emulated(600, throttle_rate=0.05)
    assert 10 <= throttled
    # Before the fix: 17.3 s against 3.5 s, the limit down to 13-18. Shared CPUs make the
    # ratio noisy, so its bound is loose; the lane's limit tells the mechanism apart too.
    assert noisy <= 2.0 * clean, (noisy, clean)
    assert 60 <= mean_limit
