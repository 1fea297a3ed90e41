"""The journal's SQLite file: errors in the journal's words, commits whole and in the main file."""

from __future__ import annotations

import shutil
import sqlite3
from typing import TYPE_CHECKING

import pytest

from aioqwenimage._cli._database import (
    JournalDamagedError,
    JournalWriteError,
    connect,
    transaction,
)

if TYPE_CHECKING:
    from pathlib import Path


def _items(db: sqlite3.Connection) -> int:
    (count,) = db.execute("SELECT COUNT(*) FROM items").fetchone()
    return int(count)


def _insert(db: sqlite3.Connection, seq: int) -> None:
    db.execute(
        "INSERT INTO items (seq, item_id, line, prompt, model, params, stem, images, width, "
        "height, state, updated_at) VALUES (?, ?, 1, 'p', 'm', '{}', 's', 1, 1, 1, 'pending', 0)",
        (seq, str(seq)),
    )


def _write_then_fail(db: sqlite3.Connection, path: Path) -> None:
    with transaction(db, path):
        _insert(db, 0)
        msg = "after the write"
        raise RuntimeError(msg)


def test_a_file_that_is_not_a_database_is_damaged(tmp_path: Path):
    """Any other file in the journal's place is refused, naming it, not a raw sqlite3 error."""
    path = tmp_path / "journal.sqlite"
    path.write_bytes(b"not a database at all, " * 100)
    with pytest.raises(JournalDamagedError, match=r"journal\.sqlite is damaged"):
        connect(path)


def test_a_block_that_raises_is_rolled_back(tmp_path: Path):
    """A transaction commits all of its writes or none."""
    path = tmp_path / "journal.sqlite"
    db = connect(path)
    try:
        with pytest.raises(RuntimeError, match="after the write"):
            _write_then_fail(db, path)
        assert 0 == _items(db)
        with transaction(db, path):
            _insert(db, 1)
        assert 1 == _items(db)
    finally:
        db.close()


def test_a_commit_is_in_the_main_file_without_the_wal(tmp_path: Path):
    """A copy of journal.sqlite alone (no -wal) holds every committed write: the checkpoint."""
    path = tmp_path / "journal.sqlite"
    db = connect(path)
    try:
        with transaction(db, path):
            _insert(db, 0)
        copy = tmp_path / "copy.sqlite"
        shutil.copyfile(path, copy)
        alone = sqlite3.connect(copy)
        try:
            assert 1 == _items(alone)
        finally:
            alone.close()
    finally:
        db.close()


def test_a_write_that_cannot_be_made_is_a_write_error(tmp_path: Path):
    """A read-only journal fails as JournalWriteError, which the batch reports as storage."""
    path = tmp_path / "journal.sqlite"
    connect(path).close()
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        writing = transaction(db, path)
        with pytest.raises(JournalWriteError, match="cannot write the journal"), writing:
            _insert(db, 0)
    finally:
        db.close()
