"""
``batch --shard i/N`` and ``batch --coordinator URL``: one input split over several workers.

The workers are CLI processes against one emulator in a process of its own (so that its task
count covers every shard), in compressed time. The proofs: the shards' outputs together are the
unsharded run's, no line is created twice, each journal holds its shard's lines only, a shard
killed partway resumes its own lines without creating their tasks again, and the coordinator
keeps concurrent shards within the account's limits.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from aioqwenimage._cli import main
from tests.cli.test_cli_commands import (
    SCALE,
    cli,
    png_size,
    server,  # noqa: F401 - the module's emulator process
)
from tests.cli.test_cli_commands import emulator as emulator  # noqa: PLC0414 - the fixture
from tests.emulator_process import Emulator, emulator_process

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

SIZE = (1664, 928)  # qwen-image-plus's default


def _source(tmp_path: Path, count: int, *, header: str = "") -> tuple[Path, list[str]]:
    """A .txt input of `count` prompts (after `header`, lines that are not records)."""
    lines = [f"prompt {i}: a heron at dawn, take {i}" for i in range(count)]
    path = tmp_path / "p.txt"
    path.write_text(header + "".join(f"{line}\n" for line in lines))
    return path, lines


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("DASHSCOPE_", "AIOQWEN"))}


def _batch(emulator: Emulator, source: Path, out: Path, *extra: str) -> list[str]:
    """The arguments of ``aioqwenimage batch`` against `emulator`."""
    return ["batch", str(source), "--out", str(out), *emulator.flags(), *extra]


_STARTED: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def _no_worker_outlives_its_test() -> Iterator[None]:
    """A test that fails early must not leave its other workers running into later tests."""
    yield
    while _STARTED:
        process = _STARTED.pop()
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def _start(args: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:  # the child keeps its own descriptor
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "aioqwenimage", *args],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=_environment(),
        )
    _STARTED.append(process)
    return process


def _finish(process: subprocess.Popen[bytes], log: Path) -> None:
    code = process.wait(timeout=90)
    assert 0 == code, log.read_text()[-3000:]


def _journal(path: Path) -> list[dict[str, Any]]:
    """The items of a journal, read-only (its writer may still be running)."""
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    db.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in db.execute("SELECT * FROM items ORDER BY seq")]
    finally:
        db.close()


def _states(path: Path) -> dict[str, int]:
    """A journal's state counts; empty while it is not there or not initialised yet."""
    if not path.exists():
        return {}
    try:
        rows = _journal(path)
    except sqlite3.Error:
        return {}
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    return counts


def _manifest(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _shard_seqs(count: int, number: int, shards: int) -> list[int]:
    return [seq for seq in range(count) if seq % shards == number - 1]


def _what_a_line_became(entry: dict[str, Any]) -> tuple[Any, ...]:
    return (entry["id"], entry["line"], entry["prompt"], entry["status"], tuple(entry["files"]))


def test_three_shards_make_every_line_once_and_together_the_unsharded_output(
    emulator: Emulator, tmp_path: Path
):
    """3 workers at once on one file and one DIR: each line once, the same files as unsharded."""
    count = 11  # not a multiple of 3: the shards differ in size
    source, lines = _source(tmp_path, count, header="# records are counted, not lines\n\n")
    out = tmp_path / "out"
    workers = [
        _start(_batch(emulator, source, out, "--shard", f"{i}/3"), tmp_path / f"{i}.log")
        for i in (1, 2, 3)
    ]
    for i, worker in enumerate(workers, start=1):
        _finish(worker, tmp_path / f"{i}.log")
    # The emulator's own count: one task per line, no line made by two shards.
    stats = emulator.stats()
    assert {"qwen-image-plus": count} == stats["tasks_created"]
    assert sorted(lines) == sorted(task["prompt"] for task in stats["tasks"])
    sharded: list[dict[str, Any]] = []
    for i in (1, 2, 3):
        rows = _journal(out / f"journal.shard-{i}-of-3.sqlite")
        # Only its lines, under their places in the whole file (seq, id, line number).
        mine = _shard_seqs(count, i, 3)
        assert mine == [row["seq"] for row in rows]
        assert [f"{seq + 1:04d}" for seq in mine] == [row["item_id"] for row in rows]
        assert [seq + 3 for seq in mine] == [row["line"] for row in rows]  # after the header
        assert {"downloaded"} == {row["state"] for row in rows}
        entries = _manifest(out / f"manifest.shard-{i}-of-3.jsonl")
        assert [row["item_id"] for row in rows] == [entry["id"] for entry in entries]
        sharded.extend(entries)
        log = (tmp_path / f"{i}.log").read_text()
        assert f"(shard {i}/3) -> {out}: {len(mine)} items" in log
    assert not (out / "journal.sqlite").exists()
    assert not (out / "manifest.jsonl").exists()
    pngs = sorted(path.name for path in out.glob("*.png"))
    assert count == len(pngs)
    assert {SIZE} == {png_size(out / name) for name in pngs}
    # The unsharded run of the same file writes the same lines under the same names.
    whole = tmp_path / "whole"
    result = cli("batch", str(source), "--out", str(whole), *emulator.flags())
    assert 0 == result.returncode, result.stdout[-3000:]
    assert sorted(map(_what_a_line_became, _manifest(whole / "manifest.jsonl"))) == sorted(
        map(_what_a_line_became, sharded)
    )
    assert pngs == sorted(path.name for path in whole.glob("*.png"))


def test_a_shard_killed_partway_resumes_only_its_own_lines(emulator: Emulator, tmp_path: Path):
    """SIGKILL shard 2/3 at work, run it again: its lines finish, nothing is created twice."""
    count = 60
    source, lines = _source(tmp_path, count)
    out = tmp_path / "out"
    journal = out / "journal.shard-2-of-3.sqlite"
    mine = _shard_seqs(count, 2, 3)
    # Every create is held 3 simulated seconds, so some are on their way when the worker dies.
    emulator.fault(kind="delay", endpoints=["create"], delay=3.0)
    command = _batch(emulator, source, out, "--shard", "2/3", "--in-flight", "4")
    worker = _start(command, tmp_path / "first.log")
    started = time.monotonic()
    while _states(journal).get("downloaded", 0) < 4 and time.monotonic() - started < 60:
        assert worker.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        time.sleep(0.01)
    worker.send_signal(signal.SIGKILL)
    assert -signal.SIGKILL == worker.wait(timeout=30)
    at_kill = {row["seq"]: row for row in _journal(journal)}
    assert mine == sorted(at_kill)
    downloaded = {seq for seq, row in at_kill.items() if row["state"] == "downloaded"}
    assert 4 <= len(downloaded) < len(mine), "killed too late to prove anything"
    tasks_before = {seq: row["task_id"] for seq, row in at_kill.items() if row["task_id"]}
    # Run the same command again: only shard 2's lines, each made once.
    resumed = cli(*command)
    assert 0 == resumed.returncode, resumed.stdout[-3000:]
    assert f"resuming: {len(downloaded)} done" in resumed.stdout
    rows = _journal(journal)
    assert mine == [row["seq"] for row in rows]
    assert {"downloaded"} == {row["state"] for row in rows}
    for row in rows:  # a task the killed run had made is the one used: never created again
        if row["seq"] in tasks_before:
            assert tasks_before[row["seq"]] == row["task_id"]
    stats = emulator.stats()
    assert sorted(lines[seq] for seq in mine) == sorted(task["prompt"] for task in stats["tasks"])
    assert {"qwen-image-plus": len(mine)} == stats["tasks_created"]
    assert [] == sorted(out.glob("journal.shard-[13]-of-3.sqlite*"))
    # The other two shards then make exactly the rest.
    for i in (1, 3):
        log = tmp_path / f"{i}.log"
        _finish(_start(_batch(emulator, source, out, "--shard", f"{i}/3"), log), log)
    stats = emulator.stats()
    assert sorted(lines) == sorted(task["prompt"] for task in stats["tasks"])
    assert count == len(list(out.glob("*.png")))


def test_reconciling_a_shard_never_adopts_a_task_of_another_shard(
    emulator: Emulator, tmp_path: Path
):
    """A lost create of shard 2 whose prompt shard 1 made too: sent again, not taken over."""
    source = tmp_path / "p.txt"
    source.write_text("a cat on a wall\na cat on a wall\n")  # record 0 to shard 1, 1 to shard 2
    out = tmp_path / "out"
    emulator.fault(kind="drop_before", endpoints=["create"], times=1)
    second = cli(*_batch(emulator, source, out, "--shard", "2/2"))
    assert (1, 0) == (second.returncode, emulator.created())  # uncertain: no task was made
    first = cli(*_batch(emulator, source, out, "--shard", "1/2"))
    assert (0, 1) == (first.returncode, emulator.created())
    # Shard 1's task echoes the same prompt, but it is in shard 1's journal: no orphan here.
    again = cli(*_batch(emulator, source, out, "--shard", "2/2"))
    assert 0 == again.returncode, again.stdout[-3000:]
    assert "safe to send again" in again.stdout
    assert 2 == emulator.created()
    (one,) = _journal(out / "journal.shard-1-of-2.sqlite")
    (two,) = _journal(out / "journal.shard-2-of-2.sqlite")
    assert one["task_id"] != two["task_id"]


def test_a_shard_with_no_line_has_nothing_to_do(emulator: Emulator, tmp_path: Path):
    """More workers than lines: the extra ones exit 0 without a journal or a request."""
    source, _ = _source(tmp_path, 2)
    out = tmp_path / "out"
    result = cli(*_batch(emulator, source, out, "--shard", "3/3"))
    assert (0, 0) == (result.returncode, emulator.created())
    assert "shard 3/3 of" in result.stderr
    assert "holds no item" in result.stderr
    assert not out.exists()


def test_shard_1_of_1_is_the_whole_input_under_the_usual_names(tmp_path: Path):
    """--shard 1/1 resumes (and is resumed by) the unsharded run: one journal, one manifest."""
    source, _ = _source(tmp_path, 3)
    out = tmp_path / "out"
    assert 0 == cli("batch", str(source), "--out", str(out), "--emulator").returncode
    again = cli("batch", str(source), "--out", str(out), "--emulator", "--shard", "1/1")
    assert 0 == again.returncode, again.stdout + again.stderr
    assert "already done" in again.stdout
    assert ["journal.sqlite", "manifest.jsonl"] == sorted(
        path.name for path in out.iterdir() if path.suffix != ".png"
    )


@pytest.mark.parametrize("value", ["0/3", "4/3", "x", "1/0", "1/", "/3", "1.5/3", "2/3/4"])
def test_an_invalid_shard_is_a_usage_error_naming_the_flag(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """Not i/N with 1 <= i <= N: exit 2, the message names --shard and the value."""
    source, _ = _source(tmp_path, 3)
    with pytest.raises(SystemExit) as exited:
        main(["batch", str(source), "--out", str(tmp_path / "out"), "--emulator", "--shard", value])
    assert 2 == exited.value.code
    message = capsys.readouterr().err.splitlines()[-1]
    assert "argument --shard: expected i/N with 1 <= i <= N" in message
    assert repr(value) in message
    assert not (tmp_path / "out").exists()


# --- --coordinator -------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["flag", "environment"])
def test_a_coordinator_url_that_is_not_redis_is_a_usage_error(
    where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    """Not redis://, rediss:// or unix://: exit 2 naming the source, the URL itself not shown."""
    source, _ = _source(tmp_path, 1)
    url = "http://user:secret-password@redis.example:6379"
    args = ["batch", str(source), "--out", str(tmp_path / "out"), "--emulator"]
    if where == "flag":
        args += ["--coordinator", url]
    else:
        monkeypatch.setenv("AIOQWENIMAGE_COORDINATOR", url)
    assert 2 == main(args)
    err = capsys.readouterr().err
    named = "--coordinator" if where == "flag" else "$AIOQWENIMAGE_COORDINATOR"
    assert f"{named} wants a redis://, rediss:// or unix:// URL" in err
    assert "secret-password" not in err


def test_without_the_redis_extra_the_coordinator_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    """redis-py absent (as on a plain install): exit 2 with the pip command; nothing sent."""
    # What `import redis` does where the package is not installed.
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.delitem(sys.modules, "aioqwenimage.redis", raising=False)
    source, _ = _source(tmp_path, 1)
    out = tmp_path / "out"
    args = ["batch", str(source), "--out", str(out), "--emulator", "--coordinator"]
    assert 2 == main([*args, "redis://localhost:6379/0"])
    err = capsys.readouterr().err
    assert "--coordinator needs the redis extra: pip install 'aioqwenimage[redis]'" in err
    assert not out.exists()


def test_generate_ignores_the_coordinator_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """$AIOQWENIMAGE_COORDINATOR is batch's: another command does not even read it."""
    monkeypatch.setenv("AIOQWENIMAGE_COORDINATOR", "not a url")
    assert 0 == main(["generate", "a fox", "--emulator", "--out", str(tmp_path), "-q"])


@pytest.fixture
def limited() -> Iterator[Emulator]:
    """An emulator with the documented limits that refuses (429) creates beyond the cap."""
    flags = ("--time-scale", SCALE, "--over-cap", "reject")
    with emulator_process(*flags, stop_timeout=20) as (base_url, api_key):
        yield Emulator(base_url, api_key, float(SCALE))


def test_shards_sharing_a_coordinator_keep_to_the_accounts_limits_together(
    limited: Emulator, redis_url: str, tmp_path: Path
):
    """2 shards at once, each allowed the documented 2 in flight: together never more than 2."""
    count = 24
    source, lines = _source(tmp_path, count)
    out = tmp_path / "out"
    workers = [
        _start(
            [*_batch(limited, source, out, "--shard", f"{i}/2"), "--coordinator", redis_url],
            tmp_path / f"{i}.log",
        )
        for i in (1, 2)
    ]
    for i, worker in enumerate(workers, start=1):
        _finish(worker, tmp_path / f"{i}.log")
        log = (tmp_path / f"{i}.log").read_text()
        assert "sharing the account's limits with other processes through Redis" in log
        assert redis_url not in log
    stats = limited.stats()
    assert sorted(lines) == sorted(task["prompt"] for task in stats["tasks"])
    assert (0, 2) == (stats["throttled"], stats["peak_in_flight"])
    # The shards did run at the same time (else the limit held for want of a second process).
    spans = []
    for i in (1, 2):
        rows = _journal(out / f"journal.shard-{i}-of-2.sqlite")
        spans.append(
            (min(row["sending_at"] for row in rows), max(row["finished_at"] for row in rows))
        )
    assert max(start for start, _ in spans) < min(end for _, end in spans)
    # The account's keys are named from a hash of the key, which never reaches Redis.
    import redis  # the tests extra brings it (a plain install may not have it)

    account = hashlib.sha256(limited.api_key.encode()).hexdigest()[:16]
    with redis.Redis.from_url(redis_url) as client:
        keys = [key.decode() for key in client.keys("*")]
    assert keys
    assert all(key.startswith(f"aioqwenimage:{{{account}}}:") for key in keys), keys
