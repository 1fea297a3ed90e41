"""
``manifest.jsonl``: one JSON object per item, for people and scripts, derived from the journal.

The journal is the truth; the manifest is a view of it, rewritten whole (and atomically: a
temporary file renamed over the old one) whenever the batch stops, and now and then while it
runs. So it always has exactly one line per item, whatever happened to earlier runs.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any, Final

from aioqwenimage._cli._journal import Row, State
from aioqwenimage._parsing import iso_time

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

__all__ = ["MANIFEST_NAME", "entry", "outcome", "write_manifest"]

MANIFEST_NAME: Final = "manifest.jsonl"

_OUTCOMES: Final = {
    State.PENDING: "pending",
    State.SENDING: "uncertain",
    State.CREATED: "running",
    State.RUNNING: "running",
    State.SUCCEEDED: "succeeded",
    State.FAILED: "failed",
    State.CANCELED: "canceled",
    State.EXPIRED: "expired",
    State.DOWNLOADED: "done",
    State.DONE: "done",
}


def outcome(state: State) -> str:
    """An item's state as the manifest and the summary name it."""
    return _OUTCOMES[state]


def entry(row: Row) -> dict[str, Any]:
    """The manifest line of one item."""
    actual = next((prompt for prompt in row.actual_prompts if prompt), None)
    seconds = None
    if row.sending_at is not None and row.downloaded_at is not None:
        seconds = round(row.downloaded_at - row.sending_at, 3)
    data: dict[str, Any] = {
        "id": row.item_id,
        "line": row.line,
        "status": outcome(row.state),
        "prompt": row.prompt,
        "model": row.model,
        "parameters": dict(row.params),
        "size": f"{row.width}*{row.height}",
        "task_id": row.task_id,
        "files": list(row.files),
        "actual_prompt": actual,
        "echoed_prompt": row.echoed_prompt,
        "timings": {
            "sent": iso_time(row.sending_at),
            "created": iso_time(row.created_at),
            "submitted": row.server_times.get("submitted"),
            "scheduled": row.server_times.get("scheduled"),
            "finished": row.server_times.get("finished"),
            "downloaded": iso_time(row.downloaded_at),
            "seconds": seconds,
        },
        # A done item may carry one too: some of its images failed (partial success).
        "error": (
            {"code": row.error_code, "message": row.error_message}
            if row.error_message is not None
            else None
        ),
    }
    if row.images > 1:
        data["actual_prompts"] = list(row.actual_prompts)
    if row.note:
        data["note"] = row.note
    return data


def write_manifest(directory: Path, rows: Iterable[Row], name: str = MANIFEST_NAME) -> Path:
    """Write ``manifest.jsonl`` (or `name`) in `directory` atomically; returns its path."""
    path = directory / name
    temporary = directory / f".{name}.{os.getpid()}.tmp"
    with temporary.open("w", encoding="utf-8") as file:
        for row in rows:
            file.write(json.dumps(entry(row), ensure_ascii=False) + "\n")
        file.flush()
        os.fsync(file.fileno())
    temporary.replace(path)
    return path
