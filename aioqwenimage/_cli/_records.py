"""
What the journal stores: an item's states, its row, the tables, and the first write of a batch.

Kept apart from `aioqwenimage._cli._journal` (which owns opening, durability and transitions) so
that the record and the schema read in one place; both move together when the schema changes.
"""

from __future__ import annotations

import enum
import json
from typing import TYPE_CHECKING, Any, Final

import attrs

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterable, Mapping, Sequence

    from aioqwenimage._cli._inputs import Item

__all__ = [
    "ALLOWED",
    "COLUMNS",
    "DDL",
    "SCHEMA_VERSION",
    "Row",
    "State",
    "describe_differences",
    "initialise",
    "row_from",
]

SCHEMA_VERSION: Final = 1


class State(enum.Enum):
    """Where an item is; see the module docstring for the order of writes."""

    PENDING = "pending"
    SENDING = "sending"
    CREATED = "created"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    EXPIRED = "expired"
    DOWNLOADED = "downloaded"
    DONE = "done"

    @property
    def finished(self) -> bool:
        """Whether the item needs nothing more (``done``: a synchronous model's ``downloaded``)."""
        return self in (State.DOWNLOADED, State.DONE)


_S = State
# Every transition the batch makes. Anything else is a bug, refused before it reaches the disk.
ALLOWED: Final[Mapping[State, frozenset[State]]] = {
    # FAILED straight from PENDING: the client refused the request before sending anything.
    _S.PENDING: frozenset({_S.SENDING, _S.EXPIRED, _S.FAILED}),
    # A re-send after a 429 stays in SENDING; back to PENDING when provably nothing was created
    # (throttled out, refused); CREATED for a task; DONE/FAILED for a synchronous call.
    _S.SENDING: frozenset(
        {_S.SENDING, _S.PENDING, _S.CREATED, _S.SUCCEEDED, _S.DONE, _S.FAILED, _S.EXPIRED}
    ),
    # Back to PENDING from a live task only under --emulator: the in-process emulator that held
    # the task died with the earlier process, and an emulator bills nothing.
    _S.CREATED: frozenset(
        {_S.RUNNING, _S.SUCCEEDED, _S.FAILED, _S.CANCELED, _S.EXPIRED, _S.PENDING}
    ),
    _S.RUNNING: frozenset({_S.SUCCEEDED, _S.FAILED, _S.CANCELED, _S.EXPIRED, _S.PENDING}),
    # Re-polled for fresh URLs (SUCCEEDED again) or gone past retention (EXPIRED).
    _S.SUCCEEDED: frozenset({_S.SUCCEEDED, _S.DOWNLOADED, _S.DONE, _S.EXPIRED, _S.PENDING}),
    # A cancelled item is sent again on resume: a cancelled task made no image and costs nothing.
    _S.CANCELED: frozenset({_S.PENDING}),
    _S.FAILED: frozenset({_S.PENDING}),  # only with --retry-failed
    _S.EXPIRED: frozenset(),
    # Files deleted since: download again from the stored URLs.
    _S.DOWNLOADED: frozenset({_S.SUCCEEDED}),
    _S.DONE: frozenset({_S.SUCCEEDED}),
}


@attrs.frozen(kw_only=True)
class Row:
    """One item as the journal holds it."""

    seq: int
    item_id: str
    line: int
    prompt: str
    model: str
    params: Mapping[str, Any]
    stem: str
    images: int
    width: int
    height: int
    state: State
    task_id: str | None
    sending_at: float | None
    created_at: float | None
    finished_at: float | None
    downloaded_at: float | None
    urls: tuple[tuple[int, str], ...]
    files: tuple[str, ...]
    actual_prompts: tuple[str | None, ...]
    echoed_prompt: str | None
    server_times: Mapping[str, str | None]
    error_code: str | None
    error_message: str | None
    note: str | None
    attempts: int


COLUMNS: Final = (
    "seq, item_id, line, prompt, model, params, stem, images, width, height, state, task_id, "
    "sending_at, created_at, finished_at, downloaded_at, urls, files, actual_prompts, "
    "echoed_prompt, server_times, error_code, error_message, note, attempts"
)

DDL: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    seq INTEGER PRIMARY KEY,
    item_id TEXT NOT NULL UNIQUE,
    line INTEGER NOT NULL,
    prompt TEXT NOT NULL,
    model TEXT NOT NULL,
    params TEXT NOT NULL,
    stem TEXT NOT NULL,
    images INTEGER NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    state TEXT NOT NULL,
    task_id TEXT,
    sending_at REAL,
    created_at REAL,
    finished_at REAL,
    downloaded_at REAL,
    urls TEXT NOT NULL DEFAULT '[]',
    files TEXT NOT NULL DEFAULT '[]',
    actual_prompts TEXT NOT NULL DEFAULT '[]',
    echoed_prompt TEXT,
    server_times TEXT NOT NULL DEFAULT '{}',
    error_code TEXT,
    error_message TEXT,
    note TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS items_task ON items (task_id);
CREATE TABLE IF NOT EXISTS transitions (
    id INTEGER PRIMARY KEY,
    seq INTEGER NOT NULL,
    at REAL NOT NULL,
    old TEXT NOT NULL,
    new TEXT NOT NULL,
    task_id TEXT,
    note TEXT
);
"""


def initialise(
    db: sqlite3.Connection, fingerprint: Mapping[str, Any], items: Iterable[Item], now: float
) -> None:
    """Record the fingerprint and every item as ``pending`` (inside the caller's transaction)."""
    db.executemany(
        "INSERT INTO meta VALUES (?, ?)",
        [
            ("schema", str(SCHEMA_VERSION)),
            ("fingerprint", json.dumps(fingerprint, sort_keys=True)),
            ("created", repr(now)),
        ],
    )
    db.executemany(
        "INSERT INTO items (seq, item_id, line, prompt, model, params, stem, images, width, "
        "height, state, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
        [
            (
                item.seq,
                item.item_id,
                item.line,
                item.prompt,
                item.model,
                json.dumps(dict(item.params), sort_keys=True),
                item.stem,
                item.images,
                item.size[0],
                item.size[1],
                now,
            )
            for item in items
        ],
    )


def describe_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What changed between two fingerprints, in words."""
    found: list[str] = []
    old_input, new_input = old.get("input", {}), new.get("input", {})
    if old_input.get("sha256") != new_input.get("sha256"):
        if old_input.get("path") != new_input.get("path"):
            found.append(
                f"the input file was {old_input.get('path')!r}, now {new_input.get('path')!r}"
            )
        else:
            found.append(f"the input file {new_input.get('path')!r} has changed since")
    old_options, new_options = old.get("options", {}), new.get("options", {})
    found.extend(
        f"{key.replace('_', '-')} was {old_options.get(key)!r}, now {new_options.get(key)!r}"
        for key in sorted(set(old_options) | set(new_options))
        if old_options.get(key) != new_options.get(key)
    )
    return found or ["the fingerprints differ"]


def row_from(values: Sequence[Any]) -> Row:
    (
        seq,
        item_id,
        line,
        prompt,
        model,
        params,
        stem,
        images,
        width,
        height,
        state,
        task_id,
        sending_at,
        created_at,
        finished_at,
        downloaded_at,
        urls,
        files,
        actual_prompts,
        echoed_prompt,
        server_times,
        error_code,
        error_message,
        note,
        attempts,
    ) = values
    return Row(
        seq=seq,
        item_id=item_id,
        line=line,
        prompt=prompt,
        model=model,
        params=json.loads(params),
        stem=stem,
        images=images,
        width=width,
        height=height,
        state=State(state),
        task_id=task_id,
        sending_at=sending_at,
        created_at=created_at,
        finished_at=finished_at,
        downloaded_at=downloaded_at,
        urls=tuple((int(index), str(url)) for index, url in json.loads(urls)),
        files=tuple(json.loads(files)),
        actual_prompts=tuple(json.loads(actual_prompts)),
        echoed_prompt=echoed_prompt,
        server_times=json.loads(server_times),
        error_code=error_code,
        error_message=error_message,
        note=note,
        attempts=attempts,
    )
