"""
Several processes of one account, each with its own client, against one emulator process.

Uncoordinated, each client keeps the documented limits on its own, and together they exceed
them: the service throttles. With a shared `aioqwenimage.redis.RedisCoordinator` they keep them
together: no create throttled, a model's in-flight cap and the 20 task calls per second held
across processes. Either way every generation completes and nothing is created twice. A process
killed mid-run gives its slots back within its lease; a Redis that goes away mid-run leaves the
processes on local limits until it is back.
"""

from __future__ import annotations

import socket
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest
from redis.client import Redis

from tests.processes import (
    WorkerReport,
    run_clients,
    running_emulator,
    started_clients,
    throttled_creates,
)

if TYPE_CHECKING:
    from tests.redis_server import RedisServer

pytestmark = pytest.mark.processes

SCALE = 0.01
"""One simulated second lasts 10 ms: 12 qwen-image-plus tasks through its 2 slots take ~1.5 s."""
PROCESSES = 4
GENERATIONS = 3
MODEL = "qwen-image-plus"
CAP = 2
"""qwen-image-plus: 2 async tasks in flight, 2 creates per second (dashscope-api.md §7)."""
TASK_CALLS_PER_SECOND = 20
LEASE_TTL = 1.0
"""Real seconds a slot outlives its holder's last heartbeat (the default, 15 s, is too long to
wait for here); longer than any qwen-image-plus task at `SCALE` (18-30 simulated s)."""
MARGIN = 1.0
"""Real seconds, on a loaded machine, for the survivors to notice a slot came back and use it."""


def assert_each_generation_ran_once(
    reports: list[WorkerReport], stats: dict[str, Any], generations: int = GENERATIONS
) -> None:
    """Every generation succeeded, from exactly one task, and no task was created in vain."""
    outcomes = [outcome for report in reports for outcome in report.outcomes]
    created = [task_id for report in reports for task_id in report.task_ids]
    tasks = stats["tasks"]

    assert [PROCESSES * generations] * 2 == [len(outcomes), len(tasks)]
    assert {"SUCCEEDED"} == {outcome["status"] for outcome in outcomes}
    assert {MODEL: PROCESSES * generations} == stats["tasks_created"]
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


# --- a process killed, Redis gone: the others still finish ----------------------------------------

MID_RUN_GENERATIONS = 5
"""Per worker: 15-20 tasks through 2 slots take ~2 s, longer than a lease or an outage."""
VICTIM = 0
KILLED_RUN_GENERATIONS = 2 * MID_RUN_GENERATIONS
"""
Per worker, in the killed run: the victim takes its first slot when its turn comes among four,
and the survivors must still have work when its leases expire (with 5 each, 2 runs in 13 found
the victim's first task so late that they had only two left).
"""


def pool_key(namespace: str) -> str:
    """The Redis key of `MODEL`'s in-flight leases (`aioqwenimage._redis_scripts.Keys.pool`)."""
    return f"aioqwenimage:{{{namespace}}}:pool:submit:{MODEL}"


def server_time(client: Redis) -> float:
    """Redis's clock (``TIME``), which its scripts score leases by."""
    seconds, microseconds = client.time()
    return seconds + microseconds / 1e6


def one_task_per_prompt(stats: dict[str, Any]) -> Counter[int]:
    """How many prompts the emulator saw created once, twice...: ``{1: n}`` when none twice."""
    return Counter(Counter(task["prompt"] for task in stats["tasks"]).values())


def in_flight_at_creates(tasks: list[dict[str, Any]], since: float) -> list[tuple[float, int]]:
    """Each create of `tasks` at or after `since`, with how many of them were live then."""
    return [
        (created, sum(t["created"] <= created < (t["ended"] or float("inf")) for t in tasks))
        for created in sorted(task["created"] for task in tasks if task["created"] >= since)
    ]


def test_a_killed_process_gives_its_slots_back_within_its_lease(redis_url: str) -> None:
    """
    SIGKILL one of four coordinated processes while it holds a slot: its leases in Redis expire
    within `LEASE_TTL` of its last heartbeat, the survivors take its slots then, and they finish
    every generation, each from one task, with no create throttled.
    """
    namespace = "killed"
    pool = pool_key(namespace)
    with (
        Redis.from_url(redis_url, decode_responses=True) as client,
        running_emulator(time_scale=SCALE) as emulator,
        started_clients(
            emulator,
            processes=PROCESSES,
            generations=KILLED_RUN_GENERATIONS,
            coordinator=redis_url,
            namespace=namespace,
            extra=["--lease-ttl", str(LEASE_TTL), "--echo", "submitted"],
        ) as run,
    ):
        run.wait_for("submitted", workers=[VICTIM])  # it holds that task's slot
        victim = f"{socket.gethostname()}:{run.pid(VICTIM)}:"
        killed_at = run.kill(VICTIM)
        now = server_time(client)
        held = {
            lease: expires
            for lease, expires in client.zrange(pool, 0, -1, withscores=True)
            if lease.startswith(victim) and expires > now
        }
        survivors = run.collect()
        stats = emulator.stats()
        still = [lease for lease in client.zrange(pool, 0, -1) if lease.startswith(victim)]
        # Whatever is held past one lease from the kill: the survivors may finish before the
        # victim's last lease runs out, so "live when they finished" is not the question.
        outliving = client.zrangebyscore(pool, f"({now + LEASE_TTL}", "+inf")

    # The victim held a slot when it died, each lease due to expire within one lease of then:
    # a heartbeat never pushes it further, and nobody renews it now.
    assert 1 <= len(held) <= CAP
    assert max(held.values()) <= now + LEASE_TTL
    assert not any(lease.startswith(victim) for lease in outliving), still
    # The survivors had more slots than the victim left them within the lease (and a margin):
    # their tasks are live at the service while they hold the slots, and longer.
    ids = {task_id for report in survivors for task_id in report.task_ids}
    theirs = [task for task in stats["tasks"] if task["task_id"] in ids]
    creates = in_flight_at_creates(theirs, since=killed_at)
    back = next((at for at, live in creates if live > CAP - len(held)), None)
    assert back is not None, creates
    assert back - killed_at <= LEASE_TTL + MARGIN, (back - killed_at, held, now)

    # Every survivor's generation succeeded, from one task; the victim's prompts at most once.
    outcomes = [outcome for report in survivors for outcome in report.outcomes]
    assert [w for w in range(PROCESSES) if w != VICTIM] == [r.worker for r in survivors]
    assert (PROCESSES - 1) * KILLED_RUN_GENERATIONS == len(outcomes)
    assert {"SUCCEEDED"} == {outcome["status"] for outcome in outcomes}
    assert {1} == set(one_task_per_prompt(stats))
    created = sorted(task_id for report in survivors for task_id in report.task_ids)
    assert created == sorted(outcome["task_id"] for outcome in outcomes)
    survivor_tasks = [task for task in stats["tasks"] if f" w{VICTIM} " not in task["prompt"]]
    assert created == sorted(task["task_id"] for task in survivor_tasks)
    assert 0 == throttled_creates(stats)
    assert stats["peak_in_flight_by_model"][MODEL] <= CAP


def test_processes_run_on_local_limits_while_redis_is_away_and_share_again_after(
    redis_server: RedisServer, redis_url: str
) -> None:
    """
    Stop Redis while four coordinated processes generate: each reports ``coordination_lost``
    and goes on with its share of the limits; start it again: each reports
    ``coordination_restored``, and the cap holds again. Every generation succeeds, each from
    one task. A create or two may be throttled: on local limits each of the four keeps at least
    one slot and one create per second (its share, 2 // 4, rounded up to 1), together more than
    the account's 2.
    """
    watched = ["--echo", "submitted", "--echo", "coordination_lost"]
    watched += ["--echo", "coordination_restored"]
    with (
        running_emulator(time_scale=SCALE) as emulator,
        started_clients(
            emulator,
            processes=PROCESSES,
            generations=MID_RUN_GENERATIONS,
            coordinator=redis_url,
            namespace="outage",
            extra=["--lease-ttl", str(LEASE_TTL), *watched],
        ) as run,
    ):
        run.wait_for("submitted")
        try:
            redis_server.stop()
            for worker in range(PROCESSES):
                run.wait_for("coordination_lost", workers=[worker])
            # Without Redis they go on, on local limits.
            run.wait_for("submitted", after=time.time(), count=2)
        finally:
            restarting = time.time()
            redis_server.start()
        restored = [
            run.wait_for("coordination_restored", workers=[worker], after=restarting)[0]["at"]
            for worker in range(PROCESSES)
        ]
        reports = run.collect()
        stats = emulator.stats()

    assert_each_generation_ran_once(reports, stats, generations=MID_RUN_GENERATIONS)
    for report in reports:
        kinds = [e["event"] for e in run.echoed[report.worker] if e["event"] != "submitted"]
        assert kinds[0] == "coordination_lost"
        assert kinds[-1] == "coordination_restored"
        assert report.events["coordination_lost"] == report.events["coordination_restored"]
    # On local limits each held its share (at least 1), besides the slots it had when Redis went.
    assert stats["peak_in_flight_by_model"][MODEL] <= PROCESSES * max(1, CAP // PROCESSES) + CAP
    # Once every process was back and the tasks created before had ended, the cap held again.
    tasks = stats["tasks"]
    shared_again = max(task["ended"] for task in tasks if task["created"] <= max(restored))
    creates = in_flight_at_creates(tasks, since=shared_again)
    assert creates
    assert max(live for _, live in creates) <= CAP, creates
