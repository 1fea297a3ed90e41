"""The coordination seam: window shapes, and lanes reaching shared windows and slots through it."""

from __future__ import annotations

import random

import anyio
import pytest

from aioqwenimage._coordination import QUERY_MARGIN, RATE_MARGIN, WindowSpec
from aioqwenimage._lane import SubmitLane
from aioqwenimage._limits import LocalCoordinator
from tests.virtual_time import run_virtual


@pytest.mark.parametrize(
    ("count", "per", "scale", "expected"),
    [
        (2, 1.0, 1.0, WindowSpec(2, 1.05)),
        (2, 60.0, 1.0, WindowSpec(2, 63.0)),
        (0.5, 1.0, 0.01, WindowSpec(1, 0.021)),
        (15, 1.0, 0.001, WindowSpec(15, 0.00105)),
    ],
)
def test_window_spec_from_rate_scales_once_and_adds_the_margin(count, per, scale, expected):
    """A rate, a period and a time scale give one window: whole counts, scaled, margined."""
    spec = WindowSpec.from_rate(count, per, scale=scale)
    assert (expected.limit, pytest.approx(expected.length)) == (spec.limit, spec.length)


def test_window_spec_says_how_much_of_its_length_is_margin():
    """The margin in seconds, scaled with the window: the shared log counts a grace within it."""
    assert pytest.approx(0.05) == WindowSpec.from_rate(20).margin
    assert pytest.approx(0.0003) == WindowSpec.from_rate(20, scale=0.01, margin=0.03).margin


def test_window_spec_without_margin_is_exact():
    """margin=0 gives the exact window (the emulator's side)."""
    assert WindowSpec(2, 60.0) == WindowSpec.from_rate(2, 60, margin=0)
    assert (0.05, 0.03) == (RATE_MARGIN, QUERY_MARGIN)


@pytest.mark.parametrize(("count", "scale", "word"), [(0, 1.0, "rate"), (1, 0.0, "scale")])
def test_window_spec_refuses_nonsense(count, scale, word):
    """A rate or scale that is not positive and finite fails, naming the culprit."""
    with pytest.raises(ValueError, match=word):
        WindowSpec.from_rate(count, scale=scale)


def _lanes(now: list[float]) -> tuple[SubmitLane, SubmitLane]:
    coordinator = LocalCoordinator(lambda: now[0])
    return tuple(  # type: ignore[return-value]
        SubmitLane(
            submits_per_second=1,
            in_flight=2,
            clock=lambda: now[0],
            rng=random.Random(1),
            jitter=0.0,
            name="submit:m",
            coordinator=coordinator,
        )
        for _ in range(2)
    )


def test_lanes_of_one_name_share_their_slots():
    """Two lanes under one name (two processes, one account) hold slots from one pool."""
    a, b = _lanes([0.0])
    assert a.try_acquire_slot()
    assert b.try_acquire_slot()
    assert a.try_acquire_slot() is False  # the other "process" holds the second slot
    b.release_slot()
    assert a.try_acquire_slot()


def test_tokens_spent_elsewhere_delay_a_lane():
    """A token of the shared window spent by another lane makes this one wait a window."""
    served: list[float] = []

    async def main() -> None:
        now = [0.0]
        a, b = _lanes(now)
        a._window = b._window = LocalCoordinator().window("submit:m", WindowSpec(1, 1.0))
        await b.acquire_submit()
        await a.acquire_submit()
        served.append(anyio.current_time())

    run_virtual(main)
    assert [pytest.approx(1.0)] == served


def test_a_throttle_reported_by_one_lane_pauses_the_other():
    """on_throttled pauses the shared window: every lane of the name waits."""
    now = [0.0]
    a, b = _lanes(now)
    until = a.on_throttled(2.0)
    assert until == b.paused_until == pytest.approx(2.0)


def test_lane_lease_release_is_idempotent_and_counts_the_task_once():
    """Releasing a lane's lease twice frees one slot and forgets one accepted task."""

    async def main() -> None:
        lane = SubmitLane(submits_per_second=2, in_flight=3, rng=random.Random(1))
        lease = await lane.acquire_slot()
        other = await lane.acquire_slot()
        lane.on_success(task=True)
        lane.on_success(task=True)
        lane.release_slot(lease, task=True)
        lane.release_slot(lease, task=True)
        assert (1, 1, False) == (lane.in_flight, lane.accepted, other.released)
        lane.release_slot(task=True)  # by count: the remaining one
        assert (0, 0, True) == (lane.in_flight, lane.accepted, other.released)
        with pytest.raises(RuntimeError, match="without a slot"):
            lane.release_slot()

    run_virtual(main)
