"""
``aioqwenimage generate PROMPT --out DIR``: one generation, its images saved, their paths printed.

Paths go to stdout, one a line (or a JSON object with ``--json``), and everything else to
stderr, so ``aioqwenimage generate ... | xargs open`` works. Ctrl-C cancels the task remotely when
it is still pending (the client does it, shielded) and exits 130.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aioqwenimage._cli._options import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    Connection,
    add_connection_options,
    add_generation_options,
    check_output_dir,
    connect,
    error,
    generation_defaults,
    note,
    resolve_connection,
    say,
)
from aioqwenimage._errors import InvalidRequestError, QwenImageError
from aioqwenimage._requests import prepare

if TYPE_CHECKING:
    import argparse

    from aioqwenimage import GenerationResult

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    """Add the ``generate`` subcommand to `subparsers`."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "generate",
        help="generate images for one prompt and save them",
        description="Generate images for PROMPT, save them into DIR and print their paths.",
        epilog="exit status: 0 done, 1 the generation failed, 2 usage error, 130 interrupted",
    )
    parser.add_argument("prompt", metavar="PROMPT", help="what to draw")
    parser.add_argument(
        "--out", "-o", metavar="DIR", type=Path, required=True, help="where to save the images"
    )
    parser.add_argument(
        "--json", action="store_true", help="print a JSON object (task, files, prompts, timings)"
    )
    add_generation_options(parser, batch=False)
    add_connection_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Check everything, then generate; the exit code."""
    connection = resolve_connection(args)
    if isinstance(connection, str):
        error(connection)
        return EXIT_USAGE
    params = generation_defaults(args)
    try:
        prepare(args.prompt, model=args.model, **params)
    except InvalidRequestError as exc:
        error(exc.message)
        return EXIT_USAGE
    problem = check_output_dir(args.out)
    if problem is not None:
        error(problem)
        return EXIT_USAGE
    try:
        return asyncio.run(_generate(args, connection, params))
    except KeyboardInterrupt:
        note("aioqwenimage: interrupted")
        return EXIT_INTERRUPTED


async def _generate(
    args: argparse.Namespace, connection: Connection, params: dict[str, Any]
) -> int:
    async with connect(connection, models=[args.model]) as client:
        try:
            handle = await client.submit(args.prompt, model=args.model, **params)
            what = f"task {handle.task_id}" if handle.task_id else "synchronous call"
            _note(f"{what} started ({args.model}); waiting for it")
            result = await handle
            paths = await client.save_images(result, args.out)
        except QwenImageError as exc:
            error(f"{type(exc).__name__}: {exc}")
            return EXIT_FAILED
    if args.json:
        say(json.dumps(_as_json(result, paths), ensure_ascii=False))
    else:
        for path in paths:
            say(path)
    for failure in result.failures:
        _note(f"image {failure.index} failed: {failure.code}: {failure.message}")
    return EXIT_OK if not result.failures else EXIT_FAILED


def _note(line: str) -> None:
    note(f"aioqwenimage: {line}")


def _as_json(result: GenerationResult, paths: list[Path]) -> dict[str, Any]:
    def iso(value: Any) -> str | None:
        return None if value is None else value.isoformat()

    return {
        "task_id": result.task_id,
        "request_id": result.request_id,
        "model": result.model,
        "prompt": result.prompt,
        "files": [str(path) for path in paths],
        "actual_prompts": [image.actual_prompt for image in result.images],
        "urls": [image.url for image in result.images],
        "failures": [
            {"index": f.index, "code": f.code, "message": f.message} for f in result.failures
        ],
        "submitted_at": iso(result.submitted_at),
        "scheduled_at": iso(result.scheduled_at),
        "finished_at": iso(result.finished_at),
        "usage": dict(result.usage),
    }
