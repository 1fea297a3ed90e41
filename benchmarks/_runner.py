"""
Run a workload: the emulator in its own process, then each client variant in its own, in turn.

Between variants the emulator is reset (tasks and counters). After each variant the runner reads the
client's report (its CPU time and peak RSS included) and the emulator's stats, and computes the
metrics against the ideal schedule. Results merge into ``<out>/<workload>.json``: re-running one
client replaces only that client's entry.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks._ideal import ideal_schedule
from benchmarks._metrics import summarize
from benchmarks._report import machine_info, versions
from benchmarks._variants import VARIANTS
from benchmarks._workloads import Workload, scheduling_delay

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["Emulator", "run_workload"]

# Seconds past a variant's own deadline before the runner kills it.
_GRACE = 60.0


class Emulator:
    """The emulator process of one workload: its address, reset and stats."""

    def __init__(self, process: subprocess.Popen[str], info: dict[str, str]) -> None:
        self.process = process
        self.base_url = info["base_url"]
        self.api_key = info["api_key"]
        self.control_url = info["control_url"]

    @classmethod
    @contextlib.contextmanager
    def start(cls, config: dict[str, Any]) -> Iterator[Emulator]:
        """Start it, yield it, and stop it (SIGTERM, then SIGKILL) at the end."""
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._emulator_proc", json.dumps(config)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            if not line:
                msg = f"the emulator did not start (exit code {process.wait()})"
                raise RuntimeError(msg)
            yield cls(process, json.loads(line))
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()

    def _call(self, path: str, method: str = "GET", data: bytes | None = None) -> dict[str, Any]:
        request = urllib.request.Request(  # noqa: S310
            self.control_url + path, method=method, data=data
        )
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310 - loopback
            return json.loads(response.read())

    def reset(self) -> None:
        """Forget every task; zero every counter."""
        self._call("/reset", "POST")

    def notify(self, target: dict[str, Any] | None) -> None:
        """Publish task-completion events to `target` (url, token, latency, rates), or stop."""
        self._call("/notify", "POST", json.dumps(target).encode())

    def stats(self) -> dict[str, Any]:
        """The emulator's stats, per-task report and timeline included."""
        return self._call("/stats")


def _git_revision() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "aioqwenimage"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def _duration_check(workload: Workload, stats: dict[str, Any]) -> float | None:
    """The largest gap, in seconds, between a task's expected and reported occupancy of a slot."""
    group = workload.async_group
    expected = dict(zip(workload.prompts(group), workload.durations(group), strict=True))
    worst = None
    for task in stats.get("tasks", []):
        want = expected.get(task.get("prompt"))
        if want is None or task.get("scheduled") is None or task.get("ended") is None:
            continue
        delay = scheduling_delay(workload.seed, group.model, task["prompt"], workload.time_scale)
        got = task["ended"] - (task["scheduled"] - delay)
        gap = abs(got - want)
        worst = gap if worst is None else max(worst, gap)
    return worst


def run_variant(
    workload: Workload,
    variant: str,
    emulator: Emulator,
    *,
    ideal: tuple[tuple[float, ...], tuple[float, ...]],
    profile: str | None = None,
    profile_dir: Path | None = None,
    poll: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """
    One client variant's run of `workload`: the results entry (metrics and run facts).

    `poll` overrides fields of aioqwenimage's `PollPolicy` (other variants ignore it).
    """
    emulator.reset()
    timeout = workload.timeout_for(variant)
    with tempfile.TemporaryDirectory(prefix="aioqwenimage-bench-") as tmp:
        out = Path(tmp) / "report.json"
        spec: dict[str, Any] = {
            "variant": variant,
            "workload": workload.name,
            "base_url": emulator.base_url,
            "api_key": emulator.api_key,
            "timeout": timeout,
            "out": str(out),
        }
        if poll and variant == "aioqwenimage":
            spec["poll"] = poll
        notifying = workload.notifications is not None and variant == "aioqwenimage"
        if notifying:
            # The client's receiver listens on a port chosen here, so the emulator can be told.
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            token = secrets.token_urlsafe(16)
            spec["notify"] = {"port": port, "token": token}
            emulator.notify(
                {"url": f"http://127.0.0.1:{port}/", "token": token, **workload.notifications}
            )
        command = [sys.executable, "-m", "benchmarks._variants"]
        if profile == "pyinstrument" and profile_dir is not None:
            spec["profile"] = "pyinstrument"
            spec["profile_out"] = str(profile_dir / f"{workload.name}-{variant}-pyinstrument.txt")
        elif profile == "py-spy" and profile_dir is not None:
            flame = profile_dir / f"{workload.name}-{variant}-py-spy.txt"
            command = [
                "py-spy",
                "record",
                "--format",
                "raw",
                "-r",
                "200",
                "-o",
                str(flame),
                "--",
                *command,
            ]
        started = time.monotonic()
        process = subprocess.Popen(
            [*command, json.dumps(spec)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            _, stderr = process.communicate(timeout=timeout + _GRACE)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            _, stderr = process.communicate()
        wall = time.monotonic() - started
        if notifying:
            emulator.notify(None)
        entry: dict[str, Any] = {
            "run_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "revision": _git_revision(),
            "wall_seconds": round(wall, 2),
            "exit_code": process.returncode,
            "profiled": profile,
        }
        if "poll" in spec:
            entry["poll_policy"] = spec["poll"]
        if not out.exists():
            entry["status"] = "crashed"
            entry["stderr"] = stderr[-2000:]
            return entry
        report = json.loads(out.read_text(encoding="utf-8"))
    stats = emulator.stats()
    step = workload.sample_step
    metrics = summarize(
        report=report,
        stats=stats,
        async_model=workload.async_group.model,
        ideal_starts=ideal[0],
        ideal_ends=ideal[1],
        step=step,
        rate_step=max(step, 1.0 * workload.time_scale),
    )
    metrics["duration_check"] = _duration_check(workload, stats)
    metrics["timeline_source"] = stats.get("timeline_source")
    metrics["client_stats"] = report.get("client_stats")
    entry.update(metrics)
    if stderr.strip():
        entry["stderr"] = stderr[-1000:]
    return entry


def ideal_for(workload: Workload) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The ideal schedule of the workload's async group under the emulator's real limits."""
    group = workload.async_group
    setup = workload.models[group.model]
    schedule = ideal_schedule(
        workload.durations(group),
        in_flight=setup.in_flight,
        rate=setup.submits,
        period=setup.period * workload.time_scale,
    )
    return schedule.starts, schedule.ends


def run_workload(
    workload: Workload,
    clients: list[str],
    out_dir: Path,
    *,
    profile: str | None = None,
    poll: dict[str, Any] | None = None,
    log: Any = print,
) -> dict[str, Any]:
    """
    Run `clients` on `workload` and merge their entries into ``out_dir/<name>.json``.

    Returns:
        The whole results document of the workload.
    """
    unknown = [c for c in clients if c not in VARIANTS]
    if unknown:
        msg = f"unknown clients: {', '.join(unknown)} (known: {', '.join(VARIANTS)})"
        raise ValueError(msg)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{workload.name}.json"
    document: dict[str, Any] = {}
    if path.exists():
        with contextlib.suppress(ValueError):
            document = json.loads(path.read_text(encoding="utf-8"))
    ideal = ideal_for(workload)
    document.update(
        {
            "workload": workload.name,
            "title": workload.title,
            "description": workload.description,
            "ideal_makespan": max(ideal[1], default=0.0),
            "machine": machine_info(),
            "versions": versions(),
        }
    )
    entries = document.setdefault("clients", {})
    profile_dir = out_dir / "profiles" if profile else None
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
    with Emulator.start(workload.emulator_config()) as emulator:
        for client in clients:
            log(f"[{workload.name}] {client}: running (cap {workload.timeout_for(client):.0f} s)")
            entry = run_variant(
                workload,
                client,
                emulator,
                ideal=ideal,
                profile=profile,
                profile_dir=profile_dir,
                poll=poll,
            )
            if profile:
                status = entry.get("status")
                log(f"[{workload.name}] {client}: profiled run, not recorded ({status})")
                continue
            entries[client] = entry
            log(f"[{workload.name}] {client}: {_one_line(entry)}")
            # Written after every client, so an interrupted run keeps what it measured.
            path.write_text(dumps(document), encoding="utf-8")
    return document


def dumps(document: Any) -> str:
    """JSON for humans and diffs: indented, but each list of numbers on one line."""
    text = json.dumps(document, indent=1, sort_keys=True)
    return (
        re.sub(
            r"\[\s*(-?[\d.e+-]+(?:,\s*-?[\d.e+-]+)*)\s*\]",
            lambda m: "[" + ", ".join(part.strip() for part in m.group(1).split(",")) + "]",
            text,
        )
        + "\n"
    )


def _one_line(entry: dict[str, Any]) -> str:
    if entry.get("status") == "crashed":
        return f"CRASHED (exit {entry.get('exit_code')}): {entry.get('stderr', '')[-300:]}"

    def fmt(value: Any, spec: str = ".2f") -> str:
        return "-" if value is None else format(value, spec)

    return (
        f"{entry['status']} makespan {fmt(entry['makespan'], '.1f')} s "
        f"(x{fmt(entry['makespan_ratio'])} ideal), errors {entry['errors']}, "
        f"dup {entry['duplicates']}, polls/task {fmt(entry['polls_per_task'])}, "
        f"detect p50/p95 {fmt(entry['detection_p50'])}/{fmt(entry['detection_p95'])} s, "
        f"429s {entry['throttled']}, conns {entry['connections']}, "
        f"cpu {fmt(entry['cpu_seconds'])} s, rss {fmt(entry['peak_rss_mb'], '.0f')} MiB, "
        f"wall {entry['wall_seconds']:.0f} s"
    )
