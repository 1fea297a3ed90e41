"""The emulator's window adapter: the server's interface over the client's sliding window."""

from __future__ import annotations

import pytest

from aioqwenimage.testing._ratelimit import SlidingWindow


def test_a_wall_clock_stepping_back_counts_as_no_time_passing():
    """A step back of the clock neither frees a full window nor breaks its count."""
    window = SlidingWindow(1, 1.0)
    assert 0.0 == window.acquire(100.0)
    assert pytest.approx(1.0) == window.acquire(99.0)  # as if still at 100
    assert 0.0 == window.acquire(101.0)


def test_a_fractional_limit_admits_up_to_the_next_whole_number():
    """A limit of 2.5 admits three per period, as the emulator's own window always did."""
    window = SlidingWindow(2.5, 1.0)
    assert [0.0, 0.0, 0.0] == [window.acquire(0.0) for _ in range(3)]
    assert window.acquire(0.5) > 0
    assert "<SlidingWindow 3/2.5 per 1s>" == repr(window)
