"""
The journal's SQLite file: opening it durable, short write transactions, errors in our words.

Kept apart from `aioqwenimage._cli._journal` (what the batch reads and writes: items, their
transitions, the fingerprint) because this is how any write reaches the disk, whatever it says.

Durability: WAL with ``synchronous=FULL``, and a checkpoint after every commit. Each commit is
fsynced before it returns and then copied into the main file, so losing the side files (a deleted
``-wal`` after a crash, a backup or copy of ``journal.sqlite`` alone) loses no committed
transition. Without the checkpoint, recent commits lived only in ``journal.sqlite-wal`` (up to a
thousand pages of them): a ``-wal`` deleted after a crash lost committed ``sending`` and
``created`` rows, and with them the knowledge that tasks had been paid for. The checkpoint is
``PASSIVE``: it never waits, so a reader watching the journal (a script, ``sqlite3``) never blocks
the batch; frames a reader still needs are copied by the next commit's checkpoint. WAL rather
than a rollback journal (``TRUNCATE``, which also keeps every commit in the main file) for that
reason: a rollback journal's reader blocks the writer, and the writer here is the event loop.
The price, measured on the test machine, is a few milliseconds a commit, invisible next to the
API's limits (two submissions a second).

Any SQLite failure while reading or writing is a `JournalError` that names the file, never a raw
``sqlite3`` error.
"""

from __future__ import annotations

import contextlib
import sqlite3
from typing import TYPE_CHECKING

from aioqwenimage._cli._records import DDL

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

__all__ = [
    "JournalDamagedError",
    "JournalError",
    "JournalMismatchError",
    "JournalWriteError",
    "connect",
    "mapped",
    "transaction",
]


class JournalError(Exception):
    """The journal cannot be used (corrupt, from a newer version, or an illegal transition)."""


class JournalMismatchError(JournalError):
    """The journal in the output directory was written for another input or other options."""


class JournalDamagedError(JournalError):
    """The journal file is not a sound SQLite database (truncated, overwritten, corrupt)."""


class JournalWriteError(JournalError):
    """A change could not be committed: disk full, a read-only or immutable file, an I/O error."""


@contextlib.contextmanager
def mapped(path: Path, *, writing: bool) -> Iterator[None]:
    """SQLite's errors as the journal's, naming the file and what it means for the batch."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        if isinstance(exc, sqlite3.OperationalError) and writing:
            msg = f"cannot write the journal {path}: {exc}"
            raise JournalWriteError(msg) from exc
        msg = f"the journal {path} is damaged ({exc})"
        raise JournalDamagedError(msg) from exc


def connect(path: Path) -> sqlite3.Connection:
    """
    Open the database at `path` (created if absent), checked, durable, with the tables.

    Raises:
        JournalDamagedError: The file is not a sound SQLite database.
        JournalWriteError: It cannot be set up for writing.
    """
    with mapped(path, writing=False):
        db = sqlite3.connect(path, isolation_level=None, timeout=5.0)
    try:
        with mapped(path, writing=False):
            # Reading the first page is what tells a database from any other file.
            _quick_check(db)
        with mapped(path, writing=True):
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(DDL)
            _checkpoint(db)  # what a killed earlier run left in the -wal, into the file
    except BaseException:
        db.close()
        raise
    return db


@contextlib.contextmanager
def transaction(db: sqlite3.Connection, path: Path) -> Iterator[None]:
    """One short write transaction, committed (and checkpointed) when the block ends."""
    with mapped(path, writing=True):
        with _Transaction(db):
            yield
        _checkpoint(db)


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on error: one short write transaction."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error:
                self._rollback()
                raise
            return
        self._rollback()

    def _rollback(self) -> None:
        # After SQLITE_FULL or an I/O error SQLite may have rolled back on its own already.
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("ROLLBACK")


def _checkpoint(db: sqlite3.Connection) -> None:
    """Copy the committed WAL frames into the main file, without waiting for any reader."""
    # The commit is already durable in the -wal; a disk that cannot take the checkpoint cannot
    # take the next commit either, and that one fails loudly.
    with contextlib.suppress(sqlite3.Error):
        db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def _quick_check(db: sqlite3.Connection) -> None:
    """Raise when the file is not a sound database (a truncated one fails here, not later)."""
    (verdict,) = db.execute("PRAGMA quick_check").fetchone()
    if verdict != "ok":
        raise sqlite3.DatabaseError(verdict)
