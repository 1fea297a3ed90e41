"""
What the batch shows while it runs: a live display on a terminal (rich), plain log lines
otherwise (or when rich is not installed). The summary at the end is `aioqwenimage._cli._summary`.

The batch runner owns the numbers (a `Tally`); a display only renders them. Both displays take
the same calls: `Display.log` for one notable line, `Display.refresh` now and then, `Display.close`.

The counters are a partition of *now* (waiting, in flight, done, failed...), never a cumulative
count beside a current one, and the bar counts the items that ended with an outcome: after Ctrl-C
it shows what actually got done, not the items that were merely let go. On a terminal the bar,
elapsed time, rate and ETA are `rich.progress` columns; the plain lines (no rich needed) measure
the rate themselves.
"""

from __future__ import annotations

import enum
import os
import sys
import time
from collections import Counter, deque
from typing import IO, TYPE_CHECKING, Final, Protocol

import attrs

from aioqwenimage._cli._messages import format_duration

if TYPE_CHECKING:
    from collections.abc import Callable

    from rich.console import Console, RenderableType
    from rich.live import Live

__all__ = [
    "Display",
    "Phase",
    "PlainDisplay",
    "QuietDisplay",
    "RichDisplay",
    "Tally",
    "is_terminal",
    "make_display",
]

_RATE_WINDOW: Final = 30.0  # seconds of completions the rate (and so the ETA) is measured over
_PLAIN_EVERY: Final = 5.0  # seconds between progress lines in plain mode


class Phase(enum.Enum):
    """Where an item is in this run (finer than the journal's states, coarser for display)."""

    QUEUED = "queued"
    WAITING = "waiting"  # inside submit(), waiting for the rate limit or an in-flight slot
    SENDING = "sending"
    RECONCILING = "reconciling"
    RUNNING = "running"
    DOWNLOADING = "downloading"
    DONE = "done"
    SKIPPED = "skipped"  # finished by an earlier run
    FAILED = "failed"
    UNCERTAIN = "uncertain"
    EXPIRED = "expired"
    CANCELED = "canceled"
    NOT_SENT = "not sent"  # left pending: interrupted, or refused before creation


_FINAL: Final = frozenset(
    {
        Phase.DONE,
        Phase.SKIPPED,
        Phase.FAILED,
        Phase.UNCERTAIN,
        Phase.EXPIRED,
        Phase.CANCELED,
        Phase.NOT_SENT,
    }
)


@attrs.define
class Tally:
    """Live counts of a batch, by phase, and the completion times the rate is measured from."""

    total: int
    clock: Callable[[], float] = time.monotonic
    phases: dict[int, Phase] = attrs.field(factory=dict)
    counts: Counter[Phase] = attrs.field(factory=Counter)
    created: int = 0  # tasks created (or synchronous calls made) by this run
    reconciled: int = 0  # uncertain items settled by reconciliation
    started: float = attrs.field(init=False)
    _completions: deque[float] = attrs.field(init=False, factory=deque)

    def __attrs_post_init__(self) -> None:
        self.started = self.clock()

    def set(self, seq: int, phase: Phase) -> None:
        """Move item `seq` to `phase`."""
        old = self.phases.get(seq)
        if old is phase:
            return
        if old is not None:
            self.counts[old] -= 1
        self.phases[seq] = phase
        self.counts[phase] += 1
        if phase is Phase.DONE:
            self._completions.append(self.clock())

    def count(self, *phases: Phase) -> int:
        """How many items are in any of `phases`."""
        return sum(self.counts[phase] for phase in phases)

    @property
    def elapsed(self) -> float:
        """Seconds since the run started."""
        return self.clock() - self.started

    @property
    def waiting(self) -> int:
        """Items not created yet: queued, waiting for the limits, being sent or reconciled."""
        return self.count(Phase.QUEUED, Phase.WAITING, Phase.SENDING, Phase.RECONCILING)

    @property
    def ended(self) -> int:
        """Items that ended with an outcome, images or a failure (what the bar counts)."""
        return self.done + self.failed

    @property
    def in_flight(self) -> int:
        """Tasks running now (images downloading included)."""
        return self.count(Phase.RUNNING, Phase.DOWNLOADING)

    @property
    def done(self) -> int:
        """Items with every image on disk, this run or before."""
        return self.count(Phase.DONE, Phase.SKIPPED)

    @property
    def failed(self) -> int:
        """Items that ended without their images."""
        return self.count(Phase.FAILED, Phase.EXPIRED, Phase.CANCELED)

    @property
    def finished(self) -> int:
        """Items this run will not touch again."""
        return sum(self.counts[phase] for phase in _FINAL)

    def rate(self) -> float | None:
        """Items done per second, over the last half minute (``None`` before the first)."""
        now = self.clock()
        while self._completions and self._completions[0] < now - _RATE_WINDOW:
            self._completions.popleft()
        if not self._completions:
            return None
        span = min(_RATE_WINDOW, now - self.started)
        return len(self._completions) / max(span, 1e-3)

    def eta(self) -> float | None:
        """Seconds until every item is done at the current rate."""
        rate = self.rate()
        remaining = self.total - self.finished
        if remaining == 0:
            return 0.0
        return remaining / rate if rate else None


def _counters(tally: Tally) -> list[tuple[str, str]]:
    fields = [
        ("waiting", str(tally.waiting)),
        ("in flight", str(tally.in_flight)),
        ("done", str(tally.done)),
        ("failed", str(tally.failed)),
    ]
    # Shown only when there are some: both need the user's attention.
    for name, phases in (
        ("uncertain", (Phase.UNCERTAIN,)),
        ("not sent", (Phase.NOT_SENT,)),
    ):
        count = tally.count(*phases)
        if count:
            fields.append((name, str(count)))
    return fields


def _status_fields(tally: Tally) -> list[tuple[str, str]]:
    rate = tally.rate()
    return [
        *_counters(tally),
        ("rate", "?" if rate is None else f"{rate:.1f}/s"),
        ("ETA", format_duration(tally.eta())),
        ("elapsed", format_duration(tally.elapsed)),
    ]


class Display(Protocol):
    """What the batch runner talks to."""

    def log(self, line: str) -> None:
        """Show one notable line (an item failed, a decision was made)."""

    def refresh(self) -> None:
        """The tally changed; show it if it is time to."""

    def close(self) -> None:
        """Stop the live part (if any); the terminal is left clean."""


class PlainDisplay:
    """Timestamped lines for logs and pipes: notable events, and the tally every few seconds."""

    def __init__(
        self,
        tally: Tally,
        stream: IO[str],
        *,
        every: float = _PLAIN_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tally = tally
        self._stream = stream
        self._every = every
        self._clock = clock
        self._last = clock()
        self._last_line = ""

    def log(self, line: str) -> None:
        """Write `line` with a wall-clock timestamp."""
        stamp = time.strftime("%H:%M:%S")
        self._stream.write(f"{stamp} {line}\n")
        self._stream.flush()

    def progress_line(self) -> str:
        """The tally in one line."""
        tally = self._tally
        fields = " ".join(f"{name} {value}" for name, value in _status_fields(tally))
        return f"progress {tally.ended}/{tally.total}: {fields}"

    def refresh(self) -> None:
        """Every few seconds, a progress line (skipped while nothing changed)."""
        now = self._clock()
        if now - self._last < self._every:
            return
        self._last = now
        line = self.progress_line()
        if line != self._last_line:
            self._last_line = line
            self.log(line)

    def close(self) -> None:
        """One last progress line."""
        self.log(self.progress_line())


class QuietDisplay:
    """``-q``: the notable lines only (failures, decisions), no progress."""

    def __init__(self, stream: IO[str]) -> None:
        self._plain = PlainDisplay(Tally(total=0), stream)

    def log(self, line: str) -> None:
        """Write `line` with a wall-clock timestamp."""
        self._plain.log(line)

    def refresh(self) -> None:
        """Nothing: no progress lines."""

    def close(self) -> None:
        """Nothing: no last progress line."""


class RichDisplay:
    """A live bar and counters on a terminal, with notable lines printed above them."""

    def __init__(self, tally: Tally, console: Console, title: str) -> None:
        from rich.live import Live
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._tally = tally
        self._console = console
        self._title = title
        # Rendered inside our own Live (with the title and the counters), never started itself.
        self._progress = Progress(
            BarColumn(bar_width=40),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("elapsed"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            auto_refresh=False,
            speed_estimate_period=_RATE_WINDOW,
        )
        self._task = self._progress.add_task("", total=max(tally.total, 1))
        self._live: Live = Live(
            _Renderable(self), console=console, refresh_per_second=8, transient=False
        )
        self._live.start()

    def render(self) -> RenderableType:
        """The live part: a title, the bar (rich.progress columns), and the counters."""
        from rich.console import Group
        from rich.text import Text

        tally = self._tally
        self._progress.update(self._task, completed=tally.ended, total=max(tally.total, 1))
        counters = Text()
        fields = _counters(tally)
        speed = self._progress.tasks[0].speed
        fields.append(("rate", "?" if speed is None else f"{speed:.1f}/s"))
        for name, value in fields:
            style = {"failed": "red", "uncertain": "yellow", "not sent": "yellow"}.get(name, "")
            style = "green" if name == "done" else style
            style = style if value not in ("0", "?") else ""
            if counters:
                counters.append("  ")
            counters.append(f"{name} ")
            counters.append(value, style=f"bold {style}".strip())
        return Group(Text(self._title, style="bold"), self._progress, counters)

    def log(self, line: str) -> None:
        """Print `line` above the live part."""
        self._live.console.print(line, highlight=False, markup=False)

    def refresh(self) -> None:
        """Nothing to do: rich refreshes on its own thread, eight times a second."""

    def close(self) -> None:
        """Render the last frame and leave it on the screen."""
        self._live.refresh()
        self._live.stop()


class _Renderable:
    """Re-rendered by rich at every refresh."""

    def __init__(self, display: RichDisplay) -> None:
        self._display = display

    def __rich__(self) -> RenderableType:
        return self._display.render()


def make_display(
    tally: Tally,
    *,
    title: str,
    plain: bool = False,
    quiet: bool = False,
    stream: IO[str] | None = None,
) -> tuple[Display, Console | None]:
    """
    The live display on a terminal with rich installed, plain lines otherwise.

    Returns:
        The display, and the rich console when one is used (for the summary table).
    """
    out = stream if stream is not None else sys.stdout
    if quiet:
        return QuietDisplay(out), None
    if not plain and is_terminal(out):
        try:
            from rich.console import Console
        except ImportError:  # the CLI works without the `cli` extra, in plain lines
            pass
        else:
            console = Console(file=out)
            return RichDisplay(tally, console, title), console
    display = PlainDisplay(tally, out)
    display.log(title)
    return display, None


def is_terminal(stream: IO[str]) -> bool:
    """Whether `stream` is a terminal that can take a live display (not ``TERM=dumb``)."""
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False
