"""
Metrics of one client's run, from the emulator's report and the client process's own.

All pure: plain numbers and JSON-shaped dicts in, numbers and short series out. Times are real epoch
seconds (the emulator's per-task report and the client's clock are on the same machine), shifted to
"seconds since the client started the workload" for series.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "detection_delays",
    "duplicates",
    "group_by_model",
    "in_flight_series",
    "percentile",
    "rate_series",
    "requests_of",
    "steady_state",
    "summarize",
]


def percentile(values: Sequence[float], q: float) -> float | None:
    """
    The `q` quantile (0..1) of `values` by linear interpolation between order statistics.

    The same rule as ``numpy.percentile``'s default and ``statistics.quantiles(method=
    'inclusive')``; ``None`` for no values.
    """
    if not 0 <= q <= 1:
        msg = f"q must be in [0, 1], got {q}"
        raise ValueError(msg)
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def detection_delays(tasks: Iterable[Mapping[str, Any]]) -> list[float]:
    """
    Per task, seconds from its end to the first query that saw it terminal.

    Tasks never seen terminal (the client gave up, or errored) are left out; a negative delay
    (clock rounding) counts as 0.
    """
    delays = []
    for task in tasks:
        ended, seen = task.get("ended"), task.get("first_terminal_query")
        if ended is not None and seen is not None:
            delays.append(max(0.0, seen - ended))
    return delays


def duplicates(tasks: Iterable[Mapping[str, Any]]) -> int:
    """Tasks created beyond one per distinct (model, prompt): images ordered twice."""
    count = 0
    distinct = set()
    for task in tasks:
        count += 1
        distinct.add((task.get("model"), task.get("prompt")))
    return count - len(distinct)


def in_flight_series(
    intervals: Iterable[tuple[float, float | None]], *, stop: float, step: float
) -> list[int]:
    """
    How many intervals ``[begin, end)`` contain each sample time ``0, step, 2*step, ... <= stop``.

    An interval with no end (still running) counts to the last sample.
    """
    if step <= 0:
        msg = f"step must be positive, got {step}"
        raise ValueError(msg)
    begins: list[float] = []
    ends: list[float] = []
    for begin, end in intervals:
        begins.append(begin)
        ends.append(math.inf if end is None else end)
    begins.sort()
    ends.sort()
    samples = math.floor(stop / step + 1e-9) + 1
    series = []
    for k in range(max(samples, 0)):
        t = k * step
        # Started at or before t, minus ended at or before t.
        series.append(bisect.bisect_right(begins, t) - bisect.bisect_right(ends, t))
    return series


def rate_series(
    timeline: Iterable[Sequence[Any]],
    *,
    origin: float,
    stop: float,
    endpoints: Iterable[str],
    step: float = 1.0,
    bucket: float = 0.1,
) -> dict[str, list[int]]:
    """
    Requests per `step` seconds of some `endpoints`, from timeline rows.

    Rows are ``[bucket_start_epoch, endpoint, status, count]`` for buckets `bucket` seconds wide
    (the emulator's 0.1 s). A bucket counts in the bin of ``[origin + k*step, origin +
    (k+1)*step)`` that holds its midpoint; one straddling `origin` counts in bin 0. Buckets wholly
    before `origin` or past ``origin + stop`` are dropped.

    Returns:
        ``{"all": [...], "429": [...]}``: every answer, and the throttled ones, per bin.
    """
    wanted = set(endpoints)
    bins = math.ceil(stop / step - 1e-9) if stop > 0 else 0
    total = [0] * bins
    throttled = [0] * bins
    for start, endpoint, status, count in timeline:
        if endpoint not in wanted:
            continue
        begin = float(start) - origin
        if begin + bucket <= 1e-6:  # wholly before the origin (float noise aside)
            continue
        k = max(0, math.floor((begin + bucket / 2) / step + 1e-9))
        if k >= bins:
            continue
        total[k] += int(count)
        if int(status) == 429:
            throttled[k] += int(count)
    return {"all": total, "429": throttled}


def requests_of(
    requests: Mapping[str, Mapping[str, int]], endpoint: str, status: int | None = None
) -> int:
    """Answers of `endpoint` in the emulator's ``requests`` table, optionally of one `status`."""
    counts = requests.get(endpoint, {})
    if status is not None:
        return int(counts.get(str(status), 0))
    return sum(int(n) for n in counts.values())


def steady_state(
    in_flight: Sequence[int],
    creates: Mapping[str, Sequence[int]],
    *,
    step: float,
    rate_step: float,
    makespan: float,
    window: tuple[float, float] = (0.2, 0.8),
) -> dict[str, float | None]:
    """
    How a client behaves once warmed up: the middle of its run (by default 20 %-80 % of makespan).

    Args:
        in_flight: Tasks in flight, sampled every `step` seconds from the start.
        creates: The `rate_series` of create requests (``"all"`` and ``"429"``), per `rate_step`.
        makespan: The client's makespan, in seconds.
        window: The fractions of `makespan` the steady state spans.

    Returns:
        ``mean_in_flight`` over the window, and ``throttled_share``: the fraction of create
        requests in the window answered 429 (``None`` when there were none).
    """
    low, high = window[0] * makespan, window[1] * makespan
    samples = [n for k, n in enumerate(in_flight) if low <= k * step <= high]
    sent = throttled = 0
    for k, (n_all, n_429) in enumerate(
        zip(creates.get("all", ()), creates.get("429", ()), strict=False)
    ):
        if low <= k * rate_step and (k + 1) * rate_step <= high:
            sent += n_all
            throttled += n_429
    return {
        "mean_in_flight": sum(samples) / len(samples) if samples else None,
        "throttled_share": throttled / sent if sent else None,
    }


def group_by_model(tasks: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """The per-task report split by model."""
    grouped: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for task in tasks:
        grouped[str(task.get("model"))].append(task)
    return dict(grouped)


def summarize(
    *,
    report: Mapping[str, Any],
    stats: Mapping[str, Any],
    async_model: str,
    ideal_starts: Sequence[float],
    ideal_ends: Sequence[float],
    step: float,
    rate_step: float = 1.0,
) -> dict[str, Any]:
    """
    Every metric of one client's run of one workload.

    Args:
        report: The client process's report (see ``_variants.Recorder.report``).
        stats: The emulator's stats after the run (``tasks``, ``requests``, ``timeline``...).
        async_model: The model of the workload's async group.
        ideal_starts: The ideal schedule's submission times of the async group.
        ideal_ends: Its end times.
        step: Seconds between samples of the in-flight series.
        rate_step: Seconds per bin of the request-rate series.
    """
    origin = float(report["started"])
    groups = report["groups"]
    tasks = [t for t in stats.get("tasks", []) if t.get("model") == async_model]
    requests = stats.get("requests", {})
    timeline = stats.get("timeline", [])

    def group_makespan(group: Mapping[str, Any]) -> float | None:
        finished = group["succeeded"] + group["errors"] == group["count"]
        if not finished or group["last_done"] is None:
            return None
        return float(group["last_done"]) - origin

    async_group = groups["async"]
    makespan = group_makespan(async_group)
    ideal = max(ideal_ends, default=0.0)
    delays = detection_delays(tasks)
    created = len(tasks)
    # A list call spends the same task-API quota as a poll: both count as looks at tasks.
    queries = requests_of(requests, "query") + requests_of(requests, "list")
    succeeded = sum(g["succeeded"] for g in groups.values())
    errors = sum(g["errors"] for g in groups.values())
    count = sum(g["count"] for g in groups.values())
    samples: Counter[str] = Counter()
    for group in groups.values():
        samples.update(group.get("error_samples", {}))
    elapsed = float(report["finished"]) - origin
    # The series span the run and whatever the emulator still ran after the client stopped.
    last_end = max((t["ended"] - origin for t in tasks if t.get("ended") is not None), default=0.0)
    stop = max(elapsed, last_end, ideal)
    in_flight = in_flight_series(
        [
            (t["created"] - origin, None if t.get("ended") is None else t["ended"] - origin)
            for t in tasks
        ],
        stop=stop,
        step=step,
    )
    ideal_in_flight = in_flight_series(
        zip(ideal_starts, ideal_ends, strict=True), stop=stop, step=step
    )
    query_rate = rate_series(
        timeline, origin=origin, stop=stop, endpoints=("query", "list", "cancel"), step=rate_step
    )
    create_rate = rate_series(
        timeline, origin=origin, stop=stop, endpoints=("create",), step=rate_step
    )
    steady = steady_state(
        in_flight, create_rate, step=step, rate_step=rate_step, makespan=makespan or elapsed
    )
    sync = groups.get("sync")
    return {
        "status": "timeout" if report.get("timed_out") else "ok",
        "makespan": makespan,
        "elapsed": elapsed,
        "ideal_makespan": ideal,
        "makespan_ratio": makespan / ideal if makespan is not None and ideal > 0 else None,
        "sync_makespan": group_makespan(sync) if sync is not None else None,
        "generations": count,
        "succeeded": succeeded,
        "errors": errors,
        "unfinished": count - succeeded - errors,
        "error_samples": dict(samples.most_common(5)),
        "tasks_created": created,
        "duplicates": duplicates(tasks),
        "polls": queries,
        "list_calls": requests_of(requests, "list"),
        "polls_per_task": queries / created if created else None,
        "detection_p50": percentile(delays, 0.5),
        "detection_p95": percentile(delays, 0.95),
        "detection_mean": sum(delays) / len(delays) if delays else None,
        "detected": len(delays),
        "throttled": int(stats.get("throttled", 0)),
        "create_429": requests_of(requests, "create", 429),
        "query_429": requests_of(requests, "query", 429) + requests_of(requests, "list", 429),
        "sync_429": requests_of(requests, "sync", 429),
        "requests": sum(requests_of(requests, e) for e in requests if e != "admin"),
        "connections": int(stats.get("connections", 0)),
        "peak_in_flight": stats.get("peak_in_flight"),
        "cpu_seconds": report["cpu_seconds"],
        # Per generation that reached an outcome: a run cut short is not credited with the rest.
        "cpu_ms_per_task": (
            1000.0 * report["cpu_seconds"] / (succeeded + errors) if succeeded + errors else None
        ),
        "peak_rss_mb": report["peak_rss_mb"],
        "rss_before_mb": report.get("rss_before_mb"),
        "steady_mean_in_flight": steady["mean_in_flight"],
        "steady_create_throttled_share": steady["throttled_share"],
        "series": {
            "step": step,
            "in_flight": in_flight,
            "ideal_in_flight": ideal_in_flight,
            "rate_step": rate_step,
            "queries": query_rate["all"],
            "queries_429": query_rate["429"],
            "creates": create_rate["all"],
            "creates_429": create_rate["429"],
        },
    }
