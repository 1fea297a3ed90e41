"""
The end of a batch: counts per outcome, the items that need attention, as a table or as text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import attrs

from aioqwenimage._cli._messages import format_duration
from aioqwenimage._cli._progress import Phase, Tally

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from rich.console import Console

    from aioqwenimage._cli._journal import Row

__all__ = ["Summary", "build_summary", "render_summary_plain", "render_summary_rich"]


@attrs.frozen(kw_only=True)
class Summary:
    """
    The end of a run: counts per outcome, and the items that need attention.

    Attributes:
        counts: Outcome name to number of items, in display order.
        attention: ``(id, outcome, detail)`` of items that failed, expired, are uncertain or
            were not sent.
        total: Items in the batch.
        elapsed: Seconds this run took.
        created: Tasks this run created.
        out_dir: Where the images and the manifest are.
        manifest: The manifest's path.
        interrupted: Whether the run was interrupted.
    """

    counts: Sequence[tuple[str, int]]
    attention: Sequence[tuple[str, str, str]]
    total: int
    elapsed: float
    created: int
    out_dir: str
    manifest: str
    interrupted: bool = False


_ATTENTION_SHOWN: Final = 20


def render_summary_plain(summary: Summary) -> str:
    """The summary as aligned plain text."""
    lines = ["", "summary" + (" (interrupted)" if summary.interrupted else "")]
    width = max(len(name) for name, _ in summary.counts)
    for name, count in summary.counts:
        lines.append(f"  {name.ljust(width)}  {count:>6}")
    lines.append(f"  {'total'.ljust(width)}  {summary.total:>6}")
    lines.append(
        f"tasks created by this run: {summary.created}; elapsed {format_duration(summary.elapsed)}"
    )
    lines.extend(_attention_lines(summary))
    lines.append(f"images in {summary.out_dir}; manifest {summary.manifest}")
    return "\n".join(lines)


def _attention_lines(summary: Summary) -> list[str]:
    lines: list[str] = []
    for item_id, what, detail in summary.attention[:_ATTENTION_SHOWN]:
        lines.append(f"  {what:<9} {item_id}: {detail}")
    hidden = len(summary.attention) - _ATTENTION_SHOWN
    if hidden > 0:
        lines.append(f"  ... and {hidden} more (see the manifest)")
    if lines:
        lines.insert(0, "needs attention:")
    return lines


def render_summary_rich(summary: Summary, console: Console) -> None:
    """Print the summary as a rich table."""
    from rich.table import Table

    # A heading line rather than the table's title, which rich would wrap to the table's width.
    console.print("summary" + (" (interrupted)" if summary.interrupted else ""), style="bold")
    table = Table(show_footer=True)
    table.add_column("outcome", footer="total")
    table.add_column("items", justify="right", footer=str(summary.total))
    styles: dict[str, Any] = {"done": "green", "failed": "red", "uncertain": "yellow"}
    for name, count in summary.counts:
        table.add_row(name, str(count), style=styles.get(name))
    console.print(table)
    console.print(
        f"tasks created by this run: {summary.created}; elapsed {format_duration(summary.elapsed)}",
        highlight=False,
    )
    for line in _attention_lines(summary):
        console.print(line, highlight=False, markup=False)
    console.print(f"images in {summary.out_dir}; manifest {summary.manifest}", highlight=False)


def build_summary(
    tally: Tally,
    rows: Mapping[int, Row],
    why: Mapping[int, str],
    *,
    out_dir: str,
    manifest: str,
    interrupted: bool,
) -> Summary:
    """
    The summary of a run.

    Args:
        tally: The run's final counts.
        rows: Every item as the journal holds it now.
        why: Per item, what this run learned about why it is not done (a failed download, a
            lost create, a refusal before creation); the journal's error is used otherwise.
        out_dir: Where the images are.
        manifest: The manifest's path.
        interrupted: Whether Ctrl-C stopped the run (items not sent are then expected).
    """
    counts = [
        ("done", tally.count(Phase.DONE)),
        ("already done", tally.count(Phase.SKIPPED)),
        ("failed", tally.count(Phase.FAILED)),
        ("expired", tally.count(Phase.EXPIRED)),
        ("canceled", tally.count(Phase.CANCELED)),
        ("uncertain", tally.count(Phase.UNCERTAIN, Phase.RECONCILING)),
        ("not sent", tally.count(Phase.NOT_SENT, Phase.QUEUED, Phase.WAITING, Phase.SENDING)),
        ("still running", tally.count(Phase.RUNNING, Phase.DOWNLOADING)),
    ]
    attention: list[tuple[str, str, str]] = []
    for seq, phase in sorted(tally.phases.items()):
        detail = _detail(phase, rows[seq], why.get(seq), interrupted=interrupted)
        if detail is not None:
            attention.append((rows[seq].item_id, phase.value, detail))
    return Summary(
        counts=[(name, n) for name, n in counts if n or name in ("done", "failed")],
        attention=attention,
        total=tally.total,
        elapsed=tally.elapsed,
        created=tally.created,
        out_dir=out_dir,
        manifest=manifest,
        interrupted=interrupted,
    )


def _detail(phase: Phase, row: Row, why: str | None, *, interrupted: bool) -> str | None:
    if phase is Phase.FAILED:
        code = f"{row.error_code}: " if row.error_code else ""
        return why or f"{code}{row.error_message}"
    if phase is Phase.UNCERTAIN:
        return why or row.note or "the create's outcome is unknown"
    if phase is Phase.EXPIRED:
        return row.error_message or row.note or "expired"
    if phase is Phase.NOT_SENT and not interrupted:
        return why or "not sent"
    return None
