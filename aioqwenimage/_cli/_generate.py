"""
``aioqwenimage generate PROMPT [--out DIR]``: one generation, its images saved, paths printed.

Paths go to stdout, one a line (or a JSON object with ``--json``), and everything else to
stderr, so ``aioqwenimage generate ... | xargs open`` works. A real generation takes 15-30 s, so
while it waits the command shows the task's status and the time since it was sent (a spinner on
a terminal, a line per change otherwise). Ctrl-C cancels the task remotely when it is still
pending (the client does it, shielded) and exits 130.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

import anyio

from aioqwenimage._cli._messages import (
    add_output_options,
    describe_error,
    format_duration,
    model_problem,
)
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
from aioqwenimage._cli._progress import is_terminal
from aioqwenimage._errors import InvalidRequestError, QwenImageError
from aioqwenimage._models import EventKind, TaskEvent
from aioqwenimage._requests import prepare

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    from rich.status import Status

    from aioqwenimage import GenerationResult

_TICK: Final = 0.25
_PLAIN_EVERY: Final = 15.0  # seconds between "still waiting" lines when not on a terminal

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
        "--out",
        "-o",
        metavar="DIR",
        type=Path,
        default=Path(),
        help="where to save the images; default: the current directory",
    )
    parser.add_argument(
        "--json", action="store_true", help="print a JSON object (task, files, prompts, timings)"
    )
    add_generation_options(parser, batch=False)
    add_connection_options(parser)
    add_output_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Check everything, then generate; the exit code."""
    connection = resolve_connection(args)
    if isinstance(connection, str):
        error(connection)
        return EXIT_USAGE
    params = generation_defaults(args)
    problem, warning = model_problem(args.model)
    if problem is not None:
        error(problem)
        return EXIT_USAGE
    if warning is not None:
        _note(f"warning: {warning}")
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
    status = WaitStatus(args.model, quiet=args.quiet)
    problem: QwenImageError | None = None
    async with connect(connection, models=[args.model], event_hooks=[status.on_event]) as client:
        async with anyio.create_task_group() as tg:
            tg.start_soon(status.tick)
            try:
                handle = await client.submit(
                    args.prompt, model=args.model, on_sending=status.sending, **params
                )
                status.started(handle.task_id)
                result = await handle
            except QwenImageError as exc:  # caught here, or the task group would wrap it
                problem = exc
            finally:
                tg.cancel_scope.cancel()
                status.close()
        if problem is None:
            try:
                paths = await client.save_images(result, args.out)
            except QwenImageError as exc:
                problem = exc
    if problem is not None:
        error(describe_error(problem))
        return EXIT_FAILED
    if args.json:
        say(json.dumps(_as_json(result, paths), ensure_ascii=False))
    else:
        for path in paths:
            say(path)
    for failure in result.failures:
        _note(f"image {failure.index} failed: {failure.code}: {failure.message}")
    return EXIT_OK if not result.failures else EXIT_FAILED


class WaitStatus:
    """
    The task's status and the time since it was sent, while ``generate`` waits for it.

    On a terminal (with rich): a spinner line, updated four times a second and cleared at the
    end. Otherwise: a line at every change of status and every 15 seconds without one.
    """

    def __init__(
        self,
        model: str,
        *,
        quiet: bool = False,
        stream: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        every: float = _PLAIN_EVERY,
    ) -> None:
        self._model = model
        self._quiet = quiet
        self._stream = stream if stream is not None else sys.stderr
        self._clock = clock
        self._every = every
        self._since = clock()
        self._what = "request"
        self.status = "sending"
        self._shown: tuple[str, float] | None = None
        self._spinner: Status | None = None
        if not quiet and is_terminal(self._stream):
            with contextlib.suppress(ImportError):  # without the `cli` extra: plain lines
                from rich.console import Console
                from rich.status import Status

                console = Console(file=self._stream)
                self._spinner = Status(self.line(), console=console, spinner="dots")
                self._spinner.start()

    def line(self) -> str:
        """``task 1a2b... (qwen-image-plus): RUNNING, 12s elapsed``."""
        elapsed = format_duration(self._clock() - self._since)
        return f"{self._what} ({self._model}): {self.status}, {elapsed} elapsed"

    async def sending(self) -> None:
        """The create is about to leave: the time shown counts from now."""
        self._since = self._clock()

    def started(self, task_id: str | None) -> None:
        """The create answered: a task to wait for, or a synchronous call under way."""
        self._what = f"task {task_id}" if task_id else "synchronous call"
        if self.status == "sending":
            self.status = "PENDING" if task_id else "running"
        self.show()

    def on_event(self, event: TaskEvent) -> None:
        """A client event: the status as the last poll saw it."""
        polled = (EventKind.POLLED, EventKind.RUNNING, EventKind.FINISHED)
        if event.kind in polled and event.status is not None:
            self.status = event.status.value
            self.show()

    async def tick(self) -> None:
        """Keep the elapsed time moving."""
        while True:
            await anyio.sleep(_TICK)
            self.show()

    def show(self) -> None:
        """Update the spinner, or print a line if the status changed or it is time to."""
        if self._quiet:
            return
        if self._spinner is not None:
            self._spinner.update(self.line())
            return
        if self._what == "request":
            return  # nothing to say before the create answers
        now = self._clock()
        changed = self._shown is None or self._shown[0] != self.status
        if changed or now - self._shown[1] >= self._every:  # type: ignore[index]
            self._shown = (self.status, now)
            self._write(self.line())

    def close(self) -> None:
        """Stop the spinner (the terminal is left clean) and say how it ended."""
        if self._spinner is not None:
            self._spinner.stop()
            self._spinner = None
            if not self._quiet:
                self._write(self.line())
            return
        self.show()

    def _write(self, line: str) -> None:
        self._stream.write(f"aioqwenimage: {line}\n")
        self._stream.flush()


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
