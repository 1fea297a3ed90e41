"""
One client process of a multi-process run (tests/processes.py starts several).

``python -m tests.client_worker --base-url URL --time-scale S --model M --count N --worker I
[--coordinator REDIS_URL [--namespace NS] [--lease-ttl SECONDS]] [--echo KIND]...``, with the key
in ``$DASHSCOPE_API_KEY`` (never on the command line). It opens an `aioqwenimage.Client`, prints
``{"ready": I}``, waits for ``go <epoch seconds>`` on stdin and then for that moment (so that
every worker starts at once), runs `count` generations of `model` at the same time (prompts
``"<prompt> w<I> #<n>"``), and prints one JSON line: the task ids it created (from its
``SUBMITTED`` events), an outcome per generation, its events counted by kind, and its counters
(`Client.stats`).

With ``--coordinator``, the client shares its limits through
``aioqwenimage.redis.RedisCoordinator(url, namespace=..., lease_ttl=...)``, imported only then.
Each ``--echo KIND`` (an `aioqwenimage.EventKind` value, e.g. ``submitted``) prints a JSON line
``{"event": KIND, "at": <epoch seconds>, "task_id": ...}`` the moment such an event happens, so
that the harness can act mid-run (kill this worker once it holds a slot, stop Redis...).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from typing import Any

import attrs

import aioqwenimage as q


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.client_worker")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--time-scale", type=float, required=True)
    parser.add_argument("--model", default="qwen-image-plus")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--worker", type=int, default=0)
    parser.add_argument("--prompt", default="a fox")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--coordinator", default=None, help="a Redis URL")
    parser.add_argument("--namespace", default=None)
    parser.add_argument("--lease-ttl", type=float, default=None, help="real seconds")
    parser.add_argument(
        "--echo",
        action="append",
        default=[],
        choices=[kind.value for kind in q.EventKind],
        help="print a line per event of this kind, as it happens",
    )
    parser.add_argument("--timeout", type=float, default=None, help="per generation, simulated s")
    return parser.parse_args(argv)


def build_coordinator(url: str | None, namespace: str | None, lease_ttl: float | None) -> Any:
    """The shared coordinator for `url`, or ``None`` (each client keeps its limits alone)."""
    if url is None:
        return None
    from aioqwenimage.redis import RedisCoordinator  # type: ignore[import-not-found,unused-ignore]

    if lease_ttl is None:
        return RedisCoordinator(url, namespace=namespace)
    return RedisCoordinator(url, namespace=namespace, lease_ttl=lease_ttl)


async def generate(client: q.Client, args: argparse.Namespace, index: int) -> dict[str, Any]:
    prompt = f"{args.prompt} w{args.worker} #{index}"
    try:
        result = await client.generate(prompt, model=args.model, timeout=args.timeout)
    except q.QwenImageError as error:
        task_id = getattr(error, "task_id", None)
        return {"prompt": prompt, "task_id": task_id, "status": type(error).__name__}
    return {"prompt": prompt, "task_id": result.task_id, "status": "SUCCEEDED"}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    created: list[str] = []
    events: Counter[str] = Counter()
    echo = set(args.echo)

    def on_event(event: q.TaskEvent) -> None:
        events[event.kind.value] += 1
        if event.kind is q.EventKind.SUBMITTED and event.task_id is not None:
            created.append(event.task_id)
        if event.kind.value in echo:
            line = {"event": event.kind.value, "at": event.at, "task_id": event.task_id}
            print(json.dumps(line), flush=True)

    coordinator = build_coordinator(args.coordinator, args.namespace, args.lease_ttl)
    options: dict[str, Any] = {} if coordinator is None else {"coordinator": coordinator}
    client = q.Client(
        base_url=args.base_url,
        time_scale=args.time_scale,
        seed=args.seed,
        event_hooks=[on_event],
        **options,
    )
    async with client:
        print(json.dumps({"ready": args.worker}), flush=True)
        signal = await asyncio.to_thread(sys.stdin.readline)
        if not signal.startswith("go "):
            msg = f"no start signal on stdin ({signal!r})"
            raise SystemExit(msg)
        # Every worker starts at the same wall-clock moment (a few tenths of a second ahead), not
        # when its signal arrives: the signals reach the workers one after another.
        await asyncio.sleep(max(float(signal.split()[1]) - time.time(), 0))
        started = time.monotonic()
        outcomes = await asyncio.gather(*(generate(client, args, i) for i in range(args.count)))
        elapsed = time.monotonic() - started
        stats = client.stats
    return {
        "worker": args.worker,
        "task_ids": created,
        "outcomes": outcomes,
        "throttled": stats.throttled,
        "events": dict(sorted(events.items())),
        # Everything but the slots held now (none, once the client closed).
        "stats": attrs.asdict(stats, filter=lambda a, _: a.name != "in_flight"),
        "elapsed": elapsed,
        "coordinated": coordinator is not None,
    }


def main(argv: list[str] | None = None) -> None:
    report = asyncio.run(run(parse(argv)))
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
