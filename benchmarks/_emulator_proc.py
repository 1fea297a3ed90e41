"""
The emulator in its own process, configured from JSON, with a small control server beside it.

Run as ``python -m benchmarks._emulator_proc CONFIG_JSON``. It prints one JSON line
(``base_url``, ``api_key``, ``control_url``) and serves until SIGTERM or SIGINT.

The control server listens on its own port, so the runner's own requests never count as the client's
connections or requests: ``GET /stats`` answers the emulator's stats (per-task report included) and
``POST /reset`` forgets every task and zeroes the counters between client variants;
``POST /notify`` sets (or, with ``null``, removes) the target of task-completion events. When the
emulator's stats carry no ``timeline`` yet, a sampler here builds one of the same shape
(``[bucket_start, endpoint, status, count]`` rows, 0.1 s buckets) from the live request counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import signal
import sys
import time
from typing import Any, Final

from aiohttp import web

from aioqwenimage.testing import (
    EmulatorLimits,
    FakeDashScope,
    ModelQuota,
    NotificationTarget,
    Stats,
)

BUCKET: Final = 0.1


class Sampler:
    """A timeline of answers per 0.1 s bucket, by endpoint and status, from `Stats.requests`."""

    def __init__(self, stats: Stats) -> None:
        self._stats = stats
        self.rows: list[list[Any]] = []
        self._last: dict[tuple[str, int], int] = {}

    def reset(self) -> None:
        """Forget the rows; the counters were zeroed too."""
        self.rows = []
        self._last = {}

    def sample(self, bucket: float) -> None:
        """Record what was answered since the previous sample as bucket `bucket`."""
        current = {
            (endpoint, status): n
            for endpoint, counts in self._stats.requests.items()
            for status, n in counts.items()
        }
        for key, n in current.items():
            diff = n - self._last.get(key, 0)
            if diff > 0:
                self.rows.append([round(bucket, 1), key[0], key[1], diff])
        self._last = current

    async def run(self) -> None:
        """Sample at every 0.1 s boundary until cancelled."""
        bucket = math.floor(time.time() / BUCKET) * BUCKET
        while True:
            boundary = bucket + BUCKET
            await asyncio.sleep(max(0.0, boundary - time.time()))
            self.sample(bucket)
            bucket = boundary


def build(config: dict[str, Any]) -> FakeDashScope:
    """The emulator `config` describes (see `Workload.emulator_config`)."""
    models = {
        name: ModelQuota(
            submits=quota["submits"],
            period=quota["period"],
            in_flight=quota["in_flight"],
            over_cap=quota["over_cap"],
        )
        for name, quota in config["models"].items()
    }
    limits = EmulatorLimits(
        task_queries_per_second=config["task_queries_per_second"], models=models
    )
    return FakeDashScope(
        time_scale=config["time_scale"],
        seed=config["seed"],
        durations_by_prompt=True,
        durations={model: tuple(pair) for model, pair in config["durations"].items()},
        limits=limits,
    )


async def serve(config: dict[str, Any]) -> None:
    """Serve the emulator and its control server until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    fake = build(config)
    async with fake:
        sampler = Sampler(fake.stats)

        async def stats(_request: web.Request) -> web.Response:
            data = fake.stats.to_dict()
            if "timeline" in data:
                data["timeline_source"] = "emulator"
            else:
                sampler.sample(math.floor(time.time() / BUCKET) * BUCKET)
                data["timeline"] = sampler.rows
                data["timeline_source"] = "sampler"
            return web.json_response(data)

        async def reset(_request: web.Request) -> web.Response:
            fake.reset()
            sampler.reset()
            return web.json_response({"reset": True})

        async def notify(request: web.Request) -> web.Response:
            target = await request.json()
            fake.notify(
                None
                if target is None
                else NotificationTarget(
                    url=target["url"],
                    token=target["token"],
                    latency=tuple(target["latency"]),
                    duplicate_rate=target["duplicate_rate"],
                    loss_rate=target["loss_rate"],
                )
            )
            return web.json_response({"notify": target is not None})

        app = web.Application()
        app.router.add_get("/stats", stats)
        app.router.add_post("/reset", reset)
        app.router.add_post("/notify", notify)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        task = asyncio.create_task(sampler.run())
        print(
            json.dumps(
                {
                    "base_url": fake.base_url,
                    "api_key": fake.api_key,
                    "control_url": f"http://127.0.0.1:{port}",
                }
            ),
            flush=True,
        )
        try:
            await stop.wait()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await runner.cleanup()


def main() -> int:
    """Entry point: the configuration is the first argument, as JSON."""
    asyncio.run(serve(json.loads(sys.argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
