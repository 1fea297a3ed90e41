# Copyright (c) 2026 aioqwenimage contributors. Licensed under the MIT License.

"""What the poll schedule learns from the service's timestamps is checked and bounded."""

from __future__ import annotations

import anyio
import pytest

import aioqwenimage as q
from aioqwenimage._scheduler import DurationModel, PollPolicy
from aioqwenimage.testing import FakeDashScope, Fault

YEAR = 365 * 86_400.0


def test_year_long_samples_are_rejected_against_the_local_clock():
    """A reported duration far beyond the time the client saw pass is not learned."""
    model = DurationModel()
    for _ in range(3):
        assert not model.observe("m", YEAR, elapsed=12.0)
    assert 0 == model.count("m")
    assert 5.0 == model.first_delay("m")


def test_plausible_samples_are_kept():
    """A duration within the client's own elapsed time (plus the margin) is learned."""
    model = DurationModel()
    for seconds in (10.0, 12.0, 14.0):
        assert model.observe("m", seconds, elapsed=seconds)
    assert model.observe("m", 13.0, elapsed=10.0)  # 13 <= 10 * 1.25 + 1: create latency
    assert not model.observe("m", 14.0, elapsed=10.0)
    assert 4 == model.count("m")


def test_learned_first_poll_is_bounded():
    """Even samples nobody can check (no elapsed time) cannot push the first poll past the cap."""
    model = DurationModel()
    for _ in range(3):
        model.observe("m", YEAR)
    assert 120.0 == model.first_delay("m")


def test_first_poll_bound_is_configurable_and_scaled():
    """max_first_poll is a PollPolicy setting, compressed by scaled() like the others."""
    policy = PollPolicy(max_first_poll=30.0)
    model = DurationModel(policy)
    for _ in range(3):
        model.observe("m", 600.0)
    assert 30.0 == model.first_delay("m")
    assert 0.03 == pytest.approx(policy.scaled(0.001).max_first_poll)


def test_a_first_poll_default_above_the_bound_is_the_bound():
    """A policy whose unlearned first poll is later than max_first_poll keeps its own default."""
    model = DurationModel(PollPolicy(first_poll=300.0))
    for _ in range(3):
        model.observe("m", 1000.0)
    assert 300.0 == model.first_delay("m")


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_max_first_poll_is_validated(bad):
    """A bound that is not a positive finite number is refused, naming the field."""
    with pytest.raises(ValueError, match="max_first_poll"):
        PollPolicy(max_first_poll=bad)


async def test_a_year_long_report_does_not_delay_later_tasks():
    """Three tasks whose answers claim a year-long run; the fourth is still polled in time."""
    async with FakeDashScope(
        time_scale=0.01, seed=2, durations={"qwen-image-plus": (5.0, 6.0)}
    ) as fake:
        client = q.Client(
            api_key=fake.api_key,
            base_url=fake.base_url,
            time_scale=0.01,
            limits=q.Limits(models={"qwen-image-plus": q.ModelLimits(in_flight=10)}),
        )
        async with client:
            fake.faults.add(Fault(kind="skewed_times", endpoints="query"))
            for index in range(3):
                await client.generate(f"lied about {index}", model="qwen-image-plus")
            fake.faults.clear()
            with anyio.fail_after(5):
                # 60 simulated seconds: 0.6 s of real time, ten times the task's duration.
                result = await client.generate("honest", model="qwen-image-plus", timeout=0.6)
    assert "honest" == result.prompt
