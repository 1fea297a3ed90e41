"""
Benchmark B5's runner, reduced: 2 client processes share 60 tasks, through a real redis-server
and without one, against the emulator in its own process (``python -m benchmarks.multiprocess
--smoke`` runs the same). Its numbers mean nothing; that every run finishes, is measured from the
emulator's counters, and renders, is what is checked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from benchmarks._report import evaluate_targets, multiprocess_table, render_markdown
from benchmarks.multiprocess import (
    coordinator_summary,
    rate_step,
    redis_summary,
    run_b5,
    smoke_problems,
    workload_of,
)

if TYPE_CHECKING:
    from tests.redis_server import RedisServer


@pytest.fixture(scope="module")
def smoke(redis_server: RedisServer) -> dict:
    """One smoke run of both modes (about 25 s of wall time), shared by the checks below."""
    if not redis_server.running:
        redis_server.start()
    return run_b5(
        "B5-smoke",
        configs=[(2, True), (2, False)],
        out_dir=None,
        redis_url=redis_server.url,
        log=lambda _: None,
    )


@pytest.mark.redis
def test_every_generation_finishes_once_in_both_modes(smoke):
    """Both runs finish all 60 generations, none lost, none created twice, within the deadline."""
    runs = smoke["runs"]
    assert ["2p-coordinated", "2p-uncoordinated"] == sorted(runs)
    assert [] == smoke_problems(smoke)
    for entry in runs.values():
        assert (60, 60, 0, 0) == (
            entry["generations"],
            entry["succeeded"],
            entry["lost"],
            entry["duplicates"],
        )
        assert [30, 30] == [p["succeeded"] for p in entry["per_process"]]


@pytest.mark.redis
def test_runs_are_measured_from_the_emulator_and_the_processes(smoke):
    """Peaks come from the emulator; each process reports its CPU; only the coordinated run has
    a coordinator and Redis samples."""
    coordinated, alone = smoke["runs"]["2p-coordinated"], smoke["runs"]["2p-uncoordinated"]
    for entry in (coordinated, alone):
        assert 1 <= entry["peak_task_calls_per_second"]
        assert 1 <= entry["peak_in_flight"] <= 20  # the emulator refuses creates over its cap
        assert entry["makespan"] > 0 and entry["client_cpu_seconds"] > 0
        assert all(p["cpu_seconds"] > 0 for p in entry["per_process"])
    assert all(p["coordinator"] is not None for p in coordinated["per_process"])
    assert all(p["coordinator"] is None for p in alone["per_process"])
    assert coordinated["redis"]["samples"] > 0 and "redis" not in alone
    # Read at each process's end: the lead passes on when its holder leaves first.
    assert any(p["coordinator"]["leading"] for p in coordinated["per_process"])


@pytest.mark.redis
def test_the_runs_render_as_a_table_and_targets(smoke):
    """The page's B5 table has a column per run; B5's targets need the 4-process run."""
    table = multiprocess_table(smoke)
    assert table.splitlines()[0].startswith("| metric | 2 coordinated | 2 uncoordinated |")
    page = render_markdown({"B5": smoke}, {})
    assert "## B5-smoke: multi-process smoke test" in page
    b5 = [t for t in evaluate_targets({"B5": smoke}) if t["target"].startswith("B5:")]
    assert 5 == len(b5)
    assert all(t["met"] is None for t in b5)


def test_rate_bins_are_whole_simulated_seconds_and_timeline_buckets():
    """x0.25: 2 simulated seconds (0.5 s); x1: 1 s; x0.1: 0.1 s; x0.05: 0.1 s (2 seconds)."""
    assert pytest.approx([0.5, 1.0, 0.1, 0.1]) == [rate_step(s) for s in (0.25, 1.0, 0.1, 0.05)]


def test_workload_scales_without_changing_the_tasks():
    """A run at another time scale meets the same prompts, durations scaled."""
    base, real = workload_of("B5"), workload_of("B5", 1.0)
    group = base.async_group
    assert (2000, base.prompts(group)) == (group.count, real.prompts(real.async_group))
    assert (
        pytest.approx([d / 0.25 for d in base.durations(group)[:5]])
        == real.durations(real.async_group)[:5]
    )


def test_profile_summaries():
    """Leases over the cap, the lowest shared limit and pauses; Redis lost and offset jitter."""
    rows = [
        [0.0, {"leases:submit:m": 150}],
        [0.1, {"leases:submit:m": 230, "limit:submit:m": 100.0, "pause:queries": 5.0}],
        [0.2, {}],
    ]
    assert {
        "samples": 3,
        "max_leases": 230,
        "over_cap_share": 0.5,
        "min_shared_limit": 100.0,
        "paused_share": pytest.approx(1 / 3),
    } == redis_summary(rows, 200)
    found = {
        "leading": True,
        "routed": 7,
        "given_back": {"queries": 3},
        "events": [[1.0, "coordination_lost", {}], [2.0, "coordination_restored", {}]],
        "samples": [
            [0.0, False, 10.000, 4, True, {}],
            [0.5, True, 10.010, 4, True, {}],
            [1.0, False, 10.000, 4, True, {}],
        ],
    }
    summary = coordinator_summary(found)
    assert (1, pytest.approx(1 / 3), pytest.approx(10.0)) == (
        summary["coordination_lost"],
        summary["degraded_share"],
        summary["offset_jitter_ms_max"],
    )
    assert coordinator_summary(None) is None
