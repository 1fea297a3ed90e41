"""Thousands of concurrent generations on one client, in compressed time."""

from __future__ import annotations

import asyncio
import warnings

import anyio

import aioqwenimage as q
from aioqwenimage.testing import EmulatorLimits, FakeDashScope, ModelQuota

COUNT = 2000
# Compressed less than elsewhere: with a one-second window lasting 10 ms, the event loop's own
# scheduling delays (a millisecond or so under this load) cannot bunch one window's queries into
# the next on arrival, so the emulator's count of arrivals checks the client's budget faithfully.
SCALE = 0.01


async def test_two_thousand_concurrent_generations():
    """2,000 generations: none lost, no duplicate create, budget held, pools bound connections."""
    limits = EmulatorLimits(
        # The client spends 15 queries per (compressed) second. With one client and the emulator
        # on one busy event loop, a poll's query can reach the emulator a few milliseconds after
        # its budget token was taken, so at 10 ms windows the arrivals of two adjacent windows
        # may coincide: the emulator allows twice the budget, and a 429 would mean the client
        # overspent by more than that. The exact per-window bound is the budget's own property
        # (tests/unit/test_scheduler.py); uncompressed runs meet the documented 20/s with no 429.
        task_queries_per_second=30,
        models={"qwen-image-plus": ModelQuota(in_flight=COUNT, submits=COUNT)},
    )
    before = asyncio.all_tasks()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # Tasks last 15-16 s of real time, so that all 2,000 are in flight at once on the server
        # wherever creating them takes less than that (two shared cores under coverage tracing
        # create about 170 a second).
        durations = {"qwen-image-plus": (1500.0, 1600.0)}
        async with FakeDashScope(
            time_scale=SCALE, seed=11, limits=limits, durations=durations
        ) as fake:
            client = q.Client(
                api_key=fake.api_key,
                base_url=fake.base_url,
                time_scale=SCALE,
                seed=5,
                # Polls in proportion to those durations, as a client that has learned them.
                poll=q.PollPolicy(first_poll=1500, min_interval=2, max_interval=10),
                limits=q.Limits(
                    queries_per_second=15,
                    models={
                        "qwen-image-plus": q.ModelLimits(in_flight=COUNT, submits_per_second=COUNT)
                    },
                ),
            )
            async with client:
                outcomes: dict[int, object] = {}

                async def one(index: int) -> None:
                    try:
                        outcomes[index] = await client.generate(
                            f"prompt {index}", model="qwen-image-plus"
                        )
                    except q.QwenImageError as exc:
                        outcomes[index] = exc

                with anyio.fail_after(120):
                    async with anyio.create_task_group() as tg:
                        for index in range(COUNT):
                            tg.start_soon(one, index)
                pools = q.PoolLimits()
            stats = fake.stats

    # Nothing lost: every item ended in a result or a typed error (here: all results).
    assert COUNT == len(outcomes)
    results = [o for o in outcomes.values() if isinstance(o, q.GenerationResult)]
    assert COUNT == len(results)
    # No duplicate creates: one task per prompt, one create request per task.
    assert COUNT == stats.tasks_created["qwen-image-plus"]
    assert COUNT == len({r.task_id for r in results})
    assert {200: COUNT} == dict(stats.requests["create"])
    # The query budget held: the emulator never had to throttle a task query.
    assert 429 not in stats.requests["query"]
    # Connections are bounded by the pools, not by the number of requests.
    assert stats.connections <= pools.control + pools.query + pools.long
    assert sum(stats.requests["query"].values()) > 10 * stats.connections
    # Nothing left running after aclose(), and no warning of any kind.
    assert set() == asyncio.all_tasks() - before
    assert [] == [str(w.message) for w in caught]
    # Truly concurrent, not merely many: how many are in flight at once on the server depends on
    # how fast this machine creates them, so the bound is half (all 2,000 where creating takes
    # less than a task lasts); a client that serialised, or capped its own concurrency at a pool
    # size, would stay far below it.
    assert stats.peak_in_flight >= COUNT // 2
