"""
Resuming: what the journal says about each item, and what this run must do with it.

`plan` sorts every item by its journal state (see the table in ``docs/cli.md``): finished ones
are skipped once their files are found, created ones re-attached, succeeded ones downloaded,
uncertain ones reconciled, the rest submitted. It makes the few journal moves that need no
network (files gone, past the retention, cancelled earlier, a dead in-process emulator).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from aioqwenimage._cli._files import all_saved, image_names
from aioqwenimage._cli._journal import Journal, Row, State
from aioqwenimage._cli._messages import plural
from aioqwenimage._cli._progress import Phase, Tally
from aioqwenimage._cli._reconcile import RETENTION

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

__all__ = ["Plan", "files_present", "plan", "too_old"]

_LIVE_TASK = (State.SENDING, State.CREATED, State.RUNNING, State.SUCCEEDED)


@attrs.frozen(kw_only=True)
class Plan:
    """The items of a run by what it does with them (sequence numbers, uncertain as rows)."""

    submit: list[int]
    attach: list[int]
    download: list[int]
    uncertain: list[Row]


def too_old(row: Row, now: float) -> bool:
    """Whether the item's task is past the service's 24-hour retention (gone with its results)."""
    created = row.created_at or row.sending_at
    return created is not None and now - created >= RETENTION.total_seconds()


def files_present(row: Row, out: Path) -> bool:
    """Whether every image file of a finished item is still there (and not empty)."""
    return all_saved(out, row.files)


def plan(
    journal: Journal,
    tally: Tally,
    *,
    out: Path,
    now: float,
    emulator: bool,
    retry_failed: bool,
    log: Callable[[str], None],
) -> Plan:
    """Sort every item of `journal` for this run; sets each item's phase in `tally`."""
    result = Plan(submit=[], attach=[], download=[], uncertain=[])
    emulator_gone = 0
    # A download cut short by a crash leaves its hidden temporary file behind. Only this
    # journal's are removed: workers of other shards may be writing theirs into `out` now.
    mine = {name for row in journal.rows() for name in image_names(row.stem, row.images)}
    for partial in out.glob(".*.png.*.part"):
        if partial.name[1:].rsplit(".", 2)[0] in mine:  # ".{name}.{random}.part"
            partial.unlink(missing_ok=True)
    for row in journal.rows():
        seq, state = row.seq, row.state
        if state.finished:
            if files_present(row, out):
                tally.set(seq, Phase.SKIPPED)
                continue
            journal.redownload(seq, "files missing: downloading them again")
            log(f"{row.item_id}: files missing; downloading them again")
            state = State.SUCCEEDED
        if emulator and state in _LIVE_TASK:
            journal.pending(seq, "the earlier run's in-process emulator is gone")
            emulator_gone += 1
            state = State.PENDING
        if state in (State.CREATED, State.RUNNING, State.SUCCEEDED) and too_old(row, now):
            journal.expired(
                seq, "created more than 24 hours ago: the service no longer keeps the task"
            )
            tally.set(seq, Phase.EXPIRED)
            continue
        if state is State.CANCELED or (state is State.FAILED and retry_failed):
            why = "cancelled earlier" if state is State.CANCELED else "failed earlier"
            journal.pending(seq, f"{why}: sent again")
            state = State.PENDING
        _sort(result, tally, journal.row(seq), state)
    if emulator_gone:
        log(
            f"resuming with a new in-process emulator: {plural(emulator_gone, 'item')} whose tasks "
            "lived in the earlier run's emulator are sent again (an emulator bills nothing)"
        )
    skipped = tally.count(Phase.SKIPPED)
    if skipped or len(result.submit) != tally.total:
        log(
            f"resuming: {skipped} done, {plural(len(result.attach), 'task')} to re-attach, "
            f"{len(result.download)} to download, {len(result.uncertain)} uncertain to "
            f"reconcile, {len(result.submit)} to submit"
        )
    return result


def _sort(result: Plan, tally: Tally, row: Row, state: State) -> None:
    seq = row.seq
    if state is State.PENDING:
        result.submit.append(seq)
        tally.set(seq, Phase.QUEUED)
    elif state in (State.CREATED, State.RUNNING):
        result.attach.append(seq)
        tally.set(seq, Phase.RUNNING)
    elif state is State.SUCCEEDED:
        result.download.append(seq)
        tally.set(seq, Phase.DOWNLOADING)
    elif state is State.SENDING:
        result.uncertain.append(row)
        tally.set(seq, Phase.RECONCILING)
    elif state is State.FAILED:
        tally.set(seq, Phase.FAILED)
    else:
        tally.set(seq, Phase.EXPIRED)
