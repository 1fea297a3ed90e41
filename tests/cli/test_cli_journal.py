"""The batch journal (SQLite): transitions, durability settings, fingerprints, the manifest."""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING

import pytest

from aioqwenimage._cli._inputs import Item
from aioqwenimage._cli._journal import (
    JOURNAL_NAME,
    Journal,
    JournalError,
    JournalMismatchError,
    State,
)
from aioqwenimage._cli._manifest import MANIFEST_NAME, write_manifest

if TYPE_CHECKING:
    from pathlib import Path

FINGERPRINT = {
    "input": {"path": "/data/p.txt", "sha256": "abc"},
    "options": {"model": "qwen-image-plus", "size": None, "target": "emulator"},
}


def _items(count: int = 3) -> list[Item]:
    return [
        Item(
            seq=seq,
            item_id=f"{seq + 1:04d}",
            line=seq + 1,
            prompt=f"prompt {seq}",
            model="qwen-image-plus",
            params={"seed": seq},
            stem=f"{seq + 1:04d}-prompt",
            size=(1664, 928),
            images=1,
        )
        for seq in range(count)
    ]


def _open(directory: Path, fingerprint: dict[str, object] | None = None) -> Journal:
    return Journal.open(directory, fingerprint=fingerprint or FINGERPRINT, items=_items())


def test_a_new_journal_is_wal_with_full_sync_and_every_item_pending(tmp_path: Path):
    """Opening creates the file in WAL mode, fsyncing each commit, with all items pending."""
    journal = _open(tmp_path)
    try:
        mode = journal._db.execute("PRAGMA journal_mode").fetchone()[0]
        sync = journal._db.execute("PRAGMA synchronous").fetchone()[0]
        assert ("wal", 2) == (mode, sync)  # 2 is FULL
        assert [State.PENDING] * 3 == [row.state for row in journal.rows()]
        assert {"seed": 1} == dict(journal.row(1).params)
    finally:
        journal.close()


def test_the_full_life_of_an_item_survives_reopening(tmp_path: Path):
    """pending -> sending -> created -> running -> succeeded -> downloaded, all on disk."""
    journal = _open(tmp_path)
    journal.sending(0)
    journal.created(0, "task-0")
    journal.running(0)
    journal.succeeded(
        0,
        urls=[(0, "http://files/a.png")],
        actual_prompts=["a better prompt"],
        echoed_prompt="prompt 0",
        server_times={"submitted": "t0", "scheduled": "t1", "finished": "t2"},
    )
    journal.downloaded(0, ["0001-prompt.png"])
    journal.close()
    # A second connection (another process, after a crash) sees every committed write.
    again = _open(tmp_path)
    try:
        row = again.row(0)
        assert (State.DOWNLOADED, "task-0", ((0, "http://files/a.png"),), ("0001-prompt.png",)) == (
            row.state,
            row.task_id,
            row.urls,
            row.files,
        )
        assert ("prompt 0", ("a better prompt",), 1) == (
            row.echoed_prompt,
            row.actual_prompts,
            row.attempts,
        )
        assert ["sending", "created", "running", "succeeded", "downloaded"] == [
            new for _, _, new, _ in again.transitions(0)
        ]
    finally:
        again.close()


def test_illegal_transitions_are_refused_before_reaching_the_disk(tmp_path: Path):
    """Skipping `sending` (a create not journaled first) or leaving `expired` is a bug, refused."""
    journal = _open(tmp_path)
    try:
        with pytest.raises(JournalError, match="pending -> created"):
            journal.created(0, "task-x")
        journal.expired(1, "too old")
        with pytest.raises(JournalError, match="expired -> sending"):
            journal.sending(1)
        assert (State.PENDING, None, State.EXPIRED) == (
            journal.row(0).state,
            journal.row(0).task_id,
            journal.row(1).state,
        )
    finally:
        journal.close()


def test_going_back_to_pending_forgets_the_task_but_history_keeps_its_id(tmp_path: Path):
    """A cancelled item sent again has no task id, yet its old task is not an orphan later."""
    journal = _open(tmp_path)
    try:
        journal.sending(2)
        journal.created(2, "old-task")
        journal.canceled(2, "interrupted while pending")
        journal.pending(2, "cancelled earlier: sent again")
        assert (State.PENDING, None) == (journal.row(2).state, journal.row(2).task_id)
        assert {"old-task"} == journal.known_task_ids()
    finally:
        journal.close()


def test_a_resend_after_throttling_keeps_the_first_sending_time(tmp_path: Path):
    """on_sending runs before every re-send; the earliest time bounds the reconciliation window."""
    journal = _open(tmp_path)
    try:
        journal.sending(0)
        first = journal.row(0).sending_at
        journal.sending(0)
        assert (first, 2) == (journal.row(0).sending_at, journal.row(0).attempts)
    finally:
        journal.close()


def test_a_journal_for_another_input_or_options_is_refused(tmp_path: Path):
    """Another file, a changed file or another model: refused, saying what differs."""
    _open(tmp_path).close()
    other_file = json.loads(json.dumps(FINGERPRINT))
    other_file["input"] = {"path": "/data/q.txt", "sha256": "def"}
    with pytest.raises(
        JournalMismatchError, match=r"input file was '/data/p.txt', now '/data/q.txt'"
    ):
        _open(tmp_path, other_file)
    changed = json.loads(json.dumps(FINGERPRINT))
    changed["input"]["sha256"] = "zzz"
    with pytest.raises(JournalMismatchError, match="has changed since"):
        _open(tmp_path, changed)
    other_model = json.loads(json.dumps(FINGERPRINT))
    other_model["options"]["model"] = "wan2.2-t2i-flash"
    with pytest.raises(
        JournalMismatchError, match=r"model was 'qwen-image-plus', now 'wan2\.2-t2i-flash'"
    ):
        _open(tmp_path, other_model)
    _open(tmp_path).close()  # the original batch still resumes


def test_a_file_that_is_not_a_journal_is_refused(tmp_path: Path):
    """A corrupt or foreign file in place of the journal is a clear error, not a crash."""
    (tmp_path / JOURNAL_NAME).write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(JournalError, match="is damaged"):
        _open(tmp_path)


def test_a_reader_sees_committed_states_while_the_writer_is_open(tmp_path: Path):
    """Another process may watch progress read-only while the batch runs (WAL readers)."""
    journal = _open(tmp_path)
    try:
        journal.sending(0)
        reader = sqlite3.connect(f"file:{tmp_path / JOURNAL_NAME}?mode=ro", uri=True)
        try:
            states = dict(reader.execute("SELECT state, COUNT(*) FROM items GROUP BY state"))
        finally:
            reader.close()
        assert {"pending": 2, "sending": 1} == states
    finally:
        journal.close()


def test_the_manifest_has_one_line_per_item_with_outcome_task_files_and_error(tmp_path: Path):
    """manifest.jsonl is rewritten whole from the journal: one entry per item, whatever state."""
    journal = _open(tmp_path)
    try:
        journal.sending(0)
        journal.created(0, "t0")
        journal.succeeded(
            0,
            urls=[(0, "u")],
            actual_prompts=["rewritten"],
            echoed_prompt="prompt 0",
            server_times={"submitted": "s", "scheduled": None, "finished": "f"},
        )
        journal.downloaded(0, ["0001-prompt.png"])
        journal.sending(1)
        journal.created(1, "t1")
        journal.failed(1, "DataInspectionFailed", "Output data may contain inappropriate content.")
        journal.sending(2)
        write_manifest(tmp_path, journal.rows())
        write_manifest(tmp_path, journal.rows())  # idempotent: still one line per item
    finally:
        journal.close()
    lines = [json.loads(line) for line in (tmp_path / MANIFEST_NAME).read_text().splitlines()]
    assert ["done", "failed", "uncertain"] == [entry["status"] for entry in lines]
    done, failed, uncertain = lines
    assert ("0001", "t0", ["0001-prompt.png"], "rewritten", None) == (
        done["id"],
        done["task_id"],
        done["files"],
        done["actual_prompt"],
        done["error"],
    )
    assert {"seed": 0} == done["parameters"]
    assert done["timings"]["downloaded"] is not None
    assert {
        "code": "DataInspectionFailed",
        "message": "Output data may contain inappropriate content.",
    } == failed["error"]
    assert (None, []) == (uncertain["task_id"], uncertain["files"])
