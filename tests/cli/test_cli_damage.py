"""
``aioqwenimage batch`` on damaged ground: lost side files, an empty, missing, truncated or
immutable journal, a full disk, an image that cannot be written.

Each ends with a clear message and exit 3 (never a traceback), and never with a silent re-send:
the emulator's own count of created tasks proves that nothing was paid for twice.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from aioqwenimage._cli._inputs import Item
from aioqwenimage._cli._journal import JOURNAL_NAME, Journal
from tests.cli.test_cli_commands import (
    Emulator,
    batch,
    cli,
    manifest,
    prompts,
    server,  # noqa: F401 - the module's emulator process
)
from tests.cli.test_cli_commands import emulator as emulator  # noqa: PLC0414 - the fixture

if TYPE_CHECKING:
    from pathlib import Path

EXIT_STORAGE = 3


def _items(count: int) -> list[Item]:
    return [
        Item(
            seq=seq,
            item_id=f"{seq + 1:04d}",
            line=seq + 1,
            prompt=f"prompt {seq}",
            model="qwen-image-plus",
            params={},
            stem=f"{seq + 1:04d}-prompt",
            size=(1664, 928),
            images=1,
        )
        for seq in range(count)
    ]


def _no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr


def _chattr(flag: str, *paths: Path) -> None:
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not available")
    done = subprocess.run(["chattr", flag, *map(str, paths)], capture_output=True, check=False)  # noqa: S603, S607
    if done.returncode != 0:
        pytest.skip(f"chattr {flag} is not supported here: {done.stderr.decode().strip()}")


def test_committed_transitions_survive_the_loss_of_the_side_files(tmp_path: Path):
    """The main file alone (no -wal/-journal beside it) holds every committed transition."""
    journal = Journal.open(tmp_path, fingerprint={"input": {}}, items=_items(3))
    try:
        journal.sending(0)
        journal.created(0, "task-0")
        journal.sending(1)
        # What a crash followed by a lost side file leaves: the main file as it is on disk now.
        copy = tmp_path / "copy"
        copy.mkdir()
        shutil.copyfile(tmp_path / JOURNAL_NAME, copy / JOURNAL_NAME)
    finally:
        journal.close()
    db = sqlite3.connect(copy / JOURNAL_NAME)
    try:
        rows = db.execute("SELECT state, task_id FROM items ORDER BY seq").fetchall()
    finally:
        db.close()
    assert [("created", "task-0"), ("sending", None), ("pending", None)] == rows


def test_a_reader_holding_a_snapshot_never_blocks_a_commit(tmp_path: Path):
    """A watcher mid-read does not stop the batch's writes; the next checkpoint catches up."""
    journal = Journal.open(tmp_path, fingerprint={"input": {}}, items=_items(2))
    reader = sqlite3.connect(tmp_path / JOURNAL_NAME, isolation_level=None, timeout=0.1)
    try:
        reader.execute("BEGIN")
        assert 2 == reader.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        journal.sending(0)  # a rollback journal would wait for the reader, then fail
        reader.execute("COMMIT")
        journal.created(0, "task-0")
        copy = tmp_path / "copy"
        copy.mkdir()
        shutil.copyfile(tmp_path / JOURNAL_NAME, copy / JOURNAL_NAME)
    finally:
        reader.close()
        journal.close()
    db = sqlite3.connect(copy / JOURNAL_NAME)
    try:
        assert [("created",), ("pending",)] == db.execute(
            "SELECT state FROM items ORDER BY seq"
        ).fetchall()
    finally:
        db.close()


def test_an_empty_journal_beside_earlier_work_stops_before_sending_and_recover_finishes(
    emulator: Emulator, tmp_path: Path
):
    """A 0-byte journal with images and a manifest: exit 3 naming --recover; it pays for none."""
    out = tmp_path / "out"
    source = prompts(tmp_path, 3)
    assert 0 == batch(emulator, source, out).returncode
    (out / JOURNAL_NAME).write_bytes(b"")
    refused = batch(emulator, source, out)
    _no_traceback(refused)
    assert (EXIT_STORAGE, 3) == (refused.returncode, emulator.created())
    assert "is empty (0 bytes)" in refused.stderr
    assert "--recover" in refused.stderr
    recovered = batch(emulator, source, out, "--recover")
    assert (0, 3) == (recovered.returncode, emulator.created()), recovered.stdout
    assert "3 done" in recovered.stderr
    assert ["done"] * 3 == [entry["status"] for entry in manifest(out)]


def test_a_missing_journal_is_recovered_by_adopting_the_tasks_from_the_task_list(
    emulator: Emulator, tmp_path: Path
):
    """Journal deleted after two creates were cut short: refused; --recover adopts both tasks."""
    emulator.fault(kind="drop_after", endpoints=["create"], times=2)
    out = tmp_path / "out"
    source = prompts(tmp_path, 5)
    assert 1 == batch(emulator, source, out).returncode
    assert 5 == emulator.created()
    for path in out.glob(f"{JOURNAL_NAME}*"):
        path.unlink()
    refused = batch(emulator, source, out)
    _no_traceback(refused)
    assert (EXIT_STORAGE, "missing") == (refused.returncode, refused.stderr.split(" is ")[1][:7])
    recovered = batch(emulator, source, out, "--recover")
    assert 0 == recovered.returncode, recovered.stdout + recovered.stderr
    assert "adopted" in recovered.stdout
    assert 5 == emulator.created()
    entries = manifest(out)
    assert (["done"] * 5, 5) == (
        [entry["status"] for entry in entries],
        len({entry["task_id"] for entry in entries}),
    )


def test_a_half_truncated_journal_is_refused_as_damaged(emulator: Emulator, tmp_path: Path):
    """A journal cut in half: exit 3, 'damaged' and how to recover; nothing sent."""
    out = tmp_path / "out"
    source = prompts(tmp_path, 40)
    assert 0 == batch(emulator, source, out).returncode
    path = out / JOURNAL_NAME
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    refused = batch(emulator, source, out)
    _no_traceback(refused)
    assert (EXIT_STORAGE, 40) == (refused.returncode, emulator.created())
    assert "is damaged" in refused.stderr
    assert "--recover" in refused.stderr


def test_an_immutable_journal_is_refused_before_anything_is_sent(
    emulator: Emulator, tmp_path: Path
):
    """A journal that cannot be written (chattr +i): exit 3 saying so, no task created."""
    out = tmp_path / "out"
    source = prompts(tmp_path, 3)
    wrong_key = ["--base-url", emulator.base_url, "--api-key", "sk-wrong", "--time-scale", "0.01"]
    assert 1 == cli("batch", str(source), "--out", str(out), *wrong_key).returncode
    _chattr("+i", out / JOURNAL_NAME)
    try:
        refused = batch(emulator, source, out)
    finally:
        _chattr("-i", out / JOURNAL_NAME)
    _no_traceback(refused)
    assert (EXIT_STORAGE, 0) == (refused.returncode, emulator.created())
    assert "cannot write the journal" in refused.stderr
    assert 0 == batch(emulator, source, out).returncode


def _file_size_limit(limit: int) -> None:
    # A full disk, portably: writes past `limit` bytes fail with EFBIG instead of killing us.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_a_full_disk_is_exit_3_with_a_message_and_nothing_sent(emulator: Emulator, tmp_path: Path):
    """No room for the journal (a 2 KiB file-size limit): exit 3, no traceback, no task."""
    out = tmp_path / "out"
    source = prompts(tmp_path, 3)
    result = subprocess.run(  # noqa: S603 - our own interpreter and module
        [
            *_python(),
            "batch",
            str(source),
            "--out",
            str(out),
            *emulator.flags(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        # Coverage could not write its data file under the limit either (its own traceback).
        env={k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_PROCESS")},
        preexec_fn=lambda: _file_size_limit(2048),
    )
    _no_traceback(result)
    assert (EXIT_STORAGE, 0) == (result.returncode, emulator.created()), result.stderr
    assert "cannot write the journal" in result.stderr
    assert 0 == batch(emulator, source, out).returncode  # room again: the batch runs


def _python() -> list[str]:
    return [sys.executable, "-m", "aioqwenimage"]


def test_an_image_that_cannot_be_written_stops_the_batch_and_a_rerun_pays_nothing_more(
    emulator: Emulator, tmp_path: Path
):
    """One image's file is immutable: exit 3, no traceback; once fixed, a re-run only downloads."""
    out = tmp_path / "out"
    out.mkdir()
    source = tmp_path / "p.jsonl"
    source.write_text(
        "".join(json.dumps({"prompt": f"a fox {i}", "file": f"fox-{i}"}) + "\n" for i in range(4))
    )
    wrong_key = ["--base-url", emulator.base_url, "--api-key", "sk-wrong", "--time-scale", "0.01"]
    assert 1 == cli("batch", str(source), "--out", str(out), *wrong_key).returncode
    blocked = out / "fox-2.png"  # after the journal exists, or it would count as earlier work
    blocked.write_bytes(b"in the way")
    _chattr("+i", blocked)
    try:
        stopped = batch(emulator, source, out, "--in-flight", "1")
    finally:
        _chattr("-i", blocked)
    _no_traceback(stopped)
    assert EXIT_STORAGE == stopped.returncode, stopped.stdout + stopped.stderr
    assert "fox-2.png" in stopped.stderr
    assert "run the same command to resume" in stopped.stderr
    blocked.unlink()
    finished = batch(emulator, source, out)
    assert 0 == finished.returncode, finished.stdout + finished.stderr
    assert 4 == emulator.created()
    assert ["done"] * 4 == [entry["status"] for entry in manifest(out)]
