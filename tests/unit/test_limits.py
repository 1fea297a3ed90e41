# Copyright (c) 2026 aioqwenimage contributors. Licensed under the MIT License.

"""Limits settings, the sliding window, in-flight slots and the per-model submit lanes."""

from __future__ import annotations

import asyncio
import math
import random
from typing import Any

import anyio
import anyio.lowlevel
import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aioqwenimage._catalog import DefaultLimits
from aioqwenimage._lane import SubmitLane
from aioqwenimage._limits import InFlightLimiter, SlidingWindow, make_overall_cap
from aioqwenimage._settings import Limits, ModelLimits, rate_window
from tests.virtual_time import run_virtual


def test_virtual_loop_detects_deadlock():
    """The virtual loop fails loudly instead of hanging when nothing can ever happen."""

    async def main() -> None:
        await anyio.Event().wait()

    with pytest.raises(RuntimeError, match="deadlock"):
        run_virtual(main)


# --- settings ------------------------------------------------------------------------------------


def test_limits_defaults():
    """Defaults: 15 queries/s, no overall cap, no overrides."""
    limits = Limits()
    assert (15, None, {}) == (limits.queries_per_second, limits.max_in_flight, dict(limits.models))


def test_public_classes_show_the_public_module():
    """Limits and ModelLimits present themselves as aioqwenimage's."""
    assert ("aioqwenimage", "aioqwenimage") == (Limits.__module__, ModelLimits.__module__)


def test_limits_are_frozen_hashable_values():
    """Equal settings are equal and hash alike; the models mapping cannot be changed."""
    one = Limits(models={"qwen-image-plus": ModelLimits(in_flight=50)})
    two = Limits(models={"qwen-image-plus": ModelLimits(in_flight=50)})
    assert one == two
    assert hash(one) == hash(two)
    assert "{'qwen-image-plus': ModelLimits(in_flight=50, submits_per_second=None)}" in repr(one)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        one.queries_per_second = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        one.models["x"] = ModelLimits()  # type: ignore[index]


def test_limits_copy_the_mapping_given():
    """Changing the dict passed in later does not change the Limits."""
    models = {"qwen-image-plus": ModelLimits(in_flight=3)}
    limits = Limits(models=models)
    models["wan2.5-t2i-preview"] = ModelLimits()
    assert ["qwen-image-plus"] == list(limits.models)
    assert 1 == len(limits.models)


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"in_flight": 0}, ValueError, "in_flight"),
        ({"in_flight": -1}, ValueError, "in_flight"),
        ({"in_flight": 2.5}, TypeError, "in_flight"),
        ({"in_flight": True}, TypeError, "in_flight"),
        ({"submits_per_second": 0}, ValueError, "submits_per_second"),
        ({"submits_per_second": -2}, ValueError, "submits_per_second"),
        ({"submits_per_second": math.inf}, ValueError, "submits_per_second"),
        ({"submits_per_second": math.nan}, ValueError, "submits_per_second"),
        ({"submits_per_second": "2"}, TypeError, "submits_per_second"),
    ],
)
def test_model_limits_validation(kwargs, error, field):
    """Bad model limits are refused with an error naming the field."""
    with pytest.raises(error, match=f"ModelLimits.{field}"):
        ModelLimits(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"queries_per_second": 0}, ValueError, "queries_per_second"),
        ({"queries_per_second": -1.5}, ValueError, "queries_per_second"),
        ({"queries_per_second": None}, TypeError, "queries_per_second"),
        ({"max_in_flight": 0}, ValueError, "max_in_flight"),
        ({"max_in_flight": "4"}, TypeError, "max_in_flight"),
        ({"models": [("qwen-image-plus", ModelLimits())]}, TypeError, "models"),
        ({"models": {"": ModelLimits()}}, TypeError, "models"),
        ({"models": {3: ModelLimits()}}, TypeError, "models"),
        ({"models": {"qwen-image-plus": {"in_flight": 3}}}, TypeError, "models"),
    ],
)
def test_limits_validation(kwargs, error, field):
    """Bad client limits are refused with an error naming the field."""
    with pytest.raises(error, match=f"Limits.{field}"):
        Limits(**kwargs)


_PLUS = DefaultLimits(submits=2, period=1, in_flight=2)
_MAX = DefaultLimits(submits=2, period=60, in_flight=None)


@pytest.mark.parametrize(
    ("models", "defaults", "expected"),
    [
        ({}, _PLUS, _PLUS),
        ({"other": ModelLimits(in_flight=9)}, _PLUS, _PLUS),
        ({"m": ModelLimits()}, _PLUS, _PLUS),
        ({"m": ModelLimits(in_flight=50)}, _PLUS, DefaultLimits(submits=2, period=1, in_flight=50)),
        (
            {"m": ModelLimits(submits_per_second=10)},
            _PLUS,
            DefaultLimits(submits=10, period=1, in_flight=2),
        ),
        (
            {"m": ModelLimits(submits_per_second=0.5, in_flight=4)},
            _MAX,
            DefaultLimits(submits=1, period=2, in_flight=4),
        ),
    ],
)
def test_limits_for_model(models, defaults, expected):
    """Overrides replace only the fields they set; other models keep their defaults."""
    assert expected == Limits(models=models).for_model("m", defaults)


# --- rate windows --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "per", "expected"),
    [
        (2, 1, (2, 1.0)),
        (2, 60, (2, 60.0)),
        (15, 1, (15, 1.0)),
        (15.0, 1, (15, 1.0)),
        (0.5, 1, (1, 2.0)),
        (2.5, 1, (2, 0.8)),
        (1 / 30, 1, (1, 30.0)),
    ],
)
def test_rate_window(count, per, expected):
    """Whole counts keep their window; fractions keep the rate with a whole count."""
    limit, window = rate_window(count, per)
    assert expected == (limit, pytest.approx(window))


@pytest.mark.parametrize(("count", "per"), [(0, 1), (-1, 1), (2, 0), (math.inf, 1)])
def test_rate_window_rejects_nonsense(count, per):
    """A rate must be positive and finite."""
    with pytest.raises(ValueError, match="positive"):
        rate_window(count, per)


@given(rate=st.floats(min_value=1e-3, max_value=1e4))
def test_rate_window_keeps_the_rate(rate):
    """The window admits the same long-run rate as asked, with at least one event."""
    limit, window = rate_window(rate)
    assert limit >= 1
    assert rate == pytest.approx(limit / window)


# --- the sliding window: pure --------------------------------------------------------------------


def test_sliding_window_basics():
    """Two per second: two at once, the third a second after the first."""
    window = SlidingWindow(2, 1.0, clock=lambda: 0.0)
    assert (True, True, False) == tuple(window.try_acquire(0.0) for _ in range(3))
    assert 1.0 == window.next_free(0.2)
    assert window.try_acquire(0.5) is False
    assert window.try_acquire(1.0) is True
    assert 1 == window.used(1.0)  # the window is (now - 1, now]: the events at 0 are out
    assert window.try_acquire(1.0) is True
    assert 2 == window.used(1.5)
    assert "<SlidingWindow 2/2 per 1s>" == repr(window)
    assert 0 == window.used(2.0)


def test_sliding_window_from_rate():
    """from_rate builds the window of rate_window."""
    window = SlidingWindow.from_rate(2, per=60)
    assert (2, 60.0) == (window.limit, window.window)


@pytest.mark.parametrize(("limit", "window"), [(0, 1.0), (1, 0.0), (1, -1.0)])
def test_sliding_window_rejects_nonsense(limit, window):
    """A window needs a positive limit and length."""
    with pytest.raises(ValueError, match=r"limit|window"):
        SlidingWindow(limit, window)


def test_reservation_blocks_later_tries_until_it_passes():
    """A reservation in the future holds back try_acquire until then."""
    window = SlidingWindow(2, 1.0)
    assert window.try_acquire(0.0)
    assert window.try_acquire(0.0)
    assert 1.0 == window.reserve(0.1)
    assert window.try_acquire(0.5) is False
    assert 1.0 == window.next_free(0.5)
    window.cancel_reservation(1.0)
    assert window.try_acquire(1.0)


def test_reservation_after_a_pause():
    """A reservation may be placed after a given time; cancelling it restores the past events."""
    window = SlidingWindow(1, 1.0)
    assert window.try_acquire(0.0)
    assert 5.0 == window.reserve(0.2, after=5.0)
    window.cancel_reservation(5.0)
    # The event at 0 still binds: not before 1.0.
    assert 1.0 == window.next_free(0.5)


def test_cancelling_a_pruned_reservation_is_harmless():
    """A reservation already in the past and pruned can be cancelled."""
    window = SlidingWindow(1, 1.0)
    at = window.reserve(0.0)
    assert window.try_acquire(3.0)
    window.cancel_reservation(at)
    assert 1 == window.used(3.0)


def _admissible(times: list[float], limit: int, window: float) -> bool:
    ordered = sorted(times)
    return all(ordered[i] + window <= ordered[i + limit] for i in range(len(ordered) - limit))


_window_ops = st.lists(
    st.tuples(
        st.sampled_from(["try", "reserve", "cancel", "next"]),
        st.floats(min_value=0.0, max_value=0.7, allow_nan=False),
    ),
    max_size=80,
)


@settings(max_examples=200)
@given(
    limit=st.integers(min_value=1, max_value=5),
    length=st.sampled_from([0.1, 1.0, 2.5, 60.0]),
    ops=_window_ops,
)
def test_sliding_window_never_admits_limit_plus_one(limit, length, ops):
    """Whatever the sequence of tries, reservations and cancels, no window holds limit + 1."""
    window = SlidingWindow(limit, length)
    now = 0.0
    events: list[float] = []
    reserved: list[float] = []
    for op, step in ops:
        now += step * length
        if op == "try":
            free = window.next_free(now)
            admitted = window.try_acquire(now)
            assert (free <= now) == admitted
            if admitted:
                events.append(now)
        elif op == "reserve":
            at = window.reserve(now, after=now + step)
            assert at >= now
            reserved.append(at)
        elif op == "cancel" and reserved:
            window.cancel_reservation(reserved.pop(0))
        else:
            assert window.next_free(now) >= now
        assert _admissible(events + reserved, limit, length)


@settings(max_examples=100)
@given(
    limit=st.integers(min_value=1, max_value=5),
    gaps=st.lists(st.floats(min_value=0.0, max_value=3.0), max_size=40),
)
def test_sliding_window_admits_at_next_free(limit, gaps):
    """Liveness: a try at the time next_free names always succeeds."""
    window = SlidingWindow(limit, 1.0)
    now = 0.0
    for gap in gaps:
        now = window.next_free(now + gap)
        assert window.try_acquire(now)


# --- the sliding window: async -------------------------------------------------------------------


def test_acquire_serves_waiters_fifo_at_the_rate():
    """Six waiters on 2/s are served in arrival order at 0, 0, 1, 1, 2, 2."""
    served: list[tuple[int, float]] = []

    async def main() -> None:
        window = SlidingWindow(2, 1.0)

        async def take(i: int) -> None:
            await window.acquire()
            served.append((i, anyio.current_time()))

        async with anyio.create_task_group() as tg:
            for i in range(6):
                tg.start_soon(take, i)
                await anyio.lowlevel.checkpoint()

    run_virtual(main)
    assert [0, 1, 2, 3, 4, 5] == [i for i, _ in served]
    assert [0.0, 0.0, 1.0, 1.0, 2.0, 2.0] == [pytest.approx(t) for _, t in served]


def test_cancelled_acquire_leaks_no_token():
    """A waiter cancelled while waiting gives its reserved slot back to the next one."""
    served: list[float] = []

    async def main() -> None:
        window = SlidingWindow(1, 1.0)
        await window.acquire()
        with anyio.move_on_after(0.5):
            await window.acquire()  # would be served at 1.0
        assert 0 == window.used(0.5) - 1
        await window.acquire()
        served.append(anyio.current_time())

    run_virtual(main)
    assert [pytest.approx(1.0)] == served


def test_acquire_waits_out_a_pause_that_grows():
    """A pause extended while waiting moves the slot past the new pause end."""
    served: list[float] = []

    async def main() -> None:
        window = SlidingWindow(5, 1.0)
        pause = [2.0]

        async def extend() -> None:
            await anyio.sleep(1.0)
            pause[0] = 3.5

        async with anyio.create_task_group() as tg:
            tg.start_soon(extend)
            await window.acquire(not_before=lambda: pause[0])
            served.append(anyio.current_time())

    run_virtual(main)
    assert [pytest.approx(3.5)] == served


def test_an_urgent_acquire_is_held_by_the_rate_but_not_by_a_pause():
    """Urgent events go during a pause while the rate allows; past it, they wait like others."""
    served: list[float] = []

    async def main() -> None:
        window = SlidingWindow(2, 1.0)
        await anyio.sleep(0.5)
        window.reserve(0.5)  # one event now: room for one more in any second around it
        window.pause_until(10.0)
        later = window.reserve(0.5)  # a waiter behind the pause
        for _ in range(2):
            await window.acquire(urgent=True)
            served.append(anyio.current_time())
        assert 10.0 == later

    run_virtual(main)
    assert [0.5, pytest.approx(10.0)] == served


def test_an_urgent_event_never_overfills_a_window():
    """Whatever the mix of reservations and urgent events, no second holds more than the limit."""
    window = SlidingWindow(3, 1.0)
    times = [window.reserve(0.0) for _ in range(2)]
    window.pause_until(1.5)
    times += [window.reserve(0.2), window.reserve(0.2)]
    for now in (0.3, 0.9, 1.0, 1.2, 1.6, 2.6):
        if window.try_urgent(now):
            times.append(now)
    times.sort()
    assert all(sum(1 for t in times if s <= t < s + 1.0) <= 3 for s in times)
    assert [0.3, 1.6, 2.6] == [t for t in times if t in (0.3, 0.9, 1.0, 1.2, 1.6, 2.6)]


# --- in-flight slots -----------------------------------------------------------------------------


def test_in_flight_limiter_fifo_and_release():
    """Slots go to waiters in arrival order, one per release."""
    order: list[int] = []

    async def main() -> None:
        slots = InFlightLimiter(1)
        await slots.acquire()

        async def take(i: int) -> None:
            await slots.acquire()
            order.append(i)

        async with anyio.create_task_group() as tg:
            for i in range(4):
                tg.start_soon(take, i)
            await anyio.sleep(1)
            assert (1, 4) == (slots.in_flight, slots.waiting)
            assert slots.try_acquire() is False
            for _ in range(4):
                slots.release()
                await anyio.sleep(1)
        assert (1, 0) == (slots.in_flight, slots.waiting)
        assert "<InFlightLimiter 1/1 waiting=0>" == repr(slots)

    run_virtual(main)
    assert [0, 1, 2, 3] == order


def test_in_flight_limiter_newcomer_never_overtakes_a_waiter():
    """While someone waits, try_acquire refuses even when a slot is free right now."""

    async def main() -> None:
        slots = InFlightLimiter(1)
        await slots.acquire()
        async with anyio.create_task_group() as tg:
            tg.start_soon(slots.acquire)
            await anyio.sleep(0.1)
            slots.set_limit(1)
            assert 1 == slots.waiting
            slots.release()  # handed to the waiter at once
            assert slots.try_acquire() is False
        assert 1 == slots.in_flight

    run_virtual(main)


def test_in_flight_limiter_cancelled_waiter_leaks_nothing():
    """A waiter cancelled while queued leaves the queue; slots are unchanged."""

    async def main() -> None:
        slots = InFlightLimiter(1)
        await slots.acquire()
        with anyio.move_on_after(1):
            await slots.acquire()
        assert (1, 0) == (slots.in_flight, slots.waiting)
        slots.release()
        assert 0 == slots.in_flight

    run_virtual(main)


async def test_in_flight_limiter_slot_handed_to_a_cancelled_waiter_passes_on():
    """A waiter hard-cancelled after being handed a slot gives it to the next waiter."""
    slots = InFlightLimiter(1)
    await slots.acquire()
    first = asyncio.ensure_future(slots.acquire())
    second = asyncio.ensure_future(slots.acquire())
    await asyncio.sleep(0)
    slots.release()  # hands the slot to `first`...
    first.cancel()  # ...which is cancelled before it runs
    await asyncio.gather(first, second, return_exceptions=True)
    assert first.cancelled()
    assert second.done()
    assert (1, 0) == (slots.in_flight, slots.waiting)


def test_in_flight_limiter_unlimited_and_errors():
    """None never blocks; releasing more than held is an error; limits must be positive."""

    async def main() -> None:
        cap = make_overall_cap(None)
        for _ in range(100):
            await cap.acquire()
        assert (100, None) == (cap.in_flight, cap.limit)
        assert "<InFlightLimiter 100/unlimited waiting=0>" == repr(cap)

    run_virtual(main)
    with pytest.raises(RuntimeError, match="without a slot"):
        InFlightLimiter(2).release()
    with pytest.raises(ValueError, match="limit"):
        InFlightLimiter(0)
    with pytest.raises(ValueError, match="limit"):
        InFlightLimiter(1).set_limit(0)


def test_raising_the_limit_wakes_waiters():
    """set_limit upwards hands out the new slots to waiters at once."""

    async def main() -> None:
        slots = InFlightLimiter(1)
        await slots.acquire()
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(slots.acquire)
            await anyio.sleep(0.1)
            slots.set_limit(3)
            assert (3, 1) == (slots.in_flight, slots.waiting)
            slots.set_limit(None)
        assert 4 == slots.in_flight

    run_virtual(main)


# --- submit lanes --------------------------------------------------------------------------------


def _lane(**kwargs: Any) -> SubmitLane:
    kwargs.setdefault("submits_per_second", 2)
    kwargs.setdefault("in_flight", 4)
    kwargs.setdefault("clock", lambda: 0.0)
    kwargs.setdefault("rng", random.Random(1))
    return SubmitLane(**kwargs)


def test_lane_throttle_with_a_full_rate_window_keeps_the_limit():
    """A 429 right after a full window of submissions is taken as a rate throttle: pause only."""
    now = [0.0]
    lane = _lane(in_flight=10, submits_per_second=2, clock=lambda: now[0])

    async def main() -> None:
        for _ in range(2):  # the whole window's worth
            assert lane.try_acquire_slot()
            await lane.acquire_submit()

    run_virtual(main)
    until = lane.on_throttled(1.0)
    assert 10 == lane.limit
    assert until >= 1.0
    now[0] = 5.0  # later, with room in the window: now it must be the in-flight cap
    lane.on_throttled(None)
    assert 1 == lane.limit  # 2 held, the throttled one included


def test_lane_burst_of_throttles_is_one_episode():
    """429s to creates sent together cut the limit once and escalate the pause once."""
    now = [0.0]
    lane = _lane(in_flight=50, clock=lambda: now[0], jitter=0.0, backoff=1.0)
    for _ in range(30):
        assert lane.try_acquire_slot()
    first = lane.on_throttled(None, accepted=20)
    for _ in range(9):  # the rest of the burst, answered while the lane is paused
        lane.release_slot()
        assert first == lane.on_throttled(None, accepted=20)
    assert 20 == lane.limit  # the service's cap, known from the tasks it holds
    assert 1.0 == first  # the first backoff step, not 2**9 of them


def test_lane_rate_suspect_throttle_then_another_episode_is_the_cap():
    """A window-full 429 pauses only; a second episode before clean successes steps down."""
    now = [0.0]
    lane = _lane(in_flight=50, submits_per_second=2, clock=lambda: now[0], jitter=0.0)

    async def fill() -> None:
        for _ in range(2):
            await lane.acquire_submit()

    run_virtual(fill)
    lane.on_throttled(0.5, accepted=7)
    assert 50 == lane.limit  # taken for the rate
    now[0] = 2.0  # after the pause, the same again: it was the cap
    run_virtual(fill)
    lane.on_throttled(0.5, accepted=7)
    assert 7 == lane.limit


def test_lane_throttle_steps_down_to_accepted_count():
    """A throttle with 4 slots held (the rejected create's included) sets the limit to 3."""
    lane = _lane(in_flight=10)
    for _ in range(4):
        assert lane.try_acquire_slot()
    lane.on_throttled(None)
    assert (3, 10, 4) == (lane.limit, lane.configured, lane.in_flight)


def test_lane_burst_of_throttles_lowers_once():
    """Several throttles from one burst, seeing the same count, lower the limit only once."""
    lane = _lane(in_flight=10)
    for _ in range(6):
        lane.try_acquire_slot()
    for _ in range(6):
        lane.on_throttled(None)
    assert 5 == lane.limit


def test_lane_grows_back_additively():
    """After `limit` successes in a row the limit grows by one, up to the configured one."""
    lane = _lane(in_flight=3)
    lane.try_acquire_slot()
    lane.on_throttled(0.0)
    assert 1 == lane.limit
    lane.on_success()
    assert 2 == lane.limit
    lane.on_success()
    assert 2 == lane.limit
    lane.on_success()
    assert 3 == lane.limit
    for _ in range(10):
        lane.on_success()
    assert 3 == lane.limit


def test_lane_throttle_resets_the_success_run():
    """A throttle in the middle of a run of successes starts the count again."""
    lane = _lane(in_flight=8)
    for _ in range(4):
        lane.try_acquire_slot()
    lane.on_throttled(None)  # limit 3
    lane.on_success()
    lane.on_success()
    lane.on_throttled(None)  # held 4: stays 3, run reset
    lane.on_success()
    lane.on_success()
    assert 3 == lane.limit
    lane.on_success()
    assert 4 == lane.limit


def test_unlimited_lane_adapts_after_a_throttle():
    """A lane without a configured limit gets one at the first throttle, and grows from it."""
    lane = _lane(in_flight=None)
    for _ in range(5):
        assert lane.try_acquire_slot()
    lane.on_success()
    assert lane.limit is None
    lane.on_throttled(None)
    assert (4, None) == (lane.limit, lane.configured)
    for _ in range(4):
        lane.on_success()
    assert 5 == lane.limit


_lane_ops = st.lists(st.sampled_from(["take", "release", "throttle", "success"]), max_size=120)


@settings(max_examples=200)
@given(configured=st.integers(min_value=1, max_value=12), ops=_lane_ops)
def test_lane_aimd_invariants(configured, ops):
    """The limit stays in [1, configured], steps down once per throttle episode, up on successes."""
    now = [0.0]
    lane = _lane(in_flight=configured, clock=lambda: now[0])
    for op in ops:
        now[0] += 0.5  # some throttles start an episode, others fall inside the last one's pause
        before = lane.limit
        assert before is not None
        if op == "take":
            room = lane.in_flight < before
            assert room == lane.try_acquire_slot()
        elif op == "release" and lane.in_flight:
            lane.release_slot()
        elif op == "throttle":
            held = lane.in_flight
            new_episode = now[0] >= lane.paused_until
            lane.on_throttled(None)
            # No submission went through the rate window here: never taken for a rate throttle.
            assert (max(1, min(before, held - 1)) if new_episode else before) == lane.limit
        elif op == "success":
            lane.on_success()
            assert lane.limit in (before, before + 1)
        if op != "success":
            assert lane.limit <= before
        assert lane.limit is not None
        assert 1 <= lane.limit <= configured


def test_lane_pause_honours_retry_after_as_a_floor():
    """The pause is max(Retry-After, backoff) plus up to 10% jitter."""
    lane = _lane(clock=lambda: 100.0, backoff=1.0)
    until = lane.on_throttled(7.0)
    assert 107.0 <= until <= 107.7
    assert until == lane.paused_until
    lane.pause_until(50.0)  # never shortens
    assert until == lane.paused_until


def test_lane_backoff_doubles_per_throttle_in_a_row_and_is_capped():
    """Without Retry-After: 1, 2, 4, ... seconds, capped; a success resets it."""
    now = [0.0]
    lane = _lane(clock=lambda: now[0], jitter=0.0, backoff=1.0, max_backoff=5.0)
    pauses = []
    for _ in range(5):
        pauses.append(lane.on_throttled(None) - now[0])
        now[0] += 100.0
    assert [1.0, 2.0, 4.0, 5.0, 5.0] == pauses
    lane.on_success()
    assert 1.0 == lane.on_throttled(None) - now[0]


def test_lane_scale_compresses_durations():
    """scale multiplies the window and the backoffs."""
    lane = _lane(clock=lambda: 0.0, jitter=0.0, scale=0.001)
    assert pytest.approx(0.001) == lane.on_throttled(None)
    assert "submits=2/0.00105s" in repr(lane)


def test_lane_fractional_rate():
    """A fractional rate keeps its whole part per stretched window: 2.5/s is 2 per 0.8 s."""
    assert "submits=2/0.84s" in repr(_lane(submits_per_second=2.5))


def test_lane_from_limits_two_per_minute():
    """The max models' 2 per minute is a burst of two, then a minute."""
    lane = SubmitLane.from_limits(DefaultLimits(submits=2, period=60, in_flight=None))
    assert (None, None) == (lane.limit, lane.configured)
    assert "submits=2/63s" in repr(lane)
    assert "in_flight=0/unlimited" in repr(lane)


def test_lane_rejects_nonsense():
    """Rates and backoffs must be positive."""
    with pytest.raises(ValueError, match="submits_per_second"):
        _lane(submits_per_second=0)
    with pytest.raises(ValueError, match="backoff"):
        _lane(backoff=-1)


def test_lane_submissions_wait_for_window_and_pause_fifo():
    """Submissions go at the lane's rate, in order, and none during a throttling pause."""
    served: list[tuple[int, float]] = []

    async def main() -> None:
        lane = SubmitLane(
            submits_per_second=2, in_flight=2, rng=random.Random(3), jitter=0.0, backoff=1.0
        )
        assert lane.paused_until == -math.inf

        async def submit(i: int) -> None:
            await lane.acquire_submit()
            served.append((i, anyio.current_time()))

        async with anyio.create_task_group() as tg:
            for i in range(6):
                tg.start_soon(submit, i)
                await anyio.lowlevel.checkpoint()
            await anyio.sleep(0.5)
            lane.on_throttled(3.0)  # at 0.5: pause until 3.5
        assert 6 == lane.submitted

    run_virtual(main)
    assert [0, 1, 2, 3, 4, 5] == [i for i, _ in served]
    times = [round(t, 6) for _, t in served]
    # After the pause, windows of 1 s plus the 5% RATE_MARGIN.
    assert [0.0, 0.0, 3.5, 3.5, 4.55, 4.55] == times


def test_lane_slots_across_coroutines():
    """A slot taken in one task is released in another; waiters get it in order."""
    order: list[int] = []

    async def main() -> None:
        lane = SubmitLane(submits_per_second=100, in_flight=1)
        await lane.acquire_slot()

        async def create(i: int) -> None:
            await lane.acquire_slot()
            order.append(i)

        async with anyio.create_task_group() as tg:
            for i in range(3):
                tg.start_soon(create, i)
            await anyio.sleep(1)
            assert 3 == lane.waiting
            for _ in range(3):
                lane.release_slot()  # the task "finished", seen by the poller
                await anyio.sleep(1)
        lane.release_slot()
        assert 0 == lane.in_flight
        with pytest.raises(RuntimeError):
            lane.release_slot()

    run_virtual(main)
    assert [0, 1, 2] == order


def test_lane_lowered_limit_holds_back_waiters_until_growth():
    """After a throttle lowers the limit, waiters wait for releases or for growth."""

    async def main() -> None:
        lane = SubmitLane(submits_per_second=100, in_flight=3, rng=random.Random(0))
        for _ in range(3):
            await lane.acquire_slot()
        lane.on_throttled(None)  # limit 2, 3 held
        lane.release_slot()  # the throttled one gives its slot back: 2 held
        async with anyio.create_task_group() as tg:
            tg.start_soon(lane.acquire_slot)
            await anyio.sleep(0.1)
            assert (2, 1) == (lane.in_flight, lane.waiting)
            lane.on_success()
            lane.on_success()  # limit 3: the waiter gets in
        assert (3, 3) == (lane.in_flight, lane.limit)

    run_virtual(main)


@settings(max_examples=50, deadline=None)
@given(
    limit=st.integers(1, 4),
    waiters=st.lists(st.none() | st.floats(0.1, 5.0), min_size=1, max_size=12),
    hold=st.floats(0.1, 2.0),
)
def test_in_flight_limiter_random_cancellations_leak_nothing(limit, waiters, hold):
    """Waiters that give up at random times never leak a slot; the others are served in order."""
    served: list[int] = []

    async def main() -> InFlightLimiter:
        slots = InFlightLimiter(limit)

        async def user(i: int, patience: float | None) -> None:
            with anyio.move_on_after(math.inf if patience is None else patience):
                await slots.acquire()
                served.append(i)
                try:
                    await anyio.sleep(hold)
                finally:
                    slots.release()

        async with anyio.create_task_group() as tg:
            for i, patience in enumerate(waiters):
                tg.start_soon(user, i, patience)
                await anyio.lowlevel.checkpoint()
        return slots

    slots = run_virtual(main)
    assert (0, 0) == (slots.in_flight, slots.waiting)
    assert served == sorted(served)
    patient = [i for i, patience in enumerate(waiters) if patience is None]
    assert set(patient) <= set(served)
