"""
The command line as a new user meets it: --version, defaults, status while waiting, what the bar
says after Ctrl-C, model names with a suggestion, network failures in words, only the flags that
do something, -v/-q.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import json
import logging
import re
import socket
import subprocess
import sys
import warnings
from typing import TYPE_CHECKING

import pytest

from aioqwenimage._cli import build_parser
from aioqwenimage._cli._generate import WaitStatus
from aioqwenimage._cli._messages import configure_output
from aioqwenimage._cli._progress import Phase, PlainDisplay, RichDisplay, Tally
from aioqwenimage._models import EventKind, TaskEvent, TaskStatus
from tests.cli.test_cli_commands import (
    Emulator,
    batch,
    cli,
    prompts,
    server,  # noqa: F401 - the module's emulator process
)
from tests.cli.test_cli_commands import emulator as emulator  # noqa: PLC0414 - the fixture

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def _help(*names: str) -> str:
    """The help text of a (sub)command, from the parser itself."""
    parser: argparse.ArgumentParser = build_parser()
    for name in names:
        choices = next(
            action.choices
            for action in parser._actions
            if isinstance(action, argparse._SubParsersAction)
        )
        parser = choices[name]
    return parser.format_help()


def test_version_prints_the_installed_version():
    """--version: the distribution's version, exit 0."""
    result = cli("--version")
    expected = f"aioqwenimage {importlib.metadata.version('aioqwenimage')}"
    assert (0, expected) == (result.returncode, result.stdout.strip())


def test_generate_without_out_saves_into_the_current_directory(tmp_path: Path):
    """No --out: the images land in the working directory, and their names are printed."""
    result = subprocess.run(
        [sys.executable, "-m", "aioqwenimage", "generate", "a fox", "--emulator"],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        cwd=tmp_path,
    )
    assert 0 == result.returncode, result.stderr
    names = result.stdout.split()
    assert 1 == len(names)
    assert [path.name for path in tmp_path.glob("*.png")] == names


def test_generate_shows_the_status_and_elapsed_time_while_it_waits(
    emulator: Emulator, tmp_path: Path
):
    """Not a terminal: a line per status, with the task id and the time since sending."""
    result = cli("generate", "a fox", "--out", str(tmp_path), *emulator.flags())
    assert 0 == result.returncode, result.stderr
    lines = result.stderr.splitlines()
    pattern = r"aioqwenimage: task \S+ \(qwen-image-plus\): (\w+), [\d.]+s elapsed"
    statuses = [re.fullmatch(pattern, line) for line in lines]
    assert all(statuses), lines
    assert "PENDING" == statuses[0][1]  # type: ignore[index]
    assert "SUCCEEDED" == statuses[-1][1]  # type: ignore[index]
    quiet = cli("generate", "a fox", "-q", "--out", str(tmp_path), *emulator.flags())
    assert (0, "") == (quiet.returncode, quiet.stderr)


def test_on_a_terminal_generate_shows_a_spinner_with_status_and_elapsed_time():
    """A terminal gets a live line (rich) that follows the polls and the clock."""
    clock = Clock()
    terminal = FakeTerminal()
    status = WaitStatus("qwen-image-plus", stream=terminal, clock=clock)
    status.started("task-1")
    clock.now += 12
    status.on_event(
        TaskEvent(
            kind=EventKind.POLLED,
            model="qwen-image-plus",
            task_id="task-1",
            status=TaskStatus.RUNNING,
            at=0.0,
        )
    )
    status.close()
    text = _plain(terminal.getvalue())
    assert "task task-1 (qwen-image-plus): RUNNING, 12s elapsed" in text


def test_after_an_interrupt_the_bar_counts_what_got_done_not_what_was_let_go():
    """29 done, 171 not sent: the bar says 29/200, the counters say 171 not sent."""
    tally = Tally(total=200, clock=Clock())
    for seq in range(200):
        tally.set(seq, Phase.DONE if seq < 29 else Phase.NOT_SENT)
    stream = io.StringIO()
    PlainDisplay(tally, stream).close()
    assert (
        "progress 29/200: waiting 0 in flight 0 done 29 failed 0 not sent 171" in stream.getvalue()
    )
    terminal = FakeTerminal()
    from rich.console import Console

    display = RichDisplay(tally, Console(file=terminal, width=120), "p.txt -> out")
    display.close()
    text = _plain(terminal.getvalue())
    assert re.search(r"29/200\s+14%", text), text
    assert "200/200" not in text
    assert "not sent 171" in text


def test_the_counters_are_all_current_states():
    """waiting / in flight / done / failed partition the items (no cumulative 'submitted')."""
    tally = Tally(total=6, clock=Clock())
    phases = [
        Phase.QUEUED,
        Phase.WAITING,
        Phase.RUNNING,
        Phase.DOWNLOADING,
        Phase.DONE,
        Phase.FAILED,
    ]
    for seq, phase in enumerate(phases):
        tally.set(seq, phase)
    line = PlainDisplay(tally, io.StringIO()).progress_line()
    assert line.startswith("progress 2/6: waiting 2 in flight 2 done 1 failed 1 rate")
    assert "submitted" not in line


def test_a_wrong_model_name_gets_a_did_you_mean(tmp_path: Path):
    """A typo is exit 2 with the nearest catalog name, for generate, batch and input lines."""
    generated = cli("generate", "a fox", "--model", "qwen-imag-plus", "--emulator")
    assert 2 == generated.returncode
    assert "did you mean 'qwen-image-plus'?" in generated.stderr
    assert "wanx2.0-t2i-turbo" not in generated.stderr  # no list of 26 names
    source = prompts(tmp_path, 1)
    batched = cli(
        "batch",
        str(source),
        "--model",
        "wam2.2-t2i-flash",
        "--emulator",
        "--out",
        str(tmp_path / "o"),
    )
    assert (2, True) == (batched.returncode, "did you mean 'wan2.2-t2i-flash'?" in batched.stderr)
    lines = tmp_path / "p.jsonl"
    lines.write_text(json.dumps({"prompt": "a fox", "model": "qwen-imag-plus"}) + "\n")
    per_line = cli("batch", str(lines), "--emulator", "--out", str(tmp_path / "o2"))
    assert 2 == per_line.returncode
    assert (
        f"{lines}:1: unknown model 'qwen-imag-plus'; did you mean 'qwen-image-plus'?"
        in per_line.stderr
    )


def test_a_model_of_a_known_family_but_not_in_the_catalog_warns_in_one_line(tmp_path: Path):
    """A near-miss of a known family runs (it may be a new snapshot) with a one-line warning."""
    result = cli(
        "generate", "a fox", "--model", "qwen-image-pluss", "--emulator", "--out", str(tmp_path)
    )
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert 1 == len(warnings), result.stderr
    assert warnings[0].startswith("aioqwenimage: warning: model 'qwen-image-pluss'")
    assert "did you mean 'qwen-image-plus'?" in warnings[0]
    assert "UserWarning" not in result.stderr


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_network_failure_is_a_sentence_not_a_class_name(closed_port: int, tmp_path: Path):
    """Nothing listening: exit 1 with what failed and what to check; no internal class name."""
    result = cli(
        "generate",
        "a fox",
        "--out",
        str(tmp_path),
        "--time-scale",
        "0.01",
        "--base-url",
        f"http://127.0.0.1:{closed_port}/api/v1",
        "--api-key",
        "sk-test",
    )
    assert 1 == result.returncode
    assert "network failure: could not connect" in result.stderr
    assert "--base-url" in result.stderr
    assert "Error" not in result.stderr  # ConnectFailedError, TransportError...
    assert "Traceback" not in result.stderr


def test_tasks_show_and_cancel_list_only_flags_that_do_something():
    """No --in-flight / --submits-per-second for tasks; cancel has no query-rate flag either."""
    helps = {name: _help("tasks", name) for name in ("list", "show", "cancel")}
    for name in ("list", "show", "cancel"):
        assert "--in-flight" not in helps[name]
        assert "--submits-per-second" not in helps[name]
        assert not re.search(r"^\s+--emulator", helps[name], re.MULTILINE)
        assert "-q, --quiet" in helps[name]
    assert "--queries-per-second" in helps["show"]
    assert "--queries-per-second" not in helps["cancel"]
    assert "--in-flight" in _help("batch")


def test_tasks_with_emulator_says_why_not_and_what_to_do_instead():
    """An emulator started for one command has no tasks: exit 2, naming `aioqwenimage emulator`."""
    result = cli("tasks", "list", "--emulator")
    assert 2 == result.returncode
    assert "has no tasks" in result.stderr
    assert "aioqwenimage emulator" in result.stderr


@pytest.fixture
def library_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("aioqwenimage")
    level, handlers = logger.level, list(logger.handlers)
    formatwarning = warnings.formatwarning  # configure_output sets it for the command's process
    yield logger
    logger.setLevel(level)
    logger.handlers[:] = handlers
    warnings.formatwarning = formatwarning


@pytest.mark.parametrize(
    ("verbose", "quiet", "level"),
    [(1, False, logging.INFO), (2, False, logging.DEBUG), (0, True, logging.ERROR)],
)
def test_v_and_q_set_the_library_loggers_level(
    library_logger: logging.Logger, verbose: int, quiet: bool, level: int
):
    """-v is INFO, -vv DEBUG, -q ERROR, on the `aioqwenimage` logger, with one stderr handler."""
    library_logger.handlers[:] = []
    configure_output(verbose, quiet=quiet)
    assert (level, 1) == (library_logger.level, len(library_logger.handlers))
    configure_output(verbose, quiet=quiet)
    assert 1 == len(library_logger.handlers)


def test_without_v_or_q_the_library_logger_is_left_alone(library_logger: logging.Logger):
    """No flag: the level is whatever the library (AIOQWENIMAGE_LOG) or the app chose."""
    library_logger.setLevel(logging.WARNING)
    configure_output(0, quiet=False)
    assert logging.WARNING == library_logger.level


def test_batch_quiet_prints_no_progress_only_problems_and_the_summary(
    emulator: Emulator, tmp_path: Path
):
    """-q: no per-item or progress lines; the summary still ends the output."""
    result = batch(emulator, prompts(tmp_path, 3), tmp_path / "out", "-q")
    assert 0 == result.returncode, result.stderr
    assert "progress" not in result.stdout
    assert " done 0001" not in result.stdout
    assert "summary" in result.stdout


def test_a_lost_create_answer_in_a_batch_is_described_in_words(emulator: Emulator, tmp_path: Path):
    """An uncertain create says what happened to the connection, not an aiohttp class name."""
    emulator.fault(kind="drop_after", endpoints=["create"], times=1)
    result = batch(emulator, prompts(tmp_path, 2), tmp_path / "out")
    assert 1 == result.returncode
    assert "the create was sent but its answer was lost (" in result.stdout
    assert "ServerDisconnectedError" not in result.stdout
