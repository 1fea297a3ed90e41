"""
Recovering from an uncertain create: find the task it made, or show that it made nothing.

A `SubmissionUncertainError` knows the model, the prompt, the parameters and when the request was
sent. That is enough to list the tasks of that model since then, follow each to its end, and
match the echoed prompt and parameters (``_matching``). The answer is an `UncertainResolution`:
the task (with a handle to it), nothing created, or "cannot tell", each with its evidence.

The batch CLI reconciles a whole journal with the same `list_orphans`, `settle_orphans` and
`decide`; `resolve_uncertain` is the one-error front of them.
"""

from __future__ import annotations

import datetime as dt
import enum
import time
from typing import TYPE_CHECKING

import anyio
import attrs

from aioqwenimage._catalog import parse_size
from aioqwenimage._errors import (
    QwenImageError,
    SubmissionUncertainError,
    TaskCanceledError,
    TaskExpiredError,
    TaskFailedError,
)
from aioqwenimage._matching import (
    OrphanOutcome,
    Uncertain,
    decide,
    find_orphans,
    list_since,
)
from aioqwenimage._models import GenerationResult, TaskInfo, TaskStatus

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from aioqwenimage._client import Client
    from aioqwenimage._handle import TaskHandle

__all__ = [
    "Listing",
    "UncertainOutcome",
    "UncertainResolution",
    "list_orphans",
    "requested",
    "resolve_uncertain",
    "settle_orphans",
    "uncertain_of",
]


class UncertainOutcome(enum.Enum):
    """What became of a request whose outcome was unknown."""

    CREATED = "created"
    """It created a task: `UncertainResolution.handle` follows it. Do not send it again."""
    NOT_CREATED = "not_created"
    """No task of it exists that made, or can still make, an image: sending it again orders
    the image once. (A task of it may have ended ``FAILED`` or ``CANCELED``: not billed.)"""
    UNKNOWN = "unknown"
    """It cannot be told: a synchronous call, an unreadable task list, a task of the same model
    that did not end in time, or a send older than the service's 24-hour memory."""


@attrs.frozen(kw_only=True)
class UncertainResolution:
    """
    The answer of `Client.resolve_uncertain`.

    Attributes:
        outcome: Created, not created, or unknown.
        handle: The created task's handle (await it for the result); ``None`` otherwise.
        task_id: The created task's id; ``None`` otherwise.
        evidence: Why, in words: the window listed, the tasks examined and what ruled them out.
        examined: The ids of the tasks of the model listed in the window and followed to
            their end (or to the wait's limit).
        since: The start of the window listed (UTC); ``None`` when nothing was listed.
    """

    outcome: UncertainOutcome
    handle: TaskHandle | None = attrs.field(default=None, repr=False)
    task_id: str | None = None
    evidence: str
    examined: tuple[str, ...] = ()
    since: dt.datetime | None = None


@attrs.frozen(kw_only=True)
class Listing:
    """What the task list said: the orphans, whether it could be read, and from when."""

    orphans: Sequence[TaskInfo]
    listed: bool
    since: dt.datetime
    error: str | None = None


async def list_orphans(
    client: Client, uncertain: Sequence[Uncertain], known_task_ids: Iterable[str], now: float
) -> Listing:
    """
    List the tasks of the uncertain items' models since their earliest send; keep the orphans.

    Call it before creating anything new, so that no task created since passes for an orphan.
    """
    when = dt.datetime.fromtimestamp(now, tz=dt.timezone.utc)
    since = list_since(uncertain, when) or when
    listed: list[TaskInfo] = []
    try:
        for model in sorted({item.model for item in uncertain if not item.sync}):
            listed.extend(
                [info async for info in client.list_tasks(start=since, model=model, page_size=100)]
            )
    except QwenImageError as exc:
        return Listing(orphans=[], listed=False, since=since, error=str(exc))
    return Listing(orphans=find_orphans(listed, known_task_ids, since), listed=True, since=since)


async def settle_orphans(
    client: Client,
    orphans: Sequence[TaskInfo],
    *,
    wait: float | None = None,
    handles: dict[str, TaskHandle] | None = None,
) -> tuple[list[OrphanOutcome], dict[str, GenerationResult]]:
    """
    Follow every orphan to its end; how each ended, and the results of those that succeeded.

    Args:
        wait: Seconds to wait for each orphan at most; one still running then stays a
            possibility (its handle goes on polling until the task ends).
        handles: Filled with each orphan's handle, by task id.
    """
    outcomes: list[OrphanOutcome] = []
    results: dict[str, GenerationResult] = {}

    async def settle(info: TaskInfo) -> None:
        result: GenerationResult | None = None
        handle = client.attach(info.task_id, model=info.model)
        if handles is not None:
            handles[info.task_id] = handle
        try:
            result = await handle.wait(wait)
        except TaskFailedError:
            status = TaskStatus.FAILED
        except TaskCanceledError:
            status = TaskStatus.CANCELED
        except TaskExpiredError:
            status = TaskStatus.UNKNOWN
        except QwenImageError:
            status = TaskStatus.RUNNING  # not known to have ended: it may be an item's task
        else:
            status = TaskStatus.SUCCEEDED
            results[info.task_id] = result
        outcomes.append(_outcome(info, status, result))

    async with anyio.create_task_group() as tg:
        for info in orphans:
            tg.start_soon(settle, info)
    return outcomes, results


def _outcome(info: TaskInfo, status: TaskStatus, result: GenerationResult | None) -> OrphanOutcome:
    if result is None:
        return OrphanOutcome(
            task_id=info.task_id, model=info.model, status=status, created_at=info.created_at
        )
    return OrphanOutcome(
        task_id=info.task_id,
        model=info.model,
        status=status,
        prompt=result.prompt,
        created_at=info.created_at,
        images=len(result.images) + len(result.failures),
        size=_usage_size(result.usage),
    )


def _usage_size(usage: Mapping[str, object]) -> tuple[int, int] | None:
    width, height, size = usage.get("width"), usage.get("height"), usage.get("size")
    if isinstance(width, int) and isinstance(height, int):
        return width, height
    try:
        return parse_size(size) if isinstance(size, str) else None
    except ValueError:
        return None


def requested(parameters: Mapping[str, object]) -> tuple[int | None, tuple[int, int] | None]:
    """The image count and size a request asked for, where it said (else ``None``)."""
    n, size = parameters.get("n"), parameters.get("size")
    try:
        parsed = parse_size(size) if size is not None else None
    except ValueError:
        parsed = None
    return (n if isinstance(n, int) and not isinstance(n, bool) else None), parsed


def uncertain_of(error: SubmissionUncertainError, now: float) -> Uncertain:
    """What the matching needs to know of an uncertain request, from its error."""
    n, size = requested(error.parameters)
    return Uncertain(
        seq=0,
        model=error.model,
        prompt=error.prompt,
        sending_at=error.sent_at if error.sent_at is not None else now,
        sync=not error.creates_task,
        n=n,
        size=size,
    )


async def resolve_uncertain(
    client: Client,
    error: SubmissionUncertainError,
    *,
    known_task_ids: Iterable[str] = (),
    wait: float | None = None,
    now: float | None = None,
) -> UncertainResolution:
    """
    Find the task an uncertain create made, or show that it made none (`Client.resolve_uncertain`).

    Args:
        known_task_ids: Tasks known not to be it (those this client created itself).
        wait: Seconds to wait for each task of the model that has not ended yet.
        now: Epoch seconds, for tests; the wall clock by default.
    """
    now = time.time() if now is None else now
    item = uncertain_of(error, now)
    if item.sync:
        return UncertainResolution(
            outcome=UncertainOutcome.UNKNOWN,
            evidence=(
                f"a synchronous call to {error.model!r} creates no task, so the task list "
                "cannot show whether it was served (and billed)"
            ),
        )
    listing = await list_orphans(client, [item], known_task_ids, now)
    if not listing.listed:
        return UncertainResolution(
            outcome=UncertainOutcome.UNKNOWN,
            evidence=f"the task list could not be read: {listing.error}",
            since=listing.since,
        )
    handles: dict[str, TaskHandle] = {}
    outcomes, _ = await settle_orphans(client, listing.orphans, wait=wait, handles=handles)
    decision = decide([item], outcomes, listed=True, now=now)
    examined = tuple(sorted(o.task_id for o in outcomes))
    window = (
        f"{len(examined)} task(s) of {error.model!r} listed since "
        f"{listing.since.isoformat(timespec='seconds')}"
    )
    evidence = f"{window}: {decision.reasons[item.seq]}"
    if item.seq in decision.adopt:
        task_id = decision.adopt[item.seq].task_id
        return UncertainResolution(
            outcome=UncertainOutcome.CREATED,
            handle=handles[task_id],
            task_id=task_id,
            evidence=evidence,
            examined=examined,
            since=listing.since,
        )
    outcome = (
        UncertainOutcome.NOT_CREATED if item.seq in decision.resend else UncertainOutcome.UNKNOWN
    )
    return UncertainResolution(
        outcome=outcome, evidence=evidence, examined=examined, since=listing.since
    )
