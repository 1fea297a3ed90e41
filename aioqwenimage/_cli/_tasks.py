"""
``aioqwenimage tasks list|show ID|cancel ID``: the account's async tasks (the service keeps 24 h).

``show`` queries the task once (``--wait`` follows it to the end, ``--out`` saves its images);
``cancel`` asks the service to cancel it, which works only while the task is ``PENDING``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import anyio

from aioqwenimage._cli._messages import add_output_options, describe_error
from aioqwenimage._cli._options import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    Connection,
    add_connection_options,
    connect,
    error,
    note,
    resolve_connection,
    say,
)
from aioqwenimage._errors import QwenImageError, TaskCanceledError, TaskError, TaskFailedError
from aioqwenimage._models import EventKind, TaskEvent, TaskInfo, TaskStatus
from aioqwenimage._parsing import iso_time

if TYPE_CHECKING:
    from aioqwenimage import Client, GenerationResult, TaskHandle

__all__ = ["parse_since", "register", "run"]

_SINCE: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_FIRST_POLL_TIMEOUT: Final = 60.0  # real seconds a `show` waits for its one query
_END_SLACK: Final = dt.timedelta(minutes=1)


def register(subparsers: Any) -> None:
    """Add the ``tasks`` subcommand (with ``list``, ``show`` and ``cancel``) to `subparsers`."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "tasks",
        help="list, show or cancel the account's tasks",
        description="List, show or cancel async tasks; the service keeps them for 24 hours.",
        epilog="exit status: 0 success, 1 not found / not cancelled / failed, 2 usage error",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="tasks of the last hours, newest first")
    listing.add_argument("--model", help="only this model's tasks")
    listing.add_argument(
        "--status",
        type=str.upper,
        choices=[status.value for status in TaskStatus],
        help="only tasks in this status",
    )
    listing.add_argument(
        "--since",
        default="24h",
        type=parse_since,
        help="how far back: 30m, 6h, 1d (at most 24h, the retention); default 24h",
    )
    listing.add_argument(
        "--limit", type=int, default=50, help="at most this many rows (default 50)"
    )
    listing.add_argument("--json", action="store_true", help="one JSON object a line")

    show = actions.add_parser("show", help="one task: status, prompts, URLs, timings")
    show.add_argument("task_id", metavar="ID")
    show.add_argument("--wait", action="store_true", help="follow the task until it ends")
    show.add_argument("--out", "-o", type=Path, metavar="DIR", help="save its images into DIR")
    show.add_argument("--json", action="store_true", help="print a JSON object")

    cancel = actions.add_parser("cancel", help="cancel a PENDING task")
    cancel.add_argument("task_id", metavar="ID")

    # Only the flags that change something for each action: a listing and `show --wait` query
    # (so the query rate and an emulator's time scale matter), `cancel` is one request. None
    # takes --emulator: an emulator started for one command has no tasks (see _NoEmulator).
    queries = ("queries_per_second", "time_scale")
    for sub, limits in ((listing, queries), (show, queries), (cancel, ("time_scale",))):
        add_connection_options(sub, limits=limits, emulator=False)
        add_output_options(sub)
        sub.set_defaults(run=run)


def parse_since(text: str) -> dt.timedelta:
    """``30m``, ``6h``, ``1d`` to a duration of at most 24 hours."""
    match = _SINCE.match(text)
    if match is None:
        msg = f"expected a duration such as 30m, 6h or 1d, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    seconds = float(match[1]) * _UNIT[match[2]]
    if not 0 < seconds <= _UNIT["d"]:
        msg = f"the service keeps tasks for 24 hours: {text!r} is out of range"
        raise argparse.ArgumentTypeError(msg)
    return dt.timedelta(seconds=seconds)


def run(args: argparse.Namespace) -> int:
    """Dispatch to the action; the exit code."""
    connection = resolve_connection(args)
    if isinstance(connection, str):
        error(connection)
        return EXIT_USAGE
    actions = {"list": _list, "show": _show, "cancel": _cancel}
    try:
        return asyncio.run(actions[args.action](args, connection))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


async def _list(args: argparse.Namespace, connection: Connection) -> int:
    status = TaskStatus(args.status) if args.status else None
    # The window's bounds have one-second resolution: end a little in the future, or the tasks of
    # the current second are left out; and the span may be at most 24 hours (§5.4).
    end = dt.datetime.now(tz=dt.timezone.utc) + _END_SLACK
    start = end - min(args.since + _END_SLACK, dt.timedelta(days=1))
    rows: list[TaskInfo] = []
    async with connect(connection) as client:
        try:
            listing = client.list_tasks(start=start, end=end, model=args.model, status=status)
            async for info in listing:
                rows.append(info)
                if len(rows) >= args.limit:
                    break
        except QwenImageError as exc:
            error(describe_error(exc))
            return EXIT_FAILED
    if args.json:
        for info in rows:
            say(json.dumps(_info_json(info)))
        return EXIT_OK
    if not rows:
        say("no tasks")
        return EXIT_OK
    header = ("TASK ID", "MODEL", "STATUS", "CREATED (UTC)", "ENDED (UTC)")
    table = [header] + [
        (
            info.task_id,
            info.model or "?",
            info.status.value,
            _when(info.created_at),
            _when(info.ended_at),
        )
        for info in rows
    ]
    widths = [max(len(row[column]) for row in table) for column in range(len(header))]
    for row in table:
        say("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return EXIT_OK


def _when(value: dt.datetime | None) -> str:
    return "-" if value is None else value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _info_json(info: TaskInfo) -> dict[str, Any]:
    return {
        "task_id": info.task_id,
        "model": info.model,
        "status": info.status.value,
        "created_at": info.created_at.isoformat() if info.created_at else None,
        "started_at": info.started_at.isoformat() if info.started_at else None,
        "ended_at": info.ended_at.isoformat() if info.ended_at else None,
        "region": info.region,
    }


async def _show(args: argparse.Namespace, connection: Connection) -> int:
    polled = anyio.Event()

    def on_event(event: TaskEvent) -> None:
        if event.task_id == args.task_id and event.kind in (EventKind.POLLED, EventKind.FINISHED):
            polled.set()

    async with connect(connection, event_hooks=[on_event]) as client:
        handle = client.attach(args.task_id)
        if args.wait or args.out is not None:
            await _settle(handle)
        else:
            # One query: the handle is polled at once; leaving closes the client, which stops
            # polling without cancelling anything remotely.
            with anyio.move_on_after(_FIRST_POLL_TIMEOUT):
                await polled.wait()
        return await _report(client, handle, args)


async def _settle(handle: TaskHandle) -> None:
    with contextlib.suppress(QwenImageError):  # reported from the handle afterwards
        await handle


async def _report(client: Client, handle: TaskHandle, args: argparse.Namespace) -> int:
    data: dict[str, Any] = {"task_id": args.task_id, "status": handle.status.value}
    result: GenerationResult | None = None
    code = EXIT_OK
    if handle.done():
        try:
            result = await handle
        except TaskError as exc:
            data["error"] = str(exc)
            if isinstance(exc, TaskFailedError):
                data["code"] = exc.code
            elif not isinstance(exc, TaskCanceledError):
                data["status"] = TaskStatus.UNKNOWN.value
            code = EXIT_FAILED
        except QwenImageError as exc:
            data["error"] = str(exc)
            code = EXIT_FAILED
    if result is not None:
        data.update(
            model=result.model or None,
            prompt=result.prompt,
            actual_prompts=[image.actual_prompt for image in result.images],
            urls=[image.url for image in result.images],
            submitted_at=iso_time(result.submitted_at),
            scheduled_at=iso_time(result.scheduled_at),
            finished_at=iso_time(result.finished_at),
        )
        if args.out is not None:
            try:
                paths = await client.save_images(result, args.out)
            except (QwenImageError, OSError) as exc:
                error(f"could not save the images: {exc}")
                return EXIT_FAILED
            data["files"] = [str(path) for path in paths]
    if args.json:
        say(json.dumps(data, ensure_ascii=False))
    else:
        width = max(len(key) for key in data)
        for key, value in data.items():
            for line in value if isinstance(value, list) else [value]:
                say(f"{key.ljust(width)}  {'-' if line is None else line}")
    return code


async def _cancel(args: argparse.Namespace, connection: Connection) -> int:
    async with connect(connection) as client:
        try:
            cancelled = await client.cancel(args.task_id)
        except QwenImageError as exc:
            error(describe_error(exc))
            return EXIT_FAILED
    if cancelled:
        say(f"cancelled {args.task_id}")
        return EXIT_OK
    note(
        f"not cancelled: {args.task_id} is not PENDING (running or finished tasks cannot be "
        "cancelled), or does not exist"
    )
    return EXIT_FAILED
