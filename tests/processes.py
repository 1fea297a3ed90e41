"""
Many client processes against one emulator process: what one account's processes do together.

`running_emulator` serves the standalone emulator in a process of its own (tests/emulator_process),
`run_clients` starts `processes` workers (``python -m tests.client_worker``), each one
`aioqwenimage.Client` running `generations` generations at once, releases them together, and
returns each worker's report; `Emulator.stats` reads the emulator's counters over its admin
endpoint. `started_clients` does the same but hands the running workers over, to act mid-run:
wait for an event one of them echoes, SIGKILL it, then collect the others. Every wait is bounded:
a worker that has not reported by the deadline is killed and the run fails with the end of its
stderr.

    with running_emulator(time_scale=0.01) as emulator:
        reports = run_clients(emulator, processes=4, generations=3, time_scale=0.01)
        stats = emulator.stats()

    with started_clients(emulator, processes=4, generations=6, extra=["--echo", "submitted"]) as r:
        r.wait_for("submitted", workers=[0])
        r.kill(0)
        survivors = r.collect()
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

import attrs

from tests.emulator_process import Emulator, emulator_process

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT = 60.0
"""Real seconds for every worker to start Python, import the package and open its client."""
START_AHEAD = 0.2
"""Real seconds between the start signal and the moment every worker starts generating."""


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
        events: Its client's events, counted by kind (``"submitted"``, ``"coordination_lost"``...).
        stats: Its other client counters (``requests``, ``polls``, ``retries``...).
        elapsed: Real seconds from the start signal to its last outcome.
        coordinated: Whether its client had a coordinator.
    """

    worker: int
    task_ids: list[str]
    outcomes: list[dict[str, Any]]
    throttled: int
    events: dict[str, int]
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
        extra: More worker flags (``--timeout``, ``--prompt``, ``--lease-ttl``, ``--echo``).
        timeout: Real seconds for the whole run, once every worker is ready.

    Returns:
        The workers' reports, by worker index.

    Raises:
        AssertionError: A worker did not get ready, exited with an error, or did not report in
            time (all are killed then); the message holds the end of its stderr.
    """
    with started_clients(
        emulator,
        processes=processes,
        generations=generations,
        model=model,
        time_scale=time_scale,
        coordinator=coordinator,
        namespace=namespace,
        extra=extra,
    ) as clients:
        return clients.collect(timeout=timeout)


@contextlib.contextmanager
def started_clients(
    emulator: Emulator,
    *,
    processes: int,
    generations: int,
    model: str = "qwen-image-plus",
    time_scale: float | None = None,
    coordinator: str | None = None,
    namespace: str | None = None,
    extra: Sequence[str] = (),
) -> Iterator[Clients]:
    """
    Start `processes` client processes, release them together, and yield them running.

    The arguments are `run_clients`'s. Inside the block, `Clients.wait_for` watches the lines
    they echo (``--echo KIND``), `Clients.kill` ends one, `Clients.collect` gathers the reports
    of the others; on leaving, every worker still running is killed.

    Raises:
        AssertionError: A worker did not get ready (all are killed then), with its stderr.
    """
    scale = emulator.time_scale if time_scale is None else time_scale
    env = {**os.environ, "DASHSCOPE_API_KEY": emulator.api_key}
    env.pop("AIOQWENIMAGE_TIME_SCALE", None)
    lines: queue.Queue[tuple[int, str | None]] = queue.Queue()
    with contextlib.ExitStack() as stack:
        workers: list[_Worker] = []
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
            worker = _Worker(index, process, log, lines)
            stack.callback(worker.end)
            workers.append(worker)
        clients = Clients(workers, lines)
        clients.wait_ready(time.monotonic() + READY_TIMEOUT)
        start = time.time() + START_AHEAD  # the same moment for all
        for worker in workers:
            assert worker.process.stdin is not None
            worker.process.stdin.write(f"go {start!r}\n")
            worker.process.stdin.flush()
            worker.process.stdin.close()  # nothing more to say
        yield clients


class Clients:
    """
    Worker processes running (see `started_clients`): what each echoed, and their ends.

    Attributes:
        echoed: Per worker, every event line it printed so far (``event``, ``at``,
            ``task_id``), in order; `wait_for` and `collect` read them in.
        killed: The workers `kill` ended.
    """

    def __init__(self, workers: list[_Worker], lines: queue.Queue[tuple[int, str | None]]) -> None:
        self._workers = workers
        self._lines = lines
        self._finals: dict[int, str] = {}
        self._closed: set[int] = set()  # workers whose stdout reached its end
        self.echoed: dict[int, list[dict[str, Any]]] = {w.index: [] for w in workers}
        self.killed: set[int] = set()

    def pid(self, index: int) -> int:
        """The process id of worker `index`."""
        return self._workers[index].process.pid

    def _take(self, deadline: float) -> tuple[int, dict[str, Any] | None] | None:
        """
        The next line of any worker, filed where it belongs, before `deadline` (else ``None``).

        Returns:
            The worker and the line's JSON (``None`` at the end of its stdout).
        """
        try:
            index, line = self._lines.get(timeout=max(deadline - time.monotonic(), 0.001))
        except queue.Empty:
            return None
        if line is None:
            self._closed.add(index)
            return index, None
        data = json.loads(line)
        if "event" in data:
            self.echoed[index].append(data)
        elif "ready" not in data:
            self._finals[index] = line
        return index, data

    def wait_ready(self, deadline: float) -> None:
        """Each worker printed ``{"ready": <index>}``; else all are killed and the run fails."""
        waiting = {w.index for w in self._workers}
        while waiting:
            taken = self._take(deadline)
            if taken is None or taken[1] is None:
                index = min(waiting) if taken is None else taken[0]
                why = "in time" if taken is None else "(it exited)"
                self._fail(index, f"worker {index} never got ready {why}")
            index, data = taken
            assert data is not None
            if data.get("ready") != index:
                self._fail(index, f"worker {index} never got ready ({data!r})")
            waiting.discard(index)

    def wait_for(
        self,
        kind: str,
        *,
        workers: Iterable[int] | None = None,
        count: int = 1,
        after: float = 0.0,
        timeout: float = 30.0,
    ) -> list[dict[str, Any]]:
        """
        Wait until `workers` (all by default) have echoed `count` events of `kind` together,
        each at or after `after` (epoch seconds).

        Returns:
            Those events, each with its ``worker``.

        Raises:
            AssertionError: Not within `timeout` real seconds (every worker is killed then).
        """
        chosen = {w.index for w in self._workers} if workers is None else set(workers)
        deadline = time.monotonic() + timeout

        def found() -> list[dict[str, Any]]:
            return [
                {**event, "worker": index}
                for index in sorted(chosen)
                for event in self.echoed[index]
                if event["event"] == kind and event["at"] >= after
            ]

        while len(found()) < count:
            if chosen <= self._closed:
                break  # they have all ended: nothing more will come
            if self._take(deadline) is None:
                break
        events = found()
        if len(events) < count:
            self._fail(
                min(chosen),
                f"{len(events)} of {count} {kind!r} events from workers {sorted(chosen)} "
                f"within {timeout:g}s (echoed: {self.echoed})",
            )
        return events[:count]

    def kill(self, index: int) -> float:
        """
        SIGKILL worker `index` and wait for its end.

        Returns:
            When the signal was sent (epoch seconds).
        """
        worker = self._workers[index]
        sent = time.time()
        worker.process.send_signal(signal.SIGKILL)
        worker.process.wait(10)
        self.killed.add(index)
        return sent

    def collect(
        self, workers: Iterable[int] | None = None, *, timeout: float = 120.0
    ) -> list[WorkerReport]:
        """
        Wait for `workers` (by default every one not killed) to finish; their reports.

        Raises:
            AssertionError: One did not finish within `timeout` real seconds, exited with an
                error or printed no report (every worker is killed then), with its stderr.
        """
        chosen = sorted(
            {w.index for w in self._workers} - self.killed if workers is None else set(workers)
        )
        deadline = time.monotonic() + timeout
        while not set(chosen) <= self._closed:
            if self._take(deadline) is None:
                index = min(set(chosen) - self._closed)
                self._fail(index, f"worker {index} did not finish within {timeout:g}s")
        reports = []
        for index in chosen:
            process = self._workers[index].process
            try:
                process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                self._fail(index, f"worker {index} did not exit within {timeout:g}s")
            if process.returncode != 0:
                self._fail(index, f"worker {index} exited {process.returncode}")
            if index not in self._finals:
                self._fail(index, f"worker {index} printed no report")
            reports.append(WorkerReport(**json.loads(self._finals[index])))
        return reports

    def _fail(self, index: int, message: str) -> NoReturn:
        for worker in self._workers:
            worker.end()
        log = self._workers[index].stderr
        log.seek(0)
        msg = f"{message}; its stderr:\n{log.read()[-3000:]}"
        raise AssertionError(msg)


class _Worker:
    """One worker process, its stderr file, and a thread passing its stdout lines on."""

    def __init__(
        self,
        index: int,
        process: subprocess.Popen[str],
        stderr: IO[str],
        lines: queue.Queue[tuple[int, str | None]],
    ) -> None:
        self.index = index
        self.process = process
        self.stderr = stderr
        # A thread, not select(): a buffered reader may hold several lines that select cannot see.
        self._reader = threading.Thread(target=self._read, args=(lines,), daemon=True)
        self._reader.start()

    def _read(self, lines: queue.Queue[tuple[int, str | None]]) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        with contextlib.suppress(OSError, ValueError):  # closed by `end`
            for line in stdout:
                if line.strip():
                    lines.put((self.index, line))
        lines.put((self.index, None))

    def end(self) -> None:
        """Kill the process if it still runs, and close our ends of its pipes."""
        process = self.process
        if process.poll() is None:
            process.kill()
            process.wait(10)
        self._reader.join(10)  # the pipe's end came with the process's
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):  # a pipe the worker left with unread input
                    stream.close()
