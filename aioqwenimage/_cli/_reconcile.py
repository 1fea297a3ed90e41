"""
Reconciliation: what became of creates whose outcome is unknown (items left in ``sending``).

The matching is the library's own (``aioqwenimage._matching``, ``aioqwenimage._resolver``), the
same code as `Client.resolve_uncertain`: list the tasks of each uncertain item's model since its
send, follow the orphans to their end, and adopt the one whose echoed prompt and parameters
match. An uncertain item is safe to send again only when every orphan of its model ended and none
can be its task; otherwise it stays uncertain, and is sent again only with ``--resend-uncertain``.

This module adds only what is the batch's: reading an item in ``sending`` as an `Uncertain`,
listing the task list once before the run creates anything, and writing each decision to the
journal. What the runner must start next (a download, a send) is handed back to it as `Next`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from aioqwenimage._catalog import resolve
from aioqwenimage._cli._messages import plural
from aioqwenimage._cli._progress import Phase
from aioqwenimage._matching import (
    MARGIN,
    RETENTION,
    Decision,
    OrphanOutcome,
    Uncertain,
    decide,
    find_orphans,
    list_since,
)
from aioqwenimage._resolver import Listing, list_orphans, requested, settle_orphans

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    from aioqwenimage import Client, GenerationResult
    from aioqwenimage._cli._ledger import Ledger
    from aioqwenimage._cli._records import Row

__all__ = [
    "MARGIN",
    "RETENTION",
    "Decision",
    "Listing",
    "Next",
    "OrphanOutcome",
    "Uncertain",
    "decide",
    "find_orphans",
    "list_orphans",
    "list_since",
    "list_uncertain",
    "record",
    "settle",
    "settle_orphans",
    "uncertain_entry",
]


def uncertain_entry(row: Row, now: float) -> Uncertain:
    """The journal row of an item in ``sending``, as reconciliation sees it."""
    found = resolve(row.model)
    n, size = requested(row.params)
    return Uncertain(
        seq=row.seq,
        model=row.model,
        prompt=row.prompt,
        sending_at=row.sending_at or now,
        sync=found is not None and found[0].async_protocol is None,
        n=n,
        size=size,
    )


@attrs.frozen
class Next:
    """What the runner starts for a reconciled item: its download (`result`), else a send."""

    seq: int
    task_id: str | None = None
    result: GenerationResult | None = None


async def list_uncertain(
    client: Client, uncertain: Sequence[Uncertain], ledger: Ledger, now: float
) -> Listing:
    """
    The tasks unknown to the journal since the earliest uncertain send (logged).

    The tasks of the other journals in the output directory (other shards of the batch) are no
    orphans of this one: they are counted as known.
    """
    known = ledger.journal.known_task_ids() | ledger.journal.neighbours_task_ids()
    listing = await list_orphans(client, uncertain, known, now)
    if listing.error is not None:
        ledger.log(f"could not list the tasks to reconcile: {listing.error}")
    ledger.log(
        f"reconciling {plural(len(uncertain), 'item')} whose create was cut short: "
        f"{plural(len(listing.orphans), 'task')} since {listing.since:%H:%M:%S} UTC unknown to "
        "the journal"
    )
    return listing


async def settle(
    client: Client, uncertain: Sequence[Uncertain], listing: Listing, now: float
) -> tuple[Decision, Mapping[str, GenerationResult]]:
    """Follow the orphans to their end, then decide each uncertain item; the results by task."""
    outcomes, results = await settle_orphans(client, listing.orphans)
    return decide(uncertain, outcomes, listed=listing.listed, now=now), results


def record(
    decision: Decision,
    results: Mapping[str, GenerationResult],
    ledger: Ledger,
    *,
    resend_uncertain: bool,
) -> Iterator[Next]:
    """
    Journal each decision, one item at a time, and yield what must happen next to it.

    Adopted items are ``succeeded`` with their task's result (to download); items safe to send
    again, or sent again with ``--resend-uncertain``, are ``pending`` (to send); the rest stay
    uncertain. Yielded as they are written, so what is journaled is started at once.
    """
    journal = ledger.journal
    for seq, orphan in decision.adopt.items():
        created = orphan.created_at.timestamp() if orphan.created_at else None
        journal.adopted(seq, orphan.task_id, created, decision.reasons[seq])
        row = ledger.refresh(seq)
        ledger.log(f"{row.item_id}: {decision.reasons[seq]}; adopted")
        ledger.succeeded(seq, results[orphan.task_id])
        ledger.tally.set(seq, Phase.DOWNLOADING)
        yield Next(seq, orphan.task_id, results[orphan.task_id])
    for seq in decision.resend:
        journal.pending(seq, decision.reasons[seq])
        ledger.log(f"{ledger.rows[seq].item_id}: {decision.reasons[seq]}; safe to send again")
        yield Next(seq)
    for seq in decision.unresolved:
        why = decision.reasons[seq]
        if resend_uncertain:
            journal.pending(seq, f"{why}; sent again (--resend-uncertain)")
            ledger.log(f"{ledger.rows[seq].item_id}: {why}; sending again (--resend-uncertain)")
            yield Next(seq)
        else:
            ledger.uncertain(seq, why)
