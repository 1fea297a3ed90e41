"""
Many client processes against one emulator process: what one account's processes do together.

`running_emulator` serves the standalone emulator in a process of its own (tests/emulator_process),
`run_clients` starts `processes` workers (``python -m tests.client_worker``), each one
`aioqwenimage.Client` running `generations` generations at once, releases them together, and
returns each worker's report; `Emulator.stats` reads the emulator's counters over its admin
endpoint. Every wait is bounded: a worker that has not reported by the deadline is killed and the
run fails with the end of its stderr.

    with running_emulator(time_scale=0.01) as emulator:
        reports = run_clients(emulator, processes=4, generations=3, time_scale=0.01)
        stats = emulator.stats()
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

import attrs

from tests.emulator_process import emulator_process

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT = 60.0
"""Real seconds for every worker to start Python, import the package and open its client."""
START_AHEAD = 0.2
"""Real seconds between the start signal and the moment every worker starts generating."""


@attrs.frozen
class Emulator:
    """An emulator serving in another process: its API root, its key, and its admin endpoints."""

    base_url: str
    api_key: str = attrs.field(repr=False)
    time_scale: float

    @property
    def admin(self) -> str:
        return self.base_url.replace("/api/v1", "/__emulator__")

    def call(self, method: str, path: str, body: object = None) -> Any:
        """One admin request (``stats``, ``reset``, ``faults``); its JSON answer."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.admin}/{path}", data=data, method=method)  # noqa: S310
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return json.loads(response.read())

    def stats(self) -> dict[str, Any]:
        """`aioqwenimage.testing.Stats.to_dict`, with the per-task reports."""
        return self.call("GET", "stats")  # type: ignore[no-any-return]

    def reset(self) -> None:
        """Forget every task and counter."""
        self.call("POST", "reset")


def throttled_creates(stats: dict[str, Any]) -> int:
    """429 answers to task creates in an emulator's `Emulator.stats`."""
    return int(stats["requests"].get("create", {}).get("429", 0))


@contextlib.contextmanager
def running_emulator(*flags: str, time_scale: float, seed: int = 1) -> Iterator[Emulator]:
    """
    The emulator in its own process at `time_scale`, with the documented limits unless `flags`
    say otherwise (``--no-limits``, ``--over-cap reject``...).
    """
    options = ("--time-scale", str(time_scale), "--seed", str(seed), *flags)
    with emulator_process(*options) as (base_url, api_key):
        yield Emulator(base_url, api_key, time_scale)


@attrs.frozen(kw_only=True)
class WorkerReport:
    """
    What one worker process reported.

    Attributes:
        worker: Its index.
        task_ids: Every task it created (its ``SUBMITTED`` events), in order.
        outcomes: Per generation: ``prompt``, ``task_id``, ``status`` (``"SUCCEEDED"`` or the
            name of the error raised).
        throttled: 429 answers its client received (`aioqwenimage.ClientStats.throttled`).
        stats: Its other client counters (``requests``, ``polls``, ``retries``...).
        elapsed: Real seconds from the start signal to its last outcome.
        coordinated: Whether its client had a coordinator.
    """

    worker: int
    task_ids: list[str]
    outcomes: list[dict[str, Any]]
    throttled: int
    stats: dict[str, Any]
    elapsed: float
    coordinated: bool

    @property
    def succeeded(self) -> int:
        return sum(outcome["status"] == "SUCCEEDED" for outcome in self.outcomes)


def worker_command(
    emulator: Emulator,
    *,
    worker: int,
    generations: int,
    model: str,
    time_scale: float,
    coordinator: str | None = None,
    namespace: str | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """The command line of one worker (the key goes in its environment, not here)."""
    command = [
        sys.executable,
        "-m",
        "tests.client_worker",
        "--base-url",
        emulator.base_url,
        "--time-scale",
        str(time_scale),
        "--model",
        model,
        "--count",
        str(generations),
        "--worker",
        str(worker),
        "--seed",
        str(worker),
    ]
    if coordinator is not None:
        command += ["--coordinator", coordinator]
    if namespace is not None:
        command += ["--namespace", namespace]
    return [*command, *extra]


def run_clients(
    emulator: Emulator,
    *,
    processes: int,
    generations: int,
    model: str = "qwen-image-plus",
    time_scale: float | None = None,
    coordinator: str | None = None,
    namespace: str | None = None,
    extra: Sequence[str] = (),
    timeout: float = 120.0,
) -> list[WorkerReport]:
    """
    Run `processes` client processes at once, each with `generations` generations of `model`.

    Args:
        emulator: Where they send; its key reaches them through ``$DASHSCOPE_API_KEY``.
        time_scale: The clients' time scale; the emulator's by default.
        coordinator: A Redis URL: every client shares its limits through a
            ``RedisCoordinator(coordinator, namespace=namespace)``; ``None``: each alone.
        extra: More worker flags (``--timeout``, ``--prompt``).
        timeout: Real seconds for the whole run, once every worker is ready.

    Returns:
        The workers' reports, by worker index.

    Raises:
        AssertionError: A worker did not get ready, exited with an error, or did not report in
            time (all are killed then); the message holds the end of its stderr.
    """
    scale = emulator.time_scale if time_scale is None else time_scale
    env = {**os.environ, "DASHSCOPE_API_KEY": emulator.api_key}
    env.pop("AIOQWENIMAGE_TIME_SCALE", None)
    with contextlib.ExitStack() as stack:
        workers: list[tuple[subprocess.Popen[str], IO[str]]] = []
        for index in range(processes):
            log: IO[str] = stack.enter_context(tempfile.TemporaryFile("w+", encoding="utf-8"))
            command = worker_command(
                emulator,
                worker=index,
                generations=generations,
                model=model,
                time_scale=scale,
                coordinator=coordinator,
                namespace=namespace,
                extra=extra,
            )
            process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                cwd=ROOT,
                env=env,
            )
            stack.callback(_end, process)
            workers.append((process, log))
        ready_by = time.monotonic() + READY_TIMEOUT
        for index, (process, stderr) in enumerate(workers):
            line = _read_line(process, ready_by)
            if json.loads(line or "{}").get("ready") != index:
                _fail(f"worker {index} never got ready ({line!r})", process, stderr)
        start = time.time() + START_AHEAD  # the same moment for all
        for process, _ in workers:
            assert process.stdin is not None
            process.stdin.write(f"go {start!r}\n")
            process.stdin.flush()  # communicate() closes it
        deadline = time.monotonic() + timeout
        reports = []
        for index, (process, stderr) in enumerate(workers):
            try:
                out, _ = process.communicate(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                _fail(f"worker {index} did not finish within {timeout:g}s", process, stderr)
            if process.returncode != 0:
                _fail(f"worker {index} exited {process.returncode}", process, stderr)
            reports.append(WorkerReport(**json.loads(out.strip().splitlines()[-1])))
        return reports


def _read_line(process: subprocess.Popen[str], deadline: float) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], max(deadline - time.monotonic(), 0))
    return process.stdout.readline() if ready else ""


def _fail(message: str, process: subprocess.Popen[str], stderr: IO[str]) -> NoReturn:
    _end(process)
    stderr.seek(0)
    msg = f"{message}; its stderr:\n{stderr.read()[-3000:]}"
    raise AssertionError(msg)


def _end(process: subprocess.Popen[str]) -> None:
    """Kill `process` if it still runs, and close our ends of its pipes."""
    if process.poll() is None:
        process.kill()
        process.wait(10)
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):  # a pipe the worker left with unread input
                stream.close()
