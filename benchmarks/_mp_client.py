"""
One client process of the multi-process benchmark (B5): its share of the prompts, one `Client`.

Run as ``python -m benchmarks._mp_client SPEC_JSON``. The spec names the workload and its time
scale, the emulator's address, which prompts are this process's (``index`` of ``processes``: every
``processes``-th prompt from ``index``), the Redis URL of the coordinator (``null``: none) and the
report's path. The process opens its client (with a coordinator, that registers it in Redis),
prints ``ready``, waits for ``go`` on stdin, so that every process starts the workload at once,
then runs its prompts through `Client.map`, writes its report and exits. A deadline (``timeout``
real seconds after ``go``) ends it with what it has, marked timed out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import sys
import time
from collections import Counter
from typing import Any

import attrs

from benchmarks._workloads import Workload


def _rusage() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0


def share(prompts: list[str], index: int, processes: int) -> list[str]:
    """Process `index`'s prompts: every `processes`-th one, from `index` on (an even split)."""
    return prompts[index::processes]


async def run(spec: dict[str, Any], workload: Workload) -> dict[str, Any]:
    """Open the client, wait for ``go``, run this process's prompts; the report."""
    import aioqwenimage

    group = workload.async_group
    setup = workload.models[group.model]
    limits = aioqwenimage.Limits(
        queries_per_second=workload.client_queries_per_second,
        models={
            group.model: aioqwenimage.ModelLimits(
                in_flight=setup.told_in_flight, submits_per_second=setup.told_submits_per_second
            )
        },
    )
    coordinator = None
    if spec["redis_url"] is not None:
        from aioqwenimage.redis import RedisCoordinator

        coordinator = RedisCoordinator(spec["redis_url"])
    prompts = share(workload.prompts(group), spec["index"], spec["processes"])
    counts: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    last_done: float | None = None
    report: dict[str, Any] = {"index": spec["index"], "count": len(prompts)}
    loop = asyncio.get_running_loop()
    kinds: Counter[str] = Counter()
    coordination: list[list[Any]] = []  # [time, kind, detail]: Redis lost or restored

    def hook(event: aioqwenimage.TaskEvent) -> None:
        kinds[event.kind.value] += 1
        if event.kind.value.startswith("coordination_"):
            coordination.append([event.at, event.kind.value, dict(event.detail)])

    async with aioqwenimage.Client(
        api_key=spec["api_key"],
        base_url=spec["base_url"],
        limits=limits,
        time_scale=workload.time_scale,
        coordinator=coordinator,
        event_hooks=[hook],
    ) as client:
        print("ready", flush=True)
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if line.strip() != "go":
            msg = f"expected 'go' on stdin, got {line!r}"
            raise SystemExit(msg)
        cpu_start, _ = _rusage()
        started = time.time()
        deadline = time.monotonic() + float(spec["timeout"])

        async def work() -> None:
            nonlocal last_done
            async for outcome in client.map(prompts, model=group.model):
                error = outcome.error
                if error is None:
                    counts["succeeded"] += 1
                else:
                    counts["errors"] += 1
                    code = getattr(error, "code", None)
                    errors[f"{type(error).__name__}({code})" if code else type(error).__name__] += 1
                last_done = time.time()

        task = asyncio.ensure_future(work())
        samples: list[list[Any]] = []
        sampler = asyncio.ensure_future(
            _sample(coordinator, samples, started, 0.5 * workload.time_scale)
        )
        done, _ = await asyncio.wait({task}, timeout=max(0.0, deadline - time.monotonic()))
        sampler.cancel()
        timed_out = task not in done
        if timed_out:
            task.cancel()
        else:
            task.result()
        finished = time.time()
        cpu_end, rss = _rusage()
        stats = client.stats
        report.update(
            {
                "started": started,
                "finished": finished,
                "timed_out": timed_out,
                "succeeded": counts["succeeded"],
                "errors": counts["errors"],
                "error_samples": dict(errors.most_common(5)),
                "last_done": last_done,
                "cpu_seconds": cpu_end - cpu_start,
                "cpu_seconds_total": cpu_end,
                "peak_rss_mb": rss,
                # Everything but the slots held now (none, once the client closed).
                "client_stats": attrs.asdict(stats, filter=lambda a, _: a.name != "in_flight"),
            }
        )
        report["events"] = dict(kinds)
        if coordinator is not None:
            report["coordinator"] = {
                "leading": coordinator.leading,
                "routed": coordinator.routed,
                "processes": coordinator.processes,
                "degraded": coordinator.degraded,
                "events": coordination,
                "given_back": {
                    name: window.given_back for name, window in coordinator._windows.items()
                },
                # Every half simulated second: [seconds since go, degraded, clock offset,
                # processes, leading, {pool: [adaptive limit, slots held, waiters]}].
                "samples": samples,
            }
        _write(spec["out"], report)
        if timed_out:
            os._exit(0)  # closing a client with work still running could take long
    return report


async def _sample(coordinator: Any, samples: list[list[Any]], origin: float, step: float) -> None:
    """Profiling only: the coordinator's state (private attributes) every `step` real seconds."""
    if coordinator is None:
        return
    while True:
        link = coordinator._link
        samples.append(
            [
                round(time.time() - origin, 3),
                coordinator.degraded,
                None if link is None else round(link.offset, 4),
                coordinator.processes,
                coordinator.leading,
                {
                    name: [pool.limit, pool.in_flight, pool.waiting]
                    for name, pool in coordinator._pools.items()
                },
            ]
        )
        await asyncio.sleep(step)


def _write(path: str, report: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as file:  # noqa: PTH123
        json.dump(report, file)
    sys.stdout.flush()
    sys.stderr.flush()


def main() -> int:
    """Run as the spec (first argument, JSON) says; write the report; exit."""
    from benchmarks.multiprocess import workload_of

    spec = json.loads(sys.argv[1])
    for name in ("aioqwenimage", "asyncio", "redis"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    workload = workload_of(spec["workload"], spec["time_scale"])
    report = asyncio.run(run(spec, workload))
    # Written again once the client has closed: how long closing took is part of the record.
    report["closed"] = time.time()
    _write(spec["out"], report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
