"""
The ``aioqwenimage`` command.

Each subcommand lives in its own module and exposes ``register(subparsers)``, which adds its parser
and sets ``run`` (a callable taking the parsed namespace and returning the exit code).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from aioqwenimage._cli import _batch, _emulator, _generate, _tasks
from aioqwenimage._cli._messages import configure_output

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main"]

_COMMANDS = (_generate, _batch, _tasks, _emulator)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    from aioqwenimage import __version__

    parser = argparse.ArgumentParser(
        prog="aioqwenimage",
        description="Generate images with DashScope (Qwen-Image, Wan), or serve a local emulator.",
        epilog="docs: https://github.com/aioqwenimage/aioqwenimage/blob/main/docs/cli.md",
    )
    parser.add_argument("--version", action="version", version=f"aioqwenimage {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in _COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code (2 for usage errors)."""
    args = build_parser().parse_args(argv)
    configure_output(getattr(args, "verbose", 0), quiet=getattr(args, "quiet", False))
    code: int = args.run(args)
    return code


if __name__ == "__main__":  # pragma: no cover - exercised through the console script
    sys.exit(main())
