"""Sweeps: completions of many tasks learned from one list query."""

from __future__ import annotations

import logging
import statistics
from collections.abc import Mapping
from typing import Any

import anyio
import pytest

import aioqwenimage as q
from aioqwenimage._errors import InvalidRequestError, TransportError
from aioqwenimage._sweep import Sweeper
from aioqwenimage.testing import EmulatorLimits, FakeDashScope, Fault, FaultKind, ModelQuota
from tests.conftest import SCALE, make_client
from tests.virtual_time import run_virtual


def sweeper(pages: list[Mapping[str, Any]] | Exception, live: dict[str, float], **kwargs: Any):
    queries: list[Mapping[str, str]] = []
    announced: list[str] = []

    async def list_page(params: Mapping[str, str]) -> Mapping[str, Any]:
        queries.append(params)
        if isinstance(pages, Exception):
            raise pages
        return pages[int(params["page_no"]) - 1]

    def announce(task_id: str) -> bool:
        announced.append(task_id)
        return True

    kwargs.setdefault("interval", 0.001)
    kwargs.setdefault("min_live", 2)
    kwargs.setdefault("share", 1000.0)
    s = Sweeper(
        list_page=list_page,
        live=live.items,
        announce=announce,
        wall_clock=lambda: 1_700_000_100.0,
        **kwargs,
    )
    return s, queries, announced


async def sweep_for(s: Sweeper, seconds: float) -> None:
    """Let `s` sweep for `seconds` of (virtual) time."""
    with anyio.move_on_after(seconds):
        await s.run()


async def test_one_sweep_pages_through_and_announces_only_live_tasks():
    """A sweep reads every page of the window and announces the live tasks it finds finished."""
    pages = [
        {"data": [{"task_id": "a"}, {"task_id": "other-client"}], "total_page": 2},
        {"data": [{"task_id": "c"}, "garbage"], "total_page": 2},
    ]
    s, queries, announced = sweeper(
        pages, {"a": 1_700_000_000.0, "b": 1_700_000_050.0, "c": 1_700_000_060.0}
    )

    assert 2 == await s.sweep(
        {"a": 1_700_000_000.0, "b": 1_700_000_050.0, "c": 1_700_000_060.0}, "SUCCEEDED"
    )

    assert ["a", "c"] == announced
    # The window starts before the oldest live task, in Beijing time, one-second resolution.
    assert {
        "status": "SUCCEEDED",
        "start_time": "20231115061318",
        "end_time": "20231115061502",
        "page_size": "100",
        "page_no": "1",
    } == queries[0]
    assert "2" == queries[1]["page_no"]


async def test_the_window_starts_just_before_the_oldest_task_once_the_service_clock_is_known():
    """
    The service's creation times of eight found tasks against ours (here: its clock 3 s ahead)
    move the window into its time and shrink its margin from 2 s to 0.5 s. Garbage times teach
    nothing.
    """
    live = {f"t{i}": 1_700_000_000.0 + i for i in range(8)}
    rows: list[Any] = [
        {"task_id": task_id, "gmt_create": round((created + 3.0 + 0.1 * i) * 1000)}
        for i, (task_id, created) in enumerate(live.items())
    ]
    rows += [
        {"task_id": "t0", "gmt_create": True},
        {"task_id": "t1", "gmt_create": "soon"},
        {"task_id": "t2", "gmt_create": 9e18},
        {"task_id": "t3", "gmt_create": float("nan")},
    ]
    s, queries, _ = sweeper([{"data": rows, "total_page": 1}], live)

    await s.sweep(dict(live), "SUCCEEDED")
    await s.sweep({"late": 1_700_000_010.0}, "SUCCEEDED")

    # Before: 2 s before the oldest task by our clock (06:13:20, Beijing time).
    assert ("20231115061318", "20231115061502") == (
        queries[0]["start_time"],
        queries[0]["end_time"],
    )
    # After: 0.5 s before it by the service's (06:13:30 + 3 s), the end in its time too.
    assert ("20231115061332", "20231115061505") == (
        queries[1]["start_time"],
        queries[1]["end_time"],
    )


async def test_sweeps_read_one_page_of_recent_tasks_and_reach_back_every_eighth():
    """
    The finished tasks the last sweeps read show where a one-page window would start: from
    there (80 of them), except every eighth sweep, which reaches back to the oldest live task.
    Not when that would leave out more than a tenth of the live tasks.
    """
    base = 1_700_000_000.0  # 06:13:20, Beijing time
    young = {f"t{i}": base + i for i in range(1, 12)}
    finished = [round((base - 20 + k / 4) * 1000) for k in range(120)]  # base - 20 s to + 10 s

    async def starts(live: dict[str, float], count: int) -> list[str]:
        rows: list[Any] = [{"task_id": k, "gmt_create": round(t * 1000)} for k, t in live.items()]
        rows += [{"task_id": f"f{k}", "gmt_create": at} for k, at in enumerate(finished)]
        s, queries, _ = sweeper([{"data": rows, "total_page": 1}], live)
        for _ in range(count):
            await s.sweep(dict(live), "SUCCEEDED")
        return [query["start_time"] for query in queries]

    # One old task among twelve: the first sweep 2 s before it (the clock is unknown); then from
    # the 80th newest finished task (base - 7.25 s, rounded up to the second); the ninth sweep
    # 0.5 s before the oldest again.
    assert ["20231115061248", *["20231115061313"] * 7, "20231115061249"] == await starts(
        {"old": base - 30} | young, 9
    )
    # Five old ones among sixteen: every sweep reaches back to them.
    old = {f"o{i}": base - 30 + i for i in range(5)}
    assert ["20231115061248", *["20231115061249"] * 3] == await starts(old | young, 4)


def test_few_live_tasks_are_not_swept_until_trusted():
    """Below min_live no list query is sent; once trusted, any live task is swept."""
    s, queries, _ = sweeper([{"data": [], "total_page": 1}], {"a": 1_700_000_000.0}, min_live=2)
    run_virtual(lambda: sweep_for(s, 0.02))
    assert [] == queries
    s.trust()
    run_virtual(lambda: sweep_for(s, 0.02))
    assert queries


def failed_sweeps(queries: list[Mapping[str, str]]) -> list[int]:
    """The sweeps (numbered from 1 by their SUCCEEDED list) that also listed FAILED tasks."""
    numbers, sweep = [], 0
    for query in queries:
        if query["status"] == "SUCCEEDED":
            sweep += 1
        else:
            numbers.append(sweep)
    return numbers


def test_failed_tasks_are_looked_for_every_eighth_sweep_while_some_are_found():
    """A FAILED list that finds one of ours keeps the next one eight sweeps away."""
    page = {"data": [{"task_id": "a"}], "total_page": 1}
    s, queries, _ = sweeper([page], {"a": 1.7e9, "b": 1.7e9})
    run_virtual(lambda: sweep_for(s, 0.1))

    assert [8, 16, 24, 32] == failed_sweeps(queries)[:4]


def test_failed_tasks_are_looked_for_ever_less_often_while_none_are_found():
    """
    Each FAILED list that finds none of ours doubles the gap to the next, up to 64 sweeps (B5,
    no failure in 2,000 tasks: a FAILED list every eighth sweep was about 21 of 189 lists).
    """
    s, queries, _ = sweeper([{"data": [], "total_page": 1}], {"a": 1.7e9, "b": 1.7e9})
    run_virtual(lambda: sweep_for(s, 0.5))

    assert [8, 24, 56, 120, 184, 248] == failed_sweeps(queries)[:6]


def test_an_unexpected_error_in_a_sweep_is_logged_not_raised(caplog):
    """A bug in a sweep is logged and sweeping goes on; it never ends the client's work."""
    s, queries, _ = sweeper(ValueError("bug"), {"a": 1.7e9, "b": 1.7e9})
    run_virtual(lambda: sweep_for(s, 0.01))
    assert s.enabled
    assert len(queries) > 1
    assert "sweep failed unexpectedly" in caplog.text


def test_a_client_error_turns_sweeping_off_and_network_errors_do_not():
    """A list endpoint that rejects the query disables sweeps; a network error is retried."""
    s, queries, _ = sweeper(TransportError("down"), {"a": 1.7e9, "b": 1.7e9})
    run_virtual(lambda: sweep_for(s, 0.01))
    assert s.enabled
    assert len(queries) > 1
    s, _, _ = sweeper(InvalidRequestError("bad", status=400), {"a": 1.7e9, "b": 1.7e9})
    run_virtual(s.run)  # returns by itself
    assert not s.enabled


async def test_sweeps_find_completions_so_each_task_is_polled_about_once():
    """With many tasks in flight, sweeps announce completions and per-task polls become rare."""
    limits = EmulatorLimits(models={"qwen-image-plus": ModelQuota(in_flight=100, submits=1000)})
    durations = {"qwen-image-plus": (5.0, 15.0)}  # the realistic range, compressed
    # Compressed ten times less than elsewhere: at 5-15 ms a task, the event loop's own delays
    # on a busy machine decide whether a poll or a sweep sees a completion first.
    async with FakeDashScope(
        time_scale=10 * SCALE, limits=limits, durations=durations, seed=4
    ) as fake:
        async with make_client(
            fake,
            limits=q.Limits(
                models={"qwen-image-plus": q.ModelLimits(in_flight=100, submits_per_second=1000)}
            ),
        ) as client:
            outcomes = [
                o
                async for o in client.map(
                    [f"p{i}" for i in range(200)], model="qwen-image-plus", concurrency=200
                )
            ]
        queries = sum(report.queries for report in fake.stats.tasks.values())
        # A task a sweep announced is polled once, right away, and finishes with that poll.
        polled_once = sum(1 for report in fake.stats.tasks.values() if report.queries == 1)
    assert all(o.ok for o in outcomes)
    assert 0 < sum(fake.stats.requests["list"].values())
    assert polled_once > 150
    assert queries / 200 < 2.0


def _sweep_setup(in_flight: int) -> tuple[EmulatorLimits, q.Limits]:
    quota = ModelQuota(in_flight=in_flight, submits=1000)
    told = q.ModelLimits(in_flight=in_flight, submits_per_second=1000)
    return (
        EmulatorLimits(models={"qwen-image-plus": quota}),
        q.Limits(models={"qwen-image-plus": told}),
    )


async def test_the_first_tasks_of_a_batch_are_left_to_sweeps_not_polled_while_running():
    """
    Before any duration is learned, the first poll comes at `first_poll` (5 s), before most of
    these 5-15 s tasks end. Among many live tasks sweeps run, so the first wave is left to them
    too: (nearly) every task is polled once, when a sweep saw it end.
    """
    emulated, told = _sweep_setup(in_flight=100)
    async with FakeDashScope(
        time_scale=10 * SCALE, limits=emulated, durations={"*": (5.0, 15.0)}, seed=4
    ) as fake:
        async with make_client(fake, limits=told) as client:
            prompts = [f"p{i}" for i in range(200)]
            outcomes = [o async for o in client.map(prompts, model="qwen-image-plus")]
        reports = list(fake.stats.tasks.values())
    assert all(o.ok for o in outcomes)
    first_wave = sorted(reports, key=lambda r: r.created)[:100]
    assert sum(r.queries for r in first_wave) <= 105  # on main: 150-200


async def test_sweeps_that_never_see_tasks_end_give_polls_their_usual_pace_back(caplog):
    """
    A list endpoint that always fails: the tasks left to sweeps are found ended by their own
    (stretched) polls, so after a few the client warns and polls at the usual pace again.
    """
    emulated, told = _sweep_setup(in_flight=20)
    # 40 ms a simulated second: a loaded machine's event-loop delays stay small beside the
    # detection delays compared (about 1 s against 5 s).
    async with FakeDashScope(
        time_scale=40 * SCALE, limits=emulated, durations={"*": (5.0, 15.0)}, seed=4
    ) as fake:
        fake.faults.add(Fault(kind=FaultKind.INTERNAL_ERROR, endpoints={"list"}))
        async with make_client(fake, limits=told) as client:
            with caplog.at_level(logging.WARNING, logger="aioqwenimage"):
                prompts = [f"p{i}" for i in range(60)]
                outcomes = [o async for o in client.map(prompts, model="qwen-image-plus")]
        reports = sorted(fake.stats.tasks.values(), key=lambda r: r.created)
    assert all(o.ok for o in outcomes)
    warned = [r for r in caplog.records if "usual pace" in r.getMessage()]
    assert 1 == len(warned)

    def detection(report: Any) -> float:
        return (report.first_terminal_query - report.ended) / fake.time_scale

    # The first twenty, left to sweeps, first polled at 15 s: found about 5 s after their end
    # in the mean; the last twenty are polled at the learned pace again.
    stretched = statistics.mean(map(detection, reports[:20]))
    after = statistics.mean(map(detection, reports[-20:]))
    assert after < 2.0
    assert stretched > 1.5 * after


async def test_sweeps_can_be_switched_off(fake):
    """PollPolicy(sweep=False) polls each task on its own only."""
    async with make_client(fake, poll=q.PollPolicy(sweep=False, sweep_min_live=1)) as client:
        async for outcome in client.map([f"p{i}" for i in range(20)], model="qwen-image-plus"):
            assert outcome.ok
    assert 0 == sum(fake.stats.requests["list"].values())


def test_policy_validates_sweep_settings():
    """Nonsensical sweep settings are refused."""
    with pytest.raises(ValueError, match="sweep_share"):
        q.PollPolicy(sweep_share=0)
    with pytest.raises(ValueError, match="stretch"):
        q.PollPolicy(stretch=0.5)
