"""
Emulator throughput: task queries per second served with 5,000 tasks in flight.

The emulator runs in its own process (``aioqwenimage emulator --no-limits``), with durations
stretched (``--time-scale``) so every task stays PENDING/RUNNING for the whole run. This process
creates the tasks, then drives ``GET /tasks/{id}`` over a pool of keep-alive connections for a
bounded time and reports queries/s and latency percentiles as JSON.

Run from the repository root::

    python -m benchmarks.emulator_throughput [--tasks 5000] [--seconds 10] [--connections 32]

The load generator speaks HTTP/1.1 over raw asyncio streams rather than through a client library, so
the figure measures the emulator, not the load generator's own overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from urllib.parse import urlsplit

_CREATE = "/services/aigc/text2image/image-synthesis"
_MODEL = "wan2.2-t2i-flash"  # 5-15 simulated s; x --time-scale keeps them in flight


def start_emulator(time_scale: float) -> tuple[subprocess.Popen[str], str, str]:
    """Start ``aioqwenimage emulator`` and read the line it prints: (process, base URL, key)."""
    command = [
        sys.executable,
        "-m",
        "aioqwenimage",
        "emulator",
        "--no-limits",
        "--time-scale",
        str(time_scale),
        "--seed",
        "1",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 60)
    line = process.stdout.readline() if ready else ""
    fields = dict(part.split("=", 1) for part in line.split())
    if "DASHSCOPE_HTTP_BASE_URL" not in fields:
        process.kill()
        process.wait()
        msg = f"emulator did not start: {line!r}"
        raise RuntimeError(msg)
    return process, fields["DASHSCOPE_HTTP_BASE_URL"], fields["DASHSCOPE_API_KEY"]


class Connection:
    """One keep-alive HTTP/1.1 connection: send a request, read one response."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await self.reader.readexactly(length) if length else b""
        return status, body

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


def _request(method: str, host: str, path: str, key: str, body: bytes = b"") -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {host}",
        f"Authorization: Bearer {key}",
        "Connection: keep-alive",
    ]
    if method == "POST":
        lines += [
            "X-DashScope-Async: enable",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
        ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclasses.dataclass(frozen=True)
class Target:
    """Where the emulator listens: host, port, API path prefix, and the key."""

    host: str
    port: int
    prefix: str
    key: str


async def create_tasks(target: Target, count: int, connections: int) -> list[str]:
    """Create `count` tasks over `connections` connections; their ids."""
    host, port = target.host, target.port
    body = json.dumps(
        {"model": _MODEL, "input": {"prompt": "a lighthouse at dusk"}, "parameters": {"n": 1}}
    ).encode()
    raw = _request("POST", host, target.prefix + _CREATE, target.key, body)
    ids: list[str] = []

    async def worker(share: int) -> None:
        conn = await Connection.open(host, port)
        try:
            for _ in range(share):
                status, payload = await conn.request(raw)
                if status != 200:
                    msg = f"create failed: {status} {payload[:200]!r}"
                    raise RuntimeError(msg)
                ids.append(json.loads(payload)["output"]["task_id"])
        finally:
            await conn.close()

    shares = [count // connections + (i < count % connections) for i in range(connections)]
    await asyncio.gather(*(worker(share) for share in shares if share))
    return ids


async def drive_queries(
    target: Target, ids: list[str], seconds: float, connections: int
) -> tuple[list[float], int, dict[str, int]]:
    """Query random tasks for `seconds`; (latencies in s, errors, statuses seen)."""
    host, port = target.host, target.port
    requests = [
        _request("GET", host, f"{target.prefix}/tasks/{task_id}", target.key) for task_id in ids
    ]
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors = 0
    deadline = time.perf_counter() + seconds
    rng = random.Random(7)

    async def worker() -> None:
        nonlocal errors
        conn = await Connection.open(host, port)
        try:
            while (start := time.perf_counter()) < deadline:
                status, body = await conn.request(rng.choice(requests))
                latencies.append(time.perf_counter() - start)
                if status != 200:
                    errors += 1
                    continue
                # Sniff the status cheaply: JSON decoding would load the generator, not the server.
                marker = body.find(b'"task_status":"')
                state = body[marker + 15 : body.find(b'"', marker + 15)].decode()
                statuses[state] = statuses.get(state, 0) + 1
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return latencies, errors, statuses


def _percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, int(fraction * len(sorted_values)))
    return sorted_values[index]


async def _stats(host: str, port: int) -> dict[str, object]:
    conn = await Connection.open(host, port)
    try:
        raw = f"GET /__emulator__/stats HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
        _, body = await conn.request(raw)
    finally:
        await conn.close()
    data: dict[str, object] = json.loads(body)
    return data


async def run(args: argparse.Namespace) -> dict[str, object]:
    """Start the emulator, load it, stop it; the summary."""
    process, base_url, key = start_emulator(args.time_scale)
    try:
        parts = urlsplit(base_url)
        target = Target(parts.hostname or "127.0.0.1", parts.port or 80, parts.path, key)
        started = time.perf_counter()
        ids = await create_tasks(target, args.tasks, args.connections)
        create_seconds = time.perf_counter() - started
        latencies, errors, statuses = await drive_queries(
            target, ids, args.seconds, args.connections
        )
        server = await _stats(target.host, target.port)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    latencies.sort()
    terminal = sum(n for s, n in statuses.items() if s not in {"PENDING", "RUNNING"})
    return {
        "benchmark": "emulator_throughput",
        "cpus": os.cpu_count(),
        "tasks_created": len(ids),
        "create_per_second": round(len(ids) / create_seconds, 1),
        "in_flight_at_end": server["in_flight"],
        "peak_in_flight": server["peak_in_flight"],
        "connections": args.connections,
        "seconds": args.seconds,
        "queries": len(latencies),
        "queries_per_second": round(len(latencies) / args.seconds, 1),
        "p50_ms": round(_percentile(latencies, 0.50) * 1000, 3),
        "p99_ms": round(_percentile(latencies, 0.99) * 1000, 3),
        "errors": errors,
        "answers_terminal": terminal,
        "server_connections": server["connections"],
        "server_queries_answered": server["requests"]["query"]["200"],  # type: ignore[index]
    }


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run, print the JSON summary; exit 1 below `--target` queries/s."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--time-scale", type=float, default=20.0)
    parser.add_argument("--target", type=float, default=2000.0)
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= 120 or not 0 < args.tasks <= 100_000:
        parser.error("--seconds must be in (0, 120] and --tasks in (0, 100000]")
    # Bounded in time whatever happens: creating, the load itself, and a margin.
    summary = asyncio.run(asyncio.wait_for(run(args), timeout=args.seconds + 120))
    print(json.dumps(summary, indent=2))
    return 0 if summary["queries_per_second"] >= args.target else 1  # type: ignore[operator]


if __name__ == "__main__":
    sys.exit(main())
