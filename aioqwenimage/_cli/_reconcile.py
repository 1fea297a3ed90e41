"""
Reconciliation: what became of creates whose outcome is unknown (items left in ``sending``).

The matching is the library's own (``aioqwenimage._matching``, ``aioqwenimage._resolver``), the
same code as `Client.resolve_uncertain`: list the tasks of each uncertain item's model since its
send, follow the orphans to their end, and adopt the one whose echoed prompt and parameters
match. An uncertain item is safe to send again only when every orphan of its model ended and none
can be its task; otherwise it stays uncertain, and is sent again only with ``--resend-uncertain``.

This module adds only what is the journal's: reading an item in ``sending`` as an `Uncertain`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aioqwenimage._catalog import resolve
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
    from aioqwenimage._cli._journal import Row

__all__ = [
    "MARGIN",
    "RETENTION",
    "Decision",
    "Listing",
    "OrphanOutcome",
    "Uncertain",
    "decide",
    "find_orphans",
    "list_orphans",
    "list_since",
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
