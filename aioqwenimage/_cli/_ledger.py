"""
The ledger of a batch run: where an item's outcome is written, to every place that shows it.

An outcome goes to the journal (the truth, committed first), the cached row, the tally (what the
display counts) and, when it needs saying, the log, in one call: so the display can never show
an outcome the journal does not hold, and the runner decides *what* happened, not where to write.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aioqwenimage._cli._journal import Journal, Row, State
from aioqwenimage._cli._progress import Phase, Tally
from aioqwenimage._parsing import iso_time

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from aioqwenimage import GenerationResult
    from aioqwenimage._errors import QwenImageError

__all__ = ["Ledger"]


class Ledger:
    """Every item's outcome, written to the journal, the rows, the tally and the log together."""

    def __init__(self, journal: Journal, tally: Tally, log: Callable[[str], None]) -> None:
        self.journal = journal
        self.tally = tally
        self.log = log
        self.rows: dict[int, Row] = {}
        # Per item, why this run could not finish it, for the summary.
        self.why: dict[int, str] = {}
        self.reload()

    def reload(self) -> None:
        """Read every row again (after moves made outside the ledger, e.g. by the resume plan)."""
        self.rows = {row.seq: row for row in self.journal.rows()}

    def refresh(self, seq: int) -> Row:
        """Read one item again after a move of the journal's; the row as it now is."""
        self.rows[seq] = row = self.journal.row(seq)
        return row

    def succeeded(self, seq: int, result: GenerationResult) -> None:
        self.journal.succeeded(
            seq,
            urls=[(image.index, image.url) for image in result.images],
            actual_prompts=[image.actual_prompt for image in result.images],
            echoed_prompt=result.prompt,
            server_times={
                "submitted": iso_time(result.submitted_at),
                "scheduled": iso_time(result.scheduled_at),
                "finished": iso_time(result.finished_at),
            },
            error_code=result.failures[0].code if result.failures else None,
            error_message=(
                f"{len(result.failures)} of {len(result.failures) + len(result.images)} images "
                f"failed: {result.failures[0].message}"
                if result.failures
                else None
            ),
        )
        self.refresh(seq)

    def failed(self, seq: int, code: str | None, message: str) -> None:
        self.journal.failed(seq, code, message)
        self.refresh(seq)
        self.tally.set(seq, Phase.FAILED)
        self.log(f"failed {self.rows[seq].item_id}: {code + ': ' if code else ''}{message}")

    def canceled(self, seq: int, why: str, *, quietly: bool = False) -> None:
        self.journal.canceled(seq, why)
        self.refresh(seq)
        self.tally.set(seq, Phase.CANCELED)
        if not quietly:
            self.log(f"canceled {self.rows[seq].item_id}: {why}")

    def expired(self, seq: int, why: str) -> None:
        self.journal.expired(seq, why)
        self.refresh(seq)
        self.tally.set(seq, Phase.EXPIRED)
        self.log(f"expired {self.rows[seq].item_id}: {why}")

    def uncertain(self, seq: int, why: str) -> None:
        self.journal.annotate(seq, why)
        self.refresh(seq)
        self.why[seq] = why
        self.tally.set(seq, Phase.UNCERTAIN)
        self.log(f"uncertain {self.rows[seq].item_id}: {why}; not sent again")

    def not_sent(self, seq: int, why: str) -> None:
        self.why[seq] = why
        self.tally.set(seq, Phase.NOT_SENT)

    def not_finished(self, seq: int, why: str) -> None:
        self.why[seq] = why
        self.tally.set(seq, Phase.NOT_SENT)
        self.log(f"{self.rows[seq].item_id}: {why}; a re-run re-attaches it")

    def refused_before_creation(self, seq: int, exc: QwenImageError) -> None:
        self.nothing_created(seq, f"not created: {exc}")
        self.not_sent(seq, f"not created: {exc}")
        self.log(f"not sent {self.rows[seq].item_id}: {exc}")

    def nothing_created(self, seq: int, why: str) -> None:
        """Provably no task was made: an item left in ``sending`` goes back to ``pending``."""
        if self.journal.state(seq) is State.SENDING:
            self.journal.pending(seq, why)

    def downloaded(self, seq: int, files: Sequence[str], *, announce: bool) -> None:
        row = self.rows[seq]
        self.journal.downloaded(seq, files, sync=row.task_id is None)
        self.refresh(seq)
        self.tally.set(seq, Phase.DONE)
        if announce:
            self.log(f"done {row.item_id}: {', '.join(files)}")

    def not_downloaded(self, seq: int, why: str, *, say: str | None = None) -> None:
        """The images could not be saved this run; the journal keeps the URLs for the next."""
        self.why[seq] = why
        if say is not None:
            self.log(f"{self.rows[seq].item_id}: {say}")
        self.tally.set(seq, Phase.FAILED)
