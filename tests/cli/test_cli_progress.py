"""What the batch shows: the tally, plain lines (no terminal, no rich), live frames, the summary."""

from __future__ import annotations

import io
import re
import sys

import pytest

from aioqwenimage._cli import build_parser
from aioqwenimage._cli._messages import format_duration
from aioqwenimage._cli._progress import (
    Phase,
    PlainDisplay,
    RichDisplay,
    Tally,
    make_display,
)
from aioqwenimage._cli._summary import Summary, render_summary_plain


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _tally(clock: Clock, total: int = 10) -> Tally:
    tally = Tally(total=total, clock=clock)
    for seq in range(total):
        tally.set(seq, Phase.QUEUED)
    return tally


def test_the_tally_counts_phases_rate_and_eta():
    """Waiting, in flight, done and failed follow the phases; rate and ETA follow completions."""
    clock = Clock()
    tally = _tally(clock)
    assert (None, None, 10) == (tally.rate(), tally.eta(), tally.waiting)
    for seq in range(4):
        tally.set(seq, Phase.RUNNING)
    clock.now += 2
    tally.set(0, Phase.DONE)
    tally.set(1, Phase.DONE)
    tally.set(2, Phase.FAILED)
    tally.set(5, Phase.SKIPPED)
    assert (5, 1, 3, 1) == (tally.waiting, tally.in_flight, tally.done, tally.failed)
    assert 1.0 == tally.rate()  # two done in two seconds
    assert 6.0 == tally.eta()  # six items to go at one a second
    clock.now += 60  # completions older than the window no longer count
    assert tally.rate() is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "?"), (0.04, "0.0s"), (9.94, "9.9s"), (42.4, "42s"), (185, "3m05s"), (3725, "1h02m")],
)
def test_durations_read_naturally(seconds: float | None, text: str):
    """Short durations keep a decimal, long ones minutes or hours."""
    assert text == format_duration(seconds)


def test_plain_display_writes_timestamped_lines_and_a_progress_line_now_and_then():
    """Events are lines as they happen; the tally is a line every few seconds and at the end."""
    clock = Clock()
    tally = _tally(clock, total=3)
    stream = io.StringIO()
    display = PlainDisplay(tally, stream, every=5.0, clock=clock)
    display.log("done 0001: a.png")
    tally.set(0, Phase.DONE)
    display.refresh()  # too soon: nothing
    clock.now += 5
    display.refresh()
    display.refresh()  # same second, same numbers: nothing
    display.close()
    lines = stream.getvalue().splitlines()
    assert all(re.match(r"^\d\d:\d\d:\d\d ", line) for line in lines)
    assert ["done 0001: a.png", "progress 1/3:", "progress 1/3:"] == [
        line[9:] if "done" in line[9:14] else line[9:22] for line in lines
    ]
    assert "done 1" in lines[-1]


def test_not_a_terminal_means_plain_lines():
    """A pipe or a file gets plain lines, starting with the title."""
    stream = io.StringIO()
    display, console = make_display(_tally(Clock()), title="p.txt -> out", stream=stream)
    assert (PlainDisplay, None) == (type(display), console)
    assert stream.getvalue().endswith(" p.txt -> out\n")


def test_without_rich_a_terminal_gets_plain_lines(monkeypatch: pytest.MonkeyPatch):
    """rich is an optional extra: without it, even a terminal gets plain lines."""
    monkeypatch.setitem(sys.modules, "rich.console", None)
    display, console = make_display(_tally(Clock()), title="t", stream=FakeTerminal())
    assert (PlainDisplay, None) == (type(display), console)


def test_plain_is_forced_by_the_flag_or_a_dumb_terminal(monkeypatch: pytest.MonkeyPatch):
    """--plain, or TERM=dumb, turn the live display off."""
    display, _ = make_display(_tally(Clock()), title="t", plain=True, stream=FakeTerminal())
    assert isinstance(display, PlainDisplay)
    monkeypatch.setenv("TERM", "dumb")
    display, _ = make_display(_tally(Clock()), title="t", stream=FakeTerminal())
    assert isinstance(display, PlainDisplay)


def test_a_terminal_gets_the_live_frame_with_bar_and_counters(monkeypatch: pytest.MonkeyPatch):
    """On a terminal with rich: a title, rich.progress columns (n/total, %, times), counters."""
    monkeypatch.setenv("TERM", "xterm-256color")
    clock = Clock()
    tally = _tally(clock, total=4)
    terminal = FakeTerminal()
    display, console = make_display(tally, title="p.txt -> out: 4 items", stream=terminal)
    assert isinstance(display, RichDisplay)
    assert console is not None
    tally.set(0, Phase.RUNNING)
    tally.set(1, Phase.DONE)
    display.log("failed 0003: InternalError: boom")
    display.close()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", terminal.getvalue())
    assert "failed 0003: InternalError: boom" in text
    assert "p.txt -> out: 4 items" in text
    assert re.search(r"1/4\s+25% elapsed 0:00:\d\d ETA (-|\d):", text)
    last = [line for line in text.splitlines() if line.startswith("waiting")][-1]
    assert re.match(r"waiting 2  in flight 1  done 1  failed 0  rate \S+$", last.rstrip())


def test_the_plain_summary_lists_counts_and_what_needs_attention():
    """Counts per outcome and a total; failed and uncertain items with their reasons."""
    summary = Summary(
        counts=[("done", 7), ("failed", 1), ("uncertain", 1)],
        attention=[("0003", "failed", "InternalError: boom"), ("0009", "uncertain", "lost")],
        total=9,
        elapsed=12.0,
        created=9,
        out_dir="out",
        manifest="out/manifest.jsonl",
    )
    text = render_summary_plain(summary)
    assert "  done            7" in text
    assert "  total           9" in text
    assert "  failed    0003: InternalError: boom" in text
    assert "  uncertain 0009: lost" in text
    assert text.endswith("images in out; manifest out/manifest.jsonl")


def test_every_command_is_registered():
    """generate, batch, tasks (list, show, cancel) and emulator parse."""
    parser = build_parser()
    assert "batch" == parser.parse_args(["batch", "p.txt", "--out", "o"]).command
    assert "generate" == parser.parse_args(["generate", "x", "--out", "o"]).command
    assert "show" == parser.parse_args(["tasks", "show", "id"]).action
    assert "emulator" == parser.parse_args(["emulator"]).command
    args = parser.parse_args(["batch", "p.txt", "--out", "o", "--no-prompt-extend", "-n", "2"])
    assert (False, 2, None) == (args.prompt_extend, args.n, args.watermark)


def test_the_rich_summary_is_a_table_with_a_total_row():
    """On a terminal the summary is a table of outcomes with a total footer, then the details."""
    from rich.console import Console

    from aioqwenimage._cli._summary import render_summary_rich

    summary = Summary(
        counts=[("done", 7), ("failed", 1)],
        attention=[("0003", "failed", "InternalError: boom")],
        total=8,
        elapsed=3.0,
        created=8,
        out_dir="out",
        manifest="out/manifest.jsonl",
        interrupted=True,
    )
    stream = io.StringIO()
    render_summary_rich(summary, Console(file=stream, width=100, color_system=None))
    text = stream.getvalue()
    assert "summary (interrupted)" in text
    assert re.search(r"│ done\s+│\s+7 │", text)
    assert re.search(r"│ total\s+│\s+8 │", text)
    assert "  failed    0003: InternalError: boom" in text
