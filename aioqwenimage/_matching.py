"""
Matching creates whose outcome is unknown to the tasks they may have made: the pure half.

A create request that left but whose answer never arrived (a crash, a dropped connection, a 500)
may or may not have made a task. The service cannot be asked "did request X create a task?", but
it can list the account's tasks in a time window (``dashscope-api.md`` §5.4). So:

1. list the tasks of each uncertain create's model since its send (minus a margin for clock
   skew); those nobody knows about are *orphans*;
2. wait for every orphan to end, and read the prompt the service echoes (``orig_prompt``) and
   what it made (image count, size);
3. `decide`: an orphan whose model, echoed prompt and parameters match an uncertain create is
   that create's task. A create is known to have made nothing billable only when every orphan of
   its model ended and none can be its task; otherwise it stays uncertain.

`Client.resolve_uncertain` (one error) and the batch CLI's reconciliation (a journal's worth of
items) both run this code; the I/O half is in ``_resolver``.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Final

import attrs

from aioqwenimage._models import TaskInfo, TaskStatus

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "MARGIN",
    "RETENTION",
    "Decision",
    "OrphanOutcome",
    "Uncertain",
    "decide",
    "find_orphans",
    "list_since",
]

MARGIN: Final = dt.timedelta(minutes=2)
"""How far before the earliest uncertain send the listing starts: our clock vs the service's."""
RETENTION: Final = dt.timedelta(hours=24)
"""The service keeps tasks (and lists them) for 24 hours (``dashscope-api.md`` §8)."""
# A prompt longer than the endpoint's limit is truncated server-side, and so is its echo.
_MIN_TRUNCATED_ECHO: Final = 200


@attrs.frozen(kw_only=True)
class Uncertain:
    """An item whose create may or may not have made a task."""

    seq: int
    model: str
    prompt: str
    sending_at: float
    """When the create was (first) about to be sent, epoch seconds."""
    sync: bool = False
    """A synchronous-only model's call: it makes no task, so no listing can settle it."""
    n: int | None = None
    """The images it asked for, when known: a task that made more is not its task."""
    size: tuple[int, int] | None = None
    """The size it asked for, when it asked for one: a task of another size is not its task."""


@attrs.frozen(kw_only=True)
class OrphanOutcome:
    """
    How an orphan task ended, as far as we could learn.

    Attributes:
        task_id: The task.
        model: Its model, as listed.
        status: Its final status; a non-terminal one means waiting for it did not finish.
        prompt: The prompt the service echoed, when it succeeded.
        created_at: When the service says it was created.
    """

    task_id: str
    model: str | None
    status: TaskStatus
    prompt: str | None = None
    created_at: dt.datetime | None = None
    images: int | None = None
    """How many images it was asked for, as far as its answer shows (made plus failed)."""
    size: tuple[int, int] | None = None
    """The size its answer reports, when it reports one."""


@attrs.frozen(kw_only=True)
class Decision:
    """
    What to do with each uncertain item.

    Attributes:
        adopt: Item (seq) to the orphan task that is its own: take its id and its result.
        resend: Items for which provably no task exists: safe to send again.
        unresolved: Items that may have a task we cannot identify.
        reasons: Why, per item, in words for the log.
    """

    adopt: Mapping[int, OrphanOutcome]
    resend: tuple[int, ...]
    unresolved: tuple[int, ...]
    reasons: Mapping[int, str]


def list_since(uncertain: Sequence[Uncertain], now: dt.datetime) -> dt.datetime | None:
    """
    Where the task listing starts: before the earliest uncertain send, within the retention.

    ``None`` when there is nothing to reconcile.
    """
    if not uncertain:
        return None
    earliest = min(item.sending_at for item in uncertain)
    start = dt.datetime.fromtimestamp(earliest, tz=dt.timezone.utc) - MARGIN
    # The list endpoint takes a window of at most 24 hours, and nothing older is kept anyway.
    oldest = now - RETENTION + dt.timedelta(minutes=1)
    return max(start, oldest)


def find_orphans(
    listed: Iterable[TaskInfo], known_task_ids: Iterable[str], since: dt.datetime
) -> list[TaskInfo]:
    """The listed tasks the journal knows nothing about, created since `since`."""
    known = set(known_task_ids)
    seen: set[str] = set()
    found: list[TaskInfo] = []
    for info in listed:
        if not info.task_id or info.task_id in known or info.task_id in seen:
            continue
        if info.created_at is not None and info.created_at < since:
            continue
        seen.add(info.task_id)
        found.append(info)
    return found


def decide(
    uncertain: Sequence[Uncertain],
    orphans: Sequence[OrphanOutcome],
    *,
    listed: bool = True,
    now: float | None = None,
) -> Decision:
    """
    Match orphan tasks to uncertain items, and say which items are safe to send again.

    Args:
        uncertain: The items left in ``sending``.
        orphans: What became of every orphan task found for their models.
        listed: Whether the listing itself succeeded; if not, nothing can be ruled out.
        now: Epoch seconds, to spot sends older than the retention (then nothing is known).
    """
    adopt: dict[int, OrphanOutcome] = {}
    reasons: dict[int, str] = {}
    open_items = sorted(uncertain, key=lambda item: (item.sending_at, item.seq))
    for orphan in sorted(orphans, key=_orphan_order):
        if orphan.status is not TaskStatus.SUCCEEDED or orphan.prompt is None:
            continue
        for item in open_items:
            if item.seq in adopt or item.sync or not _same_model(orphan, item):
                continue
            if _echo_matches(orphan.prompt, item.prompt) and _parameters_match(orphan, item):
                adopt[item.seq] = orphan
                reasons[item.seq] = (
                    f"its create did reach the service: task {orphan.task_id} echoes its prompt"
                )
                break
    resend: list[int] = []
    unresolved: list[int] = []
    for item in open_items:
        if item.seq in adopt:
            continue
        why = _why_unresolved(item, orphans, adopt, listed=listed, now=now)
        if why is None:
            resend.append(item.seq)
            reasons[item.seq] = (
                "no image was made for it: every unknown task of the model since it was sent "
                "has ended, and none echoes its prompt (a failed or cancelled one is not billed)"
            )
        else:
            unresolved.append(item.seq)
            reasons[item.seq] = why
    return Decision(
        adopt=adopt, resend=tuple(resend), unresolved=tuple(unresolved), reasons=reasons
    )


def _why_unresolved(
    item: Uncertain,
    orphans: Sequence[OrphanOutcome],
    adopted: Mapping[int, OrphanOutcome],
    *,
    listed: bool,
    now: float | None,
) -> str | None:
    if item.sync:
        return "a synchronous call leaves no task to look up; whether it was billed is unknown"
    if now is not None and now - item.sending_at >= RETENTION.total_seconds():
        return "sent more than 24 hours ago: the service no longer lists a task it may have made"
    if not listed:
        return "the task list could not be read, so a task it made cannot be ruled out"
    taken = {orphan.task_id for orphan in adopted.values()}
    for orphan in orphans:
        if orphan.task_id in taken or not _same_model(orphan, item):
            continue
        if not orphan.status.is_terminal:
            return f"task {orphan.task_id} of the same model has not ended; it may be this item's"
        if orphan.status is TaskStatus.SUCCEEDED and orphan.prompt is None:
            return (
                f"task {orphan.task_id} succeeded without echoing its prompt; it may be this item's"
            )
    # Orphans that failed, were cancelled or expired made no image (nothing billed): even if one
    # was this item's, sending again orders the image once.
    return None


def _same_model(orphan: OrphanOutcome, item: Uncertain) -> bool:
    return orphan.model is None or orphan.model == item.model


def _parameters_match(orphan: OrphanOutcome, item: Uncertain) -> bool:
    # Only what the answer echoes can rule a task out; what it leaves out matches anything.
    if item.n is not None and orphan.images is not None and orphan.images > item.n:
        return False
    return item.size is None or orphan.size is None or item.size == orphan.size


def _echo_matches(echoed: str, prompt: str) -> bool:
    if echoed == prompt or echoed.strip() == prompt.strip():
        return True
    # A long prompt comes back truncated at the endpoint's limit.
    return len(echoed) >= _MIN_TRUNCATED_ECHO and prompt.startswith(echoed)


def _orphan_order(orphan: OrphanOutcome) -> tuple[dt.datetime, str]:
    return (orphan.created_at or dt.datetime.max.replace(tzinfo=dt.timezone.utc), orphan.task_id)
