"""
``aioqwenimage batch FILE --out DIR``: every line of a prompt file to images, resumably.

Everything that can be checked is checked before the first submission, in this order: the
connection flags (a missing key is one line), every input line (all problems at once), the output
directory, and the journal's fingerprint (a journal for another batch is refused).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import attrs

from aioqwenimage._catalog import resolve
from aioqwenimage._cli._coordinator import COORDINATOR_VARIABLE
from aioqwenimage._cli._inputs import InputError, Loaded, load_items
from aioqwenimage._cli._journal import (
    Journal,
    JournalDamagedError,
    JournalError,
    JournalMismatchError,
    JournalWriteError,
)
from aioqwenimage._cli._messages import add_output_options, model_problem
from aioqwenimage._cli._notify import add_notify_options
from aioqwenimage._cli._options import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_STORAGE,
    EXIT_USAGE,
    Connection,
    add_connection_options,
    add_generation_options,
    check_output_dir,
    error,
    generation_defaults,
    note,
    resolve_connection,
)
from aioqwenimage._cli._recovery import earlier_work, recover, untrusted_journal, untrusted_message
from aioqwenimage._cli._runner import BatchOptions, BatchRunner
from aioqwenimage._cli._shard import WHOLE, Shard, parse_shard

__all__ = ["fingerprint", "register", "run"]

_DEFAULT_CONCURRENCY_FLOOR = 16


def register(subparsers: Any) -> None:
    """Add the ``batch`` subcommand to `subparsers`."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "batch",
        help="generate images for every line of a prompt file, resumably",
        description=(
            "Generate images for every item of FILE (.txt: a prompt a line; .jsonl: an object a "
            "line with 'prompt' and any generation parameter, optional 'id' and 'file'; .csv: "
            "the same as columns, with a header). Progress is journaled in DIR: run the same "
            "command again after a crash or Ctrl-C to resume without paying twice."
        ),
        epilog=(
            "exit status: 0 every item done, 1 some items failed or were not done, "
            "2 usage or input error, 3 the journal or the output directory cannot be used "
            "(the message says how to recover), 130 interrupted"
        ),
    )
    parser.add_argument("file", metavar="FILE", type=Path, help="the .txt, .jsonl or .csv input")
    parser.add_argument(
        "--out",
        "-o",
        metavar="DIR",
        type=Path,
        required=True,
        help="where images, manifest.jsonl and the journal go",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        metavar="N",
        help="items in progress at once (waiting for limits included); default: twice the "
        f"in-flight limit, at least {_DEFAULT_CONCURRENCY_FLOOR}",
    )
    parser.add_argument(
        "--skip-invalid",
        action="store_true",
        help="run the valid items even if some lines are invalid (they are reported and skipped)",
    )
    parser.add_argument(
        "--resend-uncertain",
        action="store_true",
        help="send again items whose earlier create may or may not have reached the service "
        "when reconciliation cannot tell (this may pay for an image twice)",
    )
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="send again items that failed in an earlier run (failed tasks are not billed)",
    )
    parser.add_argument(
        "--recover",
        action="store_true",
        help="when the journal is missing, empty or damaged but DIR shows earlier work: rebuild "
        "it from manifest.jsonl and the images, and reconcile the other items against the "
        "task list instead of paying for them again",
    )
    parser.add_argument(
        "--plain",
        action="store_true",
        help="plain log lines even on a terminal (the default when output is not a terminal)",
    )
    parser.add_argument("--client-seed", type=int, help=argparse.SUPPRESS)
    add_generation_options(parser, batch=True)
    add_connection_options(parser)
    _add_sharing_options(parser)
    add_notify_options(parser)
    add_output_options(parser)
    parser.set_defaults(run=run)


def _add_sharing_options(parser: argparse.ArgumentParser) -> None:
    """``--shard`` and ``--coordinator``: one input, several workers, one account."""
    group = parser.add_argument_group("several workers (one input, one account)")
    group.add_argument(
        "--shard",
        type=parse_shard,
        metavar="i/N",
        default=WHOLE,
        help="run only the i-th of N shares of FILE: the records whose position (from 0) "
        "leaves i-1 when divided by N. N workers given 1/N ... N/N split FILE without overlap; "
        "each keeps its own journal and manifest (journal.shard-i-of-N.sqlite), so they may "
        "share DIR, and running the same command again resumes that shard only",
    )
    group.add_argument(
        "--coordinator",
        metavar="URL",
        help="share the account's limits (submissions, tasks in flight, task queries) with "
        "every other process on the same key through this Redis (redis://HOST:PORT/DB, "
        "rediss://..., unix:///PATH); needs the redis extra: pip install 'aioqwenimage[redis]'; "
        f"default: ${COORDINATOR_VARIABLE}",
    )


def fingerprint(
    path: Path, loaded: Loaded, args: argparse.Namespace, target: str
) -> dict[str, Any]:
    """What makes a journal belong to one batch: the input's bytes, the options shaping items."""
    defaults = generation_defaults(args)
    options: dict[str, Any] = {
        "model": args.model,
        **{
            key: defaults.get(key)
            for key in ("size", "n", "seed", "negative_prompt", "prompt_extend", "watermark")
        },
        "target": target,
    }
    shard: Shard = getattr(args, "shard", WHOLE)
    if not shard.whole:  # absent otherwise: a journal written before --shard existed still fits
        options["shard"] = shard.label
    return {"input": {"path": str(path.resolve()), "sha256": loaded.sha256}, "options": options}


def run(args: argparse.Namespace) -> int:
    """Validate everything, open the journal, run the batch; the exit code."""
    connection = resolve_connection(args)
    if isinstance(connection, str):
        error(connection)
        return EXIT_USAGE
    if args.concurrency is not None and args.concurrency < 1:
        error("--concurrency must be at least 1")
        return EXIT_USAGE
    unknown, warning = model_problem(args.model)
    if unknown is not None:
        error(f"--model: {unknown}")
        return EXIT_USAGE
    if warning is not None:
        note(f"aioqwenimage: warning: {warning}")
    try:
        loaded = load_items(args.file, model=args.model, defaults=generation_defaults(args))
    except InputError as exc:
        error(str(exc))
        return EXIT_USAGE
    if loaded.problems:
        for problem in loaded.problems:
            note(problem)
        count = len(loaded.problems)
        lines = f"{count} invalid line{'s' if count > 1 else ''}"
        if not args.skip_invalid:
            error(f"{lines} in {args.file}; nothing was submitted (--skip-invalid runs the rest)")
            return EXIT_USAGE
        note(f"aioqwenimage: skipping {lines} (--skip-invalid)")
    if not loaded.items:
        error(f"no valid items in {args.file}")
        return EXIT_USAGE
    shard: Shard = args.shard
    if not shard.whole:
        # Every line is checked above, whichever shard it falls to, so that a bad line stops
        # every worker alike; from here on only this shard's items exist for this run.
        loaded = attrs.evolve(loaded, items=shard.select(loaded.items))
        if not loaded.items:
            note(f"aioqwenimage: shard {shard.label} of {args.file} holds no item: nothing to do")
            return EXIT_OK
    unwritable = check_output_dir(args.out)
    if unwritable is not None:
        error(unwritable)
        return EXIT_USAGE
    try:
        target = connection.target
    except ValueError as exc:
        error(str(exc))
        return EXIT_USAGE
    journal = _open_journal(args, loaded, fingerprint(args.file, loaded, args, target))
    if isinstance(journal, int):
        return journal
    options = BatchOptions(
        input_name=str(args.file) if shard.whole else f"{args.file} (shard {shard.label})",
        out_dir=args.out,
        concurrency=args.concurrency or default_concurrency(connection, loaded),
        resend_uncertain=args.resend_uncertain,
        retry_failed=args.retry_failed,
        plain=args.plain,
        quiet=args.quiet,
        seed=args.client_seed,
        manifest_name=shard.manifest_name,
    )
    try:
        return asyncio.run(BatchRunner(journal, connection, options).run())
    except KeyboardInterrupt:  # before the runner's own handler was installed: nothing was sent
        return EXIT_INTERRUPTED
    finally:
        journal.close()


def _open_journal(
    args: argparse.Namespace, loaded: Loaded, print_: dict[str, Any]
) -> Journal | int:
    """The batch's journal, rebuilt with ``--recover`` when untrusted; else the exit code."""
    out: Path = args.out
    shard: Shard = args.shard
    journal_name, manifest_name = shard.journal_name, shard.manifest_name
    untrusted = untrusted_journal(
        out, loaded.items, journal_name=journal_name, manifest_name=manifest_name
    )
    try:
        if untrusted is None:
            try:
                return Journal.open(out, fingerprint=print_, items=loaded.items, name=journal_name)
            except JournalDamagedError as exc:
                work = earlier_work(out, loaded.items, manifest_name=manifest_name)
                untrusted = untrusted_message(str(exc), out, work)
        if not args.recover:
            error(untrusted)
            return EXIT_STORAGE
        journal, restored = recover(
            out,
            fingerprint=print_,
            items=loaded.items,
            journal_name=journal_name,
            manifest_name=manifest_name,
        )
    except JournalMismatchError as exc:
        error(str(exc))
        return EXIT_USAGE
    except JournalWriteError as exc:
        error(f"{exc}. Nothing was sent; free some space or make it writable, then run again.")
        return EXIT_STORAGE
    except JournalError as exc:
        error(str(exc))
        return EXIT_USAGE
    note(f"aioqwenimage: {restored}")
    return journal


def default_concurrency(connection: Connection, loaded: Loaded) -> int:
    """Twice the largest in-flight limit among the batch's models, at least 16."""
    in_flight = connection.in_flight
    if in_flight is None:
        from aioqwenimage._config import resolve_region

        region = resolve_region(connection.region)
        limits = []
        for model in {item.model for item in loaded.items}:
            found = resolve(model)
            if found is not None:
                limits.append(found[0].default_limits(region).in_flight or 0)
        in_flight = max(limits, default=0)
    return max(_DEFAULT_CONCURRENCY_FLOOR, 2 * in_flight)
