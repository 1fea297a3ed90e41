"""
The ``aioqwenimage`` command.

Each subcommand lives in its own module and exposes ``register(subparsers)``, which adds its parser
and sets ``run`` (a callable taking the parsed namespace and returning the exit code):
``_generate`` (one prompt), ``_batch`` (a prompt file), ``_tasks`` (the account's tasks),
``_emulator`` (a local service). Shared by all: ``_options`` (connection flags, exit codes, the
client), ``_messages`` (errors, counts and durations in words; verbosity). Moments are written
by the package's one ISO formatter, ``_parsing.iso_time``.

A batch meets its modules in this order. Imports go one way, from ``_batch`` and ``_runner``
down to ``_ledger``, ``_journal`` and ``_database``: no module imports (or calls back) its caller.

1. ``_batch``: the flags, then every input line (``_inputs``), this worker's share of them
   (``_shard``, ``--shard i/N``: which items, which journal and manifest), the output directory,
   then the journal: refused when untrusted, or rebuilt with ``--recover`` (``_recovery``).
   ``--coordinator`` (``_coordinator``) reaches the client through ``_options``.
2. ``_journal``: the truth about every item, its transitions committed one by one;
   ``_records`` is its schema and row, ``_database`` the SQLite file (durability, errors).
3. ``_runner``: sequences the run; everything below returns to it what comes next.
4. ``_resume``: sorts the items by journal state: skip, re-attach, download, reconcile, submit.
5. ``_reconcile``: creates cut short by a crash, matched against the task list.
6. ``_submitting``: one create, journaled before it leaves; ``_stopping`` is the brake
   (Ctrl-C, a refusal for every item, a storage failure) it checks right before sending.
7. ``_following``: a task followed to its end; the registry of live tasks.
8. ``_saving``: the images downloaded, under the names ``_files`` gives them.
9. ``_ledger``: where every step writes an outcome: the journal, the tally, the log at once.
10. ``_progress`` (the live display), ``_manifest`` (``manifest.jsonl``, a view of the
    journal) and ``_summary`` (the table at the end).
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
