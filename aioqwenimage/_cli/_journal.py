"""
The batch journal: one SQLite file in the output directory, the truth about every item.

Every transition is one small committed transaction, written before the step it guards can have
an effect that outlives the process. The order that makes a crash harmless:

* ``sending`` is committed in the client's ``on_sending`` callback, right before the create
  request leaves: after a crash, an item in ``sending`` *may* have a task, so it is reconciled
  against the task list instead of being sent again;
* ``created`` (with the task id) is committed as soon as ``submit()`` returns, so the task is
  re-attached by id, never created again;
* ``succeeded`` keeps the result URLs, so images are downloaded again without a new task;
* ``downloaded`` is committed after the files are renamed into place (downloads are atomic).

Durability (WAL, a checkpoint after every commit) and SQLite's errors as `JournalError` are
`aioqwenimage._cli._database`'s.

A journal that cannot be trusted (damaged, or gone while the directory shows earlier work) is
refused before anything is sent: see `aioqwenimage._cli._recovery`.

Writes run inline on the event loop thread, on purpose: a write is finished when the call returns,
so no transaction is ever open across an ``await`` and a signal handler that exits the process
between two callbacks always leaves the journal consistent.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import TYPE_CHECKING, Any, Final

from aioqwenimage._cli._database import (
    JournalDamagedError,
    JournalError,
    JournalMismatchError,
    JournalWriteError,
    connect,
    mapped,
    transaction,
)
from aioqwenimage._cli._records import (
    ALLOWED,
    COLUMNS,
    SCHEMA_VERSION,
    Row,
    State,
    describe_differences,
    initialise,
    row_from,
)

if TYPE_CHECKING:
    import contextlib
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    from aioqwenimage._cli._inputs import Item

__all__ = [
    "JOURNAL_NAME",
    "Journal",
    "JournalDamagedError",
    "JournalError",
    "JournalMismatchError",
    "JournalWriteError",
    "Row",
    "State",
]

JOURNAL_NAME: Final = "journal.sqlite"
_TASK_IDS: Final = (
    "SELECT task_id FROM items WHERE task_id IS NOT NULL "
    "UNION SELECT task_id FROM transitions WHERE task_id IS NOT NULL"
)


class Journal:
    """
    The journal of one output directory. Open it with `Journal.open`.

    Every method that changes an item commits before it returns.
    """

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.path = path
        with mapped(path, writing=False):
            rows = self._db.execute("SELECT seq, state FROM items").fetchall()
        self._states: dict[int, State] = {seq: State(state) for seq, state in rows}

    # --- opening ---------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        fingerprint: Mapping[str, Any],
        items: Sequence[Item],
        name: str = JOURNAL_NAME,
        clock: Any = time.time,
    ) -> Journal:
        """
        Open (or create) the journal in `directory` for this input and these options.

        A new journal records `fingerprint` and every item as ``pending``. An existing one must
        carry the same fingerprint. `name` is the file's (a ``--shard`` has its own).

        Raises:
            JournalMismatchError: The journal belongs to another input file or other options.
            JournalError: The file is not a journal of a version this program reads.
        """
        path = directory / name
        db = connect(path)
        try:
            with mapped(path, writing=False):
                stored = dict(db.execute("SELECT key, value FROM meta").fetchall())
            if not stored:
                with transaction(db, path):
                    initialise(db, fingerprint, items, clock())
            else:
                _check(stored, fingerprint, path)
                # A write before anything is sent: a read-only, immutable or full journal is
                # found now, not at the first `sending`, which would stop the batch half-way.
                with transaction(db, path):
                    db.execute("INSERT OR REPLACE INTO meta VALUES ('opened', ?)", (repr(clock()),))
        except BaseException:
            db.close()
            raise
        return cls(db, path)

    def close(self) -> None:
        """Close the connection (every change is already committed)."""
        self._db.close()

    # --- reading ---------------------------------------------------------------------------------

    def rows(self) -> list[Row]:
        """Every item, in input order."""
        with mapped(self.path, writing=False):
            cursor = self._db.execute(f"SELECT {COLUMNS} FROM items ORDER BY seq")  # noqa: S608
            return [row_from(values) for values in cursor]

    def row(self, seq: int) -> Row:
        """One item."""
        with mapped(self.path, writing=False):
            values = self._db.execute(
                f"SELECT {COLUMNS} FROM items WHERE seq = ?",  # noqa: S608 - constant columns
                (seq,),
            ).fetchone()
        if values is None:
            msg = f"no item {seq} in the journal"
            raise KeyError(msg)
        return row_from(values)

    def state(self, seq: int) -> State:
        """An item's state (from memory: the journal's last committed write)."""
        return self._states[seq]

    def meta(self, key: str) -> str | None:
        """A value of the journal's metadata."""
        found = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if found is None else str(found[0])

    def set_meta(self, key: str, value: str) -> None:
        """Set a value of the journal's metadata."""
        with self._transaction():
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def known_task_ids(self) -> set[str]:
        """Every task id the journal holds."""
        with mapped(self.path, writing=False):
            rows = self._db.execute(_TASK_IDS).fetchall()
        return {task_id for (task_id,) in rows}

    def neighbours_task_ids(self) -> set[str]:
        """
        Every task id the other journals in this directory hold (other shards of the batch).

        Read-only, and best effort: a neighbour that cannot be read adds nothing. Reconciliation
        counts these as known, so that an item whose create was cut short never adopts a task
        another shard made for the same prompt.
        """
        found: set[str] = set()
        for path in sorted(self.path.parent.glob("journal*.sqlite")):
            if path.name == self.path.name:
                continue
            try:
                db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
                try:
                    found.update(task_id for (task_id,) in db.execute(_TASK_IDS))
                finally:
                    db.close()
            except sqlite3.Error:
                continue
        return found

    def transitions(self, seq: int | None = None) -> list[tuple[int, str, str, str | None]]:
        """The history: ``(seq, old, new, note)`` in order, for one item or all."""
        query = "SELECT seq, old, new, note FROM transitions"
        args: tuple[Any, ...] = ()
        if seq is not None:
            query += " WHERE seq = ?"
            args = (seq,)
        return list(self._db.execute(query + " ORDER BY id", args))

    # --- transitions -----------------------------------------------------------------------------

    def sending(self, seq: int) -> None:
        """The create request is about to leave: from now on a task may exist."""
        self._move(
            seq, State.SENDING, "sending_at = COALESCE(sending_at, :now), attempts = attempts + 1"
        )

    def created(self, seq: int, task_id: str) -> None:
        """The task exists: its id is all a resume needs."""
        self._move(seq, State.CREATED, "task_id = :task_id, created_at = :now", task_id=task_id)

    def adopted(self, seq: int, task_id: str, created_at: float | None, note: str) -> None:
        """Reconciliation found the task an uncertain create made: take its id."""
        self._move(
            seq,
            State.CREATED,
            "task_id = :task_id, created_at = COALESCE(:created, :now)",
            task_id=task_id,
            created=created_at,
            note=note,
        )

    def running(self, seq: int) -> None:
        """A poll saw the task running."""
        self._move(seq, State.RUNNING, "")

    def succeeded(
        self,
        seq: int,
        *,
        urls: Sequence[tuple[int, str]],
        actual_prompts: Sequence[str | None],
        echoed_prompt: str | None,
        server_times: Mapping[str, str | None],
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> None:
        """The task succeeded: its URLs are kept until the files are on disk."""
        self._move(
            seq,
            State.SUCCEEDED,
            "urls = :urls, actual_prompts = :actual, echoed_prompt = :echoed, "
            "server_times = :times, finished_at = :now, error_code = :code, "
            "error_message = :message",
            urls=json.dumps([[index, url] for index, url in urls]),
            actual=json.dumps(list(actual_prompts)),
            echoed=echoed_prompt,
            times=json.dumps(dict(server_times)),
            code=error_code,
            message=error_message,
        )

    def downloaded(self, seq: int, files: Sequence[str], *, sync: bool = False) -> None:
        """Every image is on disk (``done`` for a synchronous model's item, which has no task)."""
        self._move(
            seq,
            State.DONE if sync else State.DOWNLOADED,
            "files = :files, downloaded_at = :now",
            files=json.dumps(list(files)),
        )

    def failed(self, seq: int, code: str | None, message: str) -> None:
        """The item failed for good (the task failed, or the service refused the request)."""
        self._move(
            seq,
            State.FAILED,
            "error_code = :code, error_message = :message, finished_at = :now",
            code=code,
            message=message,
        )

    def canceled(self, seq: int, note: str) -> None:
        """The task was cancelled (by our interrupt, or by someone else)."""
        self._move(seq, State.CANCELED, "finished_at = :now", note=note)

    def expired(self, seq: int, note: str) -> None:
        """The task is past the service's 24-hour retention: its result is gone."""
        self._move(seq, State.EXPIRED, "error_code = 'Expired', error_message = :note", note=note)

    def pending(self, seq: int, note: str) -> None:
        """Back to ``pending``: provably nothing was created (or it is to be sent again)."""
        self._move(
            seq,
            State.PENDING,
            "task_id = NULL, sending_at = NULL, created_at = NULL, urls = '[]', files = '[]', "
            "error_code = NULL, error_message = NULL, finished_at = NULL",
            note=note,
        )

    def redownload(self, seq: int, note: str) -> None:
        """A finished item's files are missing: back to ``succeeded`` to download them again."""
        self._move(seq, State.SUCCEEDED, "files = '[]', downloaded_at = NULL", note=note)

    def restore(self, seq: int, state: State, note: str, **fields: Any) -> None:
        """
        Set a fresh item to what the remains of a lost journal say (``--recover`` only).

        Args:
            seq: The item, still ``pending`` in a journal just created.
            state: Where the evidence puts it.
            note: Where that evidence comes from.
            fields: Any of ``task_id``, ``sending_at``, ``created_at``, ``files``,
                ``error_code``, ``error_message``.
        """
        if self._states[seq] is not State.PENDING:
            msg = f"item {seq} is {self._states[seq].value}, not a fresh item to restore"
            raise JournalError(msg)
        values: dict[str, Any] = {"task_id": None, "sending_at": None, "created_at": None}
        values |= {"error_code": None, "error_message": None, **fields}
        values["files"] = json.dumps(list(fields.get("files", ())))
        self._move(
            seq,
            state,
            "task_id = :task_id, sending_at = :sending_at, created_at = :created_at, "
            "files = :files, error_code = :error_code, error_message = :error_message",
            note=note,
            restoring=True,
            **values,
        )

    def annotate(self, seq: int, note: str | None) -> None:
        """Set an item's note without changing its state (e.g. why a create is uncertain)."""
        with self._transaction():
            self._db.execute(
                "UPDATE items SET note = ?, updated_at = ? WHERE seq = ?", (note, time.time(), seq)
            )

    def _move(self, seq: int, new: State, assignments: str, **values: Any) -> None:
        old = self._states[seq]
        if not values.pop("restoring", False) and new not in ALLOWED[old]:
            msg = f"illegal journal transition for item {seq}: {old.value} -> {new.value}"
            raise JournalError(msg)
        now = time.time()
        note = values.pop("note", None)
        sets = "state = :state, updated_at = :now, note = :note"
        if assignments:
            sets += ", " + assignments
        params = {"seq": seq, "state": new.value, "now": now, "note": note, **values}
        with self._transaction():
            # The history keeps every task id an item ever had, even one it gives up on going
            # back to pending, so that a later reconciliation never mistakes it for an orphan.
            (previous,) = self._db.execute(
                "SELECT task_id FROM items WHERE seq = ?", (seq,)
            ).fetchone()
            # Only constant column names are formatted in; every value is a bound parameter.
            self._db.execute(f"UPDATE items SET {sets} WHERE seq = :seq", params)  # noqa: S608
            self._db.execute(
                "INSERT INTO transitions (seq, at, old, new, task_id, note) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (seq, now, old.value, new.value, values.get("task_id") or previous, note),
            )
        self._states[seq] = new

    def _transaction(self) -> contextlib.AbstractContextManager[None]:
        return transaction(self._db, self.path)


def _check(stored: Mapping[str, str], fingerprint: Mapping[str, Any], path: Path) -> None:
    if stored.get("schema") != str(SCHEMA_VERSION):
        msg = (
            f"{path} was written by another version of aioqwenimage (schema {stored.get('schema')})"
        )
        raise JournalError(msg)
    old = json.loads(stored.get("fingerprint", "{}"))
    new = json.loads(json.dumps(fingerprint, sort_keys=True))
    if old == new:
        return
    differences = describe_differences(old, new)
    msg = (
        f"the journal {path} was written for a different batch, so it cannot be resumed with "
        f"this one: {'; '.join(differences)}. Re-run the original command to finish that batch, "
        "or use another --out directory (or move the journal away) to start a new one."
    )
    raise JournalMismatchError(msg)
