"""
``aioqwenimage emulator``: serve the DashScope emulator on loopback until SIGINT or SIGTERM.

It prints one line a shell can ``eval``, so another process (a client under test, a benchmark)
can find it::

    DASHSCOPE_HTTP_BASE_URL=http://127.0.0.1:8765/api/v1 DASHSCOPE_API_KEY=sk-fake-aioqwenimage
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

    from aioqwenimage.testing import FakeDashScope

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    """Add the ``emulator`` subcommand to `subparsers`."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "emulator",
        help="serve a local DashScope emulator",
        description="Serve a faithful local DashScope (image generation) on loopback.",
    )
    parser.add_argument("--port", type=int, default=0, help="API port (default: a free one)")
    parser.add_argument(
        "--files-port", type=int, default=0, help="result-file port (default: a free one)"
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="real seconds per simulated second (default 1; 0.01 runs 100x faster)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for durations and faults")
    parser.add_argument("--api-key", default=None, help="the accepted API key")
    parser.add_argument(
        "--over-cap",
        choices=("queue", "reject"),
        default=None,
        help="creates beyond a model's in-flight cap: keep PENDING (default) or answer 429",
    )
    parser.add_argument("--no-limits", action="store_true", help="switch every limit off")
    parser.add_argument(
        "--region",
        choices=("singapore", "beijing", "virginia"),
        default="singapore",
        help="whose documented limits apply",
    )
    parser.add_argument(
        "--durations-by-prompt",
        action="store_true",
        help="derive each task's duration from (seed, model, prompt)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (loopback only)")
    parser.add_argument(
        "--force-host", action="store_true", help="allow a non-loopback --host (not advised)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM; 0 on a clean stop, 1 if the emulator cannot start."""
    from aioqwenimage.testing import DEFAULT_API_KEY, EmulatorLimits
    from aioqwenimage.testing._server import fake_from_options

    options: dict[str, Any] = {
        "api_key": args.api_key or DEFAULT_API_KEY,
        "host": args.host,
        "port": args.port,
        "files_port": args.files_port,
        "seed": args.seed,
        "durations_by_prompt": args.durations_by_prompt,
        "allow_remote": args.force_host,
        "limits": EmulatorLimits(region=args.region),
        "over_cap": args.over_cap,
        "no_limits": args.no_limits,
    }
    try:
        fake = fake_from_options(options, time_scale=args.time_scale)
    except ValueError as exc:
        print(f"aioqwenimage emulator: {exc}", file=sys.stderr)  # noqa: T201 - a CLI
        return 1
    try:
        asyncio.run(_serve(fake))
    except OSError as exc:
        print(f"aioqwenimage emulator: cannot start: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    return 0


async def _serve(fake: FakeDashScope) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with fake:
            print(  # noqa: T201 - the one line other processes read
                f"DASHSCOPE_HTTP_BASE_URL={fake.base_url} DASHSCOPE_API_KEY={fake.api_key}",
                flush=True,
            )
            await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(signum)
