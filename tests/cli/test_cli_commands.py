"""
The commands end to end: the CLI as a subprocess against an emulator in another process.

Exit codes, plain output when not a terminal, failures, reconciliation of uncertain creates,
bad input, a missing key, an unwritable output directory, ``generate``, ``tasks``, ``--emulator``.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.emulator_process import Emulator, emulator_process

if TYPE_CHECKING:
    from collections.abc import Iterator

SCALE = "0.01"


@pytest.fixture(scope="module")
def server() -> Iterator[Emulator]:
    with emulator_process("--time-scale", SCALE, stop_timeout=20) as (base_url, api_key):
        yield Emulator(base_url, api_key, float(SCALE))


@pytest.fixture
def emulator(server: Emulator) -> Emulator:
    server.call("POST", "reset", {})
    server.call("DELETE", "faults")
    return server


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DASHSCOPE_")}
    environment.update(env or {})
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "aioqwenimage", *args],
        capture_output=True,
        text=True,
        timeout=90,
        env=environment,
        check=False,
    )


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def prompts(tmp_path: Path, count: int, name: str = "p.txt") -> Path:
    path = tmp_path / name
    path.write_text("".join(f"prompt {i}: a fox, variant {i}\n" for i in range(count)))
    return path


def manifest(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def batch(emulator: Emulator, source: Path, out: Path, *extra: str):
    return cli(
        "batch", str(source), "--out", str(out), *emulator.flags(), "--in-flight", "8", *extra
    )


def test_batch_exits_0_with_plain_lines_when_not_a_terminal(emulator: Emulator, tmp_path: Path):
    """All done: exit 0; piped output is plain lines, no escape codes; PNGs, manifest."""
    out = tmp_path / "out"
    result = batch(emulator, prompts(tmp_path, 6), out)
    assert (0, "") == (result.returncode, result.stderr)
    lines = result.stdout.splitlines()
    assert "\x1b[" not in result.stdout
    assert lines[0].endswith("6 items, qwen-image-plus")
    assert 6 == sum(1 for line in lines if " done 0" in line)
    assert any("progress 6/6:" in line and "done 6" in line for line in lines)
    assert "summary" in lines
    entries = manifest(out)
    assert ["done"] * 6 == [entry["status"] for entry in entries]
    for entry in entries:
        assert [(1664, 928)] == [png_size(out / name) for name in entry["files"]]
        assert entry["echoed_prompt"] == entry["prompt"]
    assert 6 == emulator.created()


def test_failed_items_exit_1_stay_failed_and_retry_failed_sends_them_again(
    emulator: Emulator, tmp_path: Path
):
    """Failed tasks: exit 1, reported with code; a re-run skips them; --retry-failed redoes them."""
    emulator.fault(kind="task_failed", endpoints=["create"], times=2, code="InternalError.Algo")
    out = tmp_path / "out"
    source = prompts(tmp_path, 5)
    first = batch(emulator, source, out)
    assert 1 == first.returncode
    failed = [entry for entry in manifest(out) if entry["status"] == "failed"]
    assert ["InternalError.Algo"] * 2 == [entry["error"]["code"] for entry in failed]
    assert "needs attention:" in first.stdout
    again = batch(emulator, source, out)
    assert (1, 5) == (again.returncode, emulator.created())
    retried = batch(emulator, source, out, "--retry-failed")
    assert (0, 7) == (retried.returncode, emulator.created())
    assert ["done"] * 5 == [entry["status"] for entry in manifest(out)]


def test_a_create_dropped_after_it_took_effect_is_adopted_on_the_next_run(
    emulator: Emulator, tmp_path: Path
):
    """Uncertain creates are listed, not re-sent; the re-run finds their tasks and adopts them."""
    emulator.fault(kind="drop_after", endpoints=["create"], times=2)
    out = tmp_path / "out"
    source = prompts(tmp_path, 6)
    first = batch(emulator, source, out)
    assert (1, 6) == (first.returncode, emulator.created())
    assert 2 == sum(1 for entry in manifest(out) if entry["status"] == "uncertain")
    assert "uncertain" in first.stdout
    second = batch(emulator, source, out)
    assert 0 == second.returncode, second.stdout
    assert "adopted" in second.stdout
    # No second create: the two tasks the dropped answers made were found and used.
    assert 6 == emulator.created()
    entries = manifest(out)
    assert ["done"] * 6 == [entry["status"] for entry in entries]
    assert 6 == len({entry["task_id"] for entry in entries})


def test_a_create_that_never_took_effect_is_sent_again_after_reconciliation(
    emulator: Emulator, tmp_path: Path
):
    """A dropped request that created nothing: the listing proves it, so it is safely re-sent."""
    emulator.fault(kind="drop_before", endpoints=["create"], times=1)
    out = tmp_path / "out"
    source = prompts(tmp_path, 4)
    first = batch(emulator, source, out)
    assert (1, 3) == (first.returncode, emulator.created())
    second = batch(emulator, source, out)
    assert (0, 4) == (second.returncode, emulator.created())
    assert "safe to send again" in second.stdout


def test_invalid_lines_are_all_reported_and_nothing_is_submitted(
    emulator: Emulator, tmp_path: Path
):
    """Exit 2, every bad line as file:line; no task, no journal; --skip-invalid runs the rest."""
    source = tmp_path / "p.jsonl"
    source.write_text(
        '{"prompt": "ok"}\n{"prompt": "x", "size": "100x100"}\n{broken\n{"prompt": ""}\n'
    )
    out = tmp_path / "out"
    result = batch(emulator, source, out)
    assert 2 == result.returncode
    reported = [line for line in result.stderr.splitlines() if line.startswith(str(source))]
    assert [f"{source}:2", f"{source}:3", f"{source}:4"] == [
        line.split(": ", 1)[0] for line in reported
    ]
    assert "3 invalid lines" in result.stderr
    assert (0, False) == (emulator.created(), (out / "journal.sqlite").exists())
    skipped = batch(emulator, source, out, "--skip-invalid")
    assert (0, 1) == (skipped.returncode, emulator.created())


@pytest.mark.parametrize(
    "args",
    [
        ["generate", "a fox", "--out", "OUT"],
        ["batch", "SOURCE", "--out", "OUT"],
        ["tasks", "list"],
    ],
)
def test_a_missing_key_is_one_line_saying_how_to_set_it(tmp_path: Path, args: list[str]):
    """No key: exit 2 and a single line naming DASHSCOPE_API_KEY and --api-key."""
    source = prompts(tmp_path, 1)
    argv = [
        str(source) if a == "SOURCE" else str(tmp_path / "o") if a == "OUT" else a for a in args
    ]
    result = cli(*argv)
    assert (2, "") == (result.returncode, result.stdout)
    lines = result.stderr.strip().splitlines()
    assert 1 == len(lines)
    assert "DASHSCOPE_API_KEY" in lines[0]
    assert "--api-key" in lines[0]


def test_an_unwritable_output_directory_fails_before_any_submission(
    emulator: Emulator, tmp_path: Path
):
    """An --out that cannot be written is exit 2, with nothing sent."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = batch(emulator, prompts(tmp_path, 2), blocker / "out")
    assert 2 == result.returncode
    assert "cannot write to the output directory" in result.stderr
    generated = cli("generate", "a fox", "--out", str(blocker / "g"), *emulator.flags())
    assert (2, 0) == (generated.returncode, emulator.created())


def test_a_journal_written_for_another_input_is_refused(emulator: Emulator, tmp_path: Path):
    """Same --out, different input file (or changed content): refused with a clear message."""
    out = tmp_path / "out"
    assert 0 == batch(emulator, prompts(tmp_path, 2, "a.txt"), out).returncode
    other = batch(emulator, prompts(tmp_path, 3, "b.txt"), out)
    assert 2 == other.returncode
    assert "written for a different batch" in other.stderr
    assert "a.txt" in other.stderr
    assert "b.txt" in other.stderr
    assert 2 == emulator.created()


def test_generate_saves_the_images_and_prints_their_paths(emulator: Emulator, tmp_path: Path):
    """generate: exit 0, one path per line on stdout, real PNGs of the requested size; --json."""
    out = tmp_path / "g"
    result = cli("generate", "a fox", "--size", "1328x1328", "--out", str(out), *emulator.flags())
    assert 0 == result.returncode, result.stderr
    paths = result.stdout.split()
    assert 1 == len(paths)
    assert (1328, 1328) == png_size(out / paths[0].rsplit("/", 1)[-1])
    as_json = cli("generate", "a cat", "--json", "--out", str(out), *emulator.flags())
    data = json.loads(as_json.stdout)
    assert ("a cat", 1) == (data["prompt"], len(data["files"]))
    bad = cli("generate", "a fox", "--size", "100x100", "--out", str(out), *emulator.flags())
    assert 2 == bad.returncode
    assert "size" in bad.stderr
    assert 2 == emulator.created()


def test_tasks_list_show_and_cancel(emulator: Emulator, tmp_path: Path):
    """list shows the batch's tasks; show one by id; cancelling a finished task exits 1."""
    out = tmp_path / "out"
    assert 0 == batch(emulator, prompts(tmp_path, 3), out).returncode
    listed = cli("tasks", "list", "--json", *emulator.flags())
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    ids = {entry["task_id"] for entry in manifest(out)}
    assert (0, ids) == (listed.returncode, {row["task_id"] for row in rows})
    table = cli("tasks", "list", "--since", "1h", *emulator.flags())
    assert "TASK ID" in table.stdout.splitlines()[0]
    task_id = min(ids)
    shown = cli("tasks", "show", task_id, "--json", *emulator.flags())
    data = json.loads(shown.stdout)
    assert (0, "SUCCEEDED", task_id) == (shown.returncode, data["status"], data["task_id"])
    assert data["prompt"].startswith("prompt ")
    saved = cli("tasks", "show", task_id, "--out", str(tmp_path / "s"), *emulator.flags())
    assert 0 == saved.returncode
    assert 1 == len(list((tmp_path / "s").glob("*.png")))
    cancelled = cli("tasks", "cancel", task_id, *emulator.flags())
    assert 1 == cancelled.returncode
    assert "not PENDING" in cancelled.stderr
    unknown = cli("tasks", "show", "no-such-task", *emulator.flags())
    assert 1 == unknown.returncode


def test_emulator_mode_runs_the_readme_command_offline(tmp_path: Path):
    """batch examples/prompts.txt --emulator: real PNGs, exit 0, with no key and no network."""
    out = tmp_path / "out"
    examples = str(Path(__file__).parents[2] / "examples" / "prompts.txt")
    result = cli("batch", examples, "--emulator", "--out", str(out))
    assert 0 == result.returncode, result.stdout + result.stderr
    entries = manifest(out)
    assert 8 == len(entries)
    assert {(1664, 928)} == {png_size(out / entry["files"][0]) for entry in entries}
    again = cli("batch", examples, "--emulator", "--out", str(out))
    assert (0, True) == (again.returncode, "already done" in again.stdout)
    generated = cli("generate", "a fox", "--emulator", "--out", str(tmp_path / "g"))
    assert 0 == generated.returncode


def test_usage_errors_exit_2(tmp_path: Path):
    """argparse errors and bad flag values are exit 2."""
    assert 2 == cli("batch").returncode
    assert (
        2
        == cli(
            "batch", "x.txt", "--out", str(tmp_path), "--emulator", "--in-flight", "0"
        ).returncode
    )
    assert 2 == cli("tasks", "list", "--since", "3d", "--emulator").returncode
    missing = cli("batch", str(tmp_path / "none.txt"), "--out", str(tmp_path), "--emulator")
    assert (2, True) == (missing.returncode, "cannot read" in missing.stderr)


def test_a_rejected_key_stops_the_batch_with_every_item_still_pending(
    emulator: Emulator, tmp_path: Path
):
    """401 on the first create: exit 1, one clear line, nothing created, all items resumable."""
    out = tmp_path / "out"
    source = prompts(tmp_path, 5)
    flags = ["--base-url", emulator.base_url, "--api-key", "sk-wrong", "--time-scale", SCALE]
    result = cli("batch", str(source), "--out", str(out), *flags)
    assert (1, 0) == (result.returncode, emulator.created())
    assert "stopped: InvalidApiKey" in result.stdout
    assert ["pending"] * 5 == [entry["status"] for entry in manifest(out)]
    assert 0 == batch(emulator, source, out).returncode  # the right key finishes the batch


def test_a_create_refused_by_moderation_fails_that_item_only(emulator: Emulator, tmp_path: Path):
    """A 400 on create (DataInspectionFailed) fails the item with its code; the rest go on."""
    emulator.fault(kind="moderation", endpoints=["create"], times=1)
    out = tmp_path / "out"
    result = batch(emulator, prompts(tmp_path, 4), out)
    assert (1, 3) == (result.returncode, emulator.created())
    codes = [entry["error"]["code"] for entry in manifest(out) if entry["status"] == "failed"]
    assert ["DataInspectionFailed"] == codes
