"""
Several processes of one account, each with its own client, against one emulator process.

Uncoordinated, each client keeps the documented limits on its own, and together they exceed
them: the service throttles. With a shared `aioqwenimage.redis.RedisCoordinator` they keep them
together: no create throttled, a model's in-flight cap and the 20 task calls per second held
across processes. Either way every generation completes and nothing is created twice.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.processes import WorkerReport, run_clients, running_emulator, throttled_creates

pytestmark = pytest.mark.processes

SCALE = 0.01
"""One simulated second lasts 10 ms: 12 qwen-image-plus tasks through its 2 slots take ~1.5 s."""
PROCESSES = 4
GENERATIONS = 3
MODEL = "qwen-image-plus"
CAP = 2
"""qwen-image-plus: 2 async tasks in flight, 2 creates per second (dashscope-api.md §7)."""
TASK_CALLS_PER_SECOND = 20


def assert_each_generation_ran_once(reports: list[WorkerReport], stats: dict[str, Any]) -> None:
    """Every generation succeeded, from exactly one task, and no task was created in vain."""
    outcomes = [outcome for report in reports for outcome in report.outcomes]
    created = [task_id for report in reports for task_id in report.task_ids]
    tasks = stats["tasks"]

    assert [PROCESSES * GENERATIONS] * 2 == [len(outcomes), len(tasks)]
    assert {"SUCCEEDED"} == {outcome["status"] for outcome in outcomes}
    assert {MODEL: PROCESSES * GENERATIONS} == stats["tasks_created"]
    assert sorted(created) == sorted({task["task_id"] for task in tasks})
    assert sorted(created) == sorted(outcome["task_id"] for outcome in outcomes)
    assert sorted(o["prompt"] for o in outcomes) == sorted(task["prompt"] for task in tasks)
    assert {"SUCCEEDED"} == {task["status"] for task in tasks}


def test_uncoordinated_processes_exceed_the_accounts_limits_together():
    """The control: four clients, each within the documented limits, are throttled together."""
    with running_emulator(time_scale=SCALE) as emulator:
        reports = run_clients(emulator, processes=PROCESSES, generations=GENERATIONS)
        stats = emulator.stats()

    assert_each_generation_ran_once(reports, stats)
    assert throttled_creates(stats) > 0
    assert stats["peak_in_flight_by_model"][MODEL] > CAP  # PENDING behind the emulator's cap
    # Every 429 the emulator sent reached one of the clients, and each counted it.
    assert stats["throttled"] == sum(report.throttled for report in reports)
    assert not any(report.coordinated for report in reports)


def test_coordinated_processes_keep_the_accounts_limits_together(redis_url):
    """Through one Redis, the same four clients are never throttled and never exceed a cap."""
    with running_emulator(time_scale=SCALE) as emulator:
        reports = run_clients(
            emulator,
            processes=PROCESSES,
            generations=GENERATIONS,
            coordinator=redis_url,
            namespace="many-processes",
        )
        stats = emulator.stats()

    assert_each_generation_ran_once(reports, stats)
    assert all(report.coordinated for report in reports)
    assert 0 == throttled_creates(stats)
    assert stats["peak_in_flight_by_model"][MODEL] <= CAP
    assert stats["peak_task_calls_per_second"] <= TASK_CALLS_PER_SECOND


def test_a_worker_that_cannot_start_fails_the_run_with_its_stderr():
    """The harness reports a broken worker at once, with why, instead of waiting for it."""
    with (
        running_emulator(time_scale=SCALE) as emulator,
        pytest.raises(AssertionError, match=r"(?s)worker 0 never got ready.*--bogus"),
    ):
        run_clients(emulator, processes=1, generations=1, extra=["--bogus"])
