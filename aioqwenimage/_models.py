"""
The records users get back, parsed from the wire at the boundary.

Everything here is a frozen attrs record or an enum; nothing holds an aiohttp type. The parsing of
task answers themselves is `_snapshot`'s; the helpers every parser shares are `_parsing`'s.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

import attrs

from aioqwenimage._errors import QwenImageError
from aioqwenimage._parsing import opt_str as _opt_str
from aioqwenimage._parsing import parse_server_time

__all__ = [
    "ClientStats",
    "EventKind",
    "GeneratedImage",
    "GenerationResult",
    "ImageFailure",
    "Outcome",
    "TaskEvent",
    "TaskInfo",
    "TaskStatus",
    "parse_server_time",
]


class TaskStatus(enum.Enum):
    """Where a task is in its lifecycle."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    UNKNOWN = "UNKNOWN"

    @property
    def is_terminal(self) -> bool:
        """Whether the task will not change any more (UNKNOWN included: the service forgot it)."""
        return self not in (TaskStatus.PENDING, TaskStatus.RUNNING)

    @classmethod
    def parse(cls, value: object) -> TaskStatus:
        """The status for a wire value; undocumented ones (the SDK knows SUSPENDED) are RUNNING."""
        try:
            return cls(value)
        except ValueError:
            return cls.RUNNING


class ImageFetcher(Protocol):
    """What a `GeneratedImage` needs to fetch itself: the client's downloader."""

    async def read(self, url: str) -> bytes: ...

    async def save(
        self,
        url: str,
        destination: str | Path,
        *,
        default_name: str,
        filename: str | None = None,
    ) -> Path: ...


def _read_only(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(value))


@attrs.frozen(kw_only=True)
class GeneratedImage:
    """
    One generated image.

    Attributes:
        url: Signed result URL; valid for 24 hours.
        actual_prompt: The prompt after server-side rewriting, when it was enabled.
        index: The image's position in its request.
        name: A file name for `save` into a directory: ``{task id or request id}-{index}.png``,
            reduced to letters, digits, ``.``, ``_`` and ``-`` (the ids come from the server).
    """

    url: str
    actual_prompt: str | None = None
    index: int = 0
    name: str = "image.png"
    _fetcher: ImageFetcher | None = attrs.field(default=None, repr=False, eq=False, alias="fetcher")

    async def read(self) -> bytes:
        """
        Download the image into memory.

        Raises:
            ImageExpiredError: The URL's expiry has passed.
            TransportError: The download failed after retries.
        """
        return await self._require_fetcher().read(self.url)

    async def save(self, destination: str | Path, *, filename: str | None = None) -> Path:
        """
        Stream the image to disk and return the file's path.

        Where it goes:

        - ``save(directory, filename="fox.png")``: always ``directory/fox.png``; the
          directory is created as needed, whatever its name.
        - ``save("out/fox.png")``: a path with a file extension that is not an existing
          directory is the file itself.
        - ``save("out")``, ``save("out/")``, ``save(Path("newdir/"))``: a path without an
          extension, an existing directory or a string ending in a separator is a directory
          (created as needed) that receives `name`; an existing file is replaced, whatever
          its name.

        The file appears atomically: it is written under a temporary name and renamed, so a
        crash never leaves half an image under the final name. Into a directory, the file
        must resolve inside it.

        Raises:
            ImageExpiredError: The URL's expiry has passed.
            UnsafeResultError: The URL, a redirect, the bytes or the file's place were refused.
            InvalidRequestError: `filename` is not a plain file name.
            TransportError: The download failed after retries.
        """
        return await self._require_fetcher().save(
            self.url, destination, default_name=self.name, filename=filename
        )

    def _require_fetcher(self) -> ImageFetcher:
        if self._fetcher is None:
            msg = "this image is not bound to a client; use Client.download_image(url) instead"
            raise RuntimeError(msg)
        return self._fetcher


@attrs.frozen(kw_only=True)
class ImageFailure:
    """One image of a request that failed while others succeeded (partial success, n > 1)."""

    index: int
    code: str | None
    message: str | None


@attrs.frozen(kw_only=True)
class GenerationResult:
    """
    The outcome of one successful generation (a task, or a synchronous call).

    Attributes:
        images: The generated images, in request order.
        failures: Images that failed while others succeeded.
        task_id: The task's id; ``None`` for a synchronous call.
        request_id: The id of the request that returned the result.
        model: The model that generated the images; ``None`` only for a task attached without
            a model whose model the service's task list could not tell.
        prompt: The prompt as the service echoed it (``orig_prompt``), else as it was sent.
        usage: The service's usage record, as sent (``image_count``, sizes...).
        submitted_at: When the service accepted the task (UTC), if it said.
        scheduled_at: When the service started it.
        finished_at: When it ended.
        body: The JSON body of the answer the result was read from (the last task query, or
            the synchronous response), read-only, for fields this library does not know yet.
        headers: That answer's headers that matter (request id, DashScope's flow-control and
            timing headers, any rate-limit headers), with lower-case names.
    """

    images: tuple[GeneratedImage, ...]
    failures: tuple[ImageFailure, ...] = ()
    task_id: str | None = None
    request_id: str | None = None
    model: str | None
    prompt: str | None = None
    usage: Mapping[str, Any] = attrs.field(factory=dict)
    submitted_at: dt.datetime | None = None
    scheduled_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    body: Mapping[str, Any] = attrs.field(factory=dict, converter=_read_only, repr=False)
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=_read_only, repr=False)


@attrs.frozen(kw_only=True)
class TaskInfo:
    """
    One row of `Client.list_tasks`.

    Attributes:
        task_id: The task's id.
        model: The model name the service recorded.
        status: The task's status at listing time.
        created_at: When the task was created (UTC).
        started_at: When it started running, if it did.
        ended_at: When it ended, if it did.
        request_id: The create request's id.
        region: The service region, e.g. ``"ap-southeast-1"``.
    """

    task_id: str
    model: str | None
    status: TaskStatus
    created_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    request_id: str | None = None
    region: str | None = None

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> TaskInfo:
        """Parse one ``data[]`` row of the list endpoint (epoch-millisecond times)."""
        return cls(
            task_id=str(row.get("task_id", "")),
            model=_opt_str(row.get("model_name")),
            status=TaskStatus.parse(row.get("status")),
            created_at=parse_server_time(row.get("gmt_create")),
            started_at=parse_server_time(row.get("start_time")),
            ended_at=parse_server_time(row.get("end_time")),
            request_id=_opt_str(row.get("request_id")),
            region=_opt_str(row.get("region")),
        )


class EventKind(enum.Enum):
    """What happened to a task; see `TaskEvent`."""

    SUBMITTED = "submitted"
    """The create request succeeded; the task exists remotely (or a sync call started)."""
    RUNNING = "running"
    """A poll saw the task running."""
    POLLED = "polled"
    """A poll answered (any status)."""
    THROTTLED = "throttled"
    """A request about this task got a 429; it will be retried after ``Retry-After``."""
    RETRIED = "retried"
    """A request about this task failed transiently and will be retried."""
    FINISHED = "finished"
    """The task reached a terminal status; ``status`` says which."""
    UNOBSERVED = "unobserved"
    """A task nobody waited for any more (its caller was cancelled, or its handle was cancelled
    while ``RUNNING``) reached its terminal status; the client tracked it to release its slot."""
    LOST_TRACK = "lost_track"
    """A create's answer was lost (the connection failed after sending, an unreadable answer)
    after its caller had left, so nobody got its `SubmissionUncertainError`: a task may exist that
    nobody waits for and the client cannot follow. ``detail["error"]`` is that error, for
    `Client.resolve_uncertain`. Logged as a warning."""
    DOWNLOADED = "downloaded"
    """One of the task's images was saved to disk."""
    NOTIFIED = "notified"
    """A completion notification named the task; one query confirms it."""
    NOTIFICATIONS_MISSING = "notifications_missing"
    """Polls found several tasks in a row finished without a notification (this one the last):
    polling is back to normal until notifications arrive again."""
    NOTIFICATIONS_RESUMED = "notifications_resumed"
    """A notification was confirmed again (for this task): polling is the fallback again."""
    COORDINATION_LOST = "coordination_lost"
    """The shared coordinator (Redis) stopped answering: the client runs on local limits (its
    share of the account's) or, failing closed, waits for it. Not about one task."""
    COORDINATION_RESTORED = "coordination_restored"
    """The shared coordinator answers again: limits are shared again. Not about one task."""


@attrs.frozen(kw_only=True)
class TaskEvent:
    """
    One lifecycle event, delivered to the client's ``event_hooks``.

    Attributes:
        kind: What happened.
        model: The task's model, when known.
        task_id: The task's id (``None`` for synchronous calls and before creation).
        status: The task's status after the event.
        at: ``time.time()`` when the event happened.
        detail: Extra facts: the status code of a retried request, a saved path...
    """

    kind: EventKind
    model: str | None
    task_id: str | None
    status: TaskStatus | None
    at: float
    detail: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class ClientStats:
    """
    Counters since the client opened; a snapshot, taken by `Client.stats`.

    Attributes:
        requests: HTTP requests sent, by kind: ``create``, ``sync``, ``poll``, ``list``,
            ``cancel``, ``download``.
        polls: Task queries answered.
        throttled: 429 answers received.
        retries: Requests sent again after a transient failure.
        submitted: Generations started (tasks created, synchronous calls begun).
        finished: Generations that reached an outcome, by terminal status.
        in_flight: Generations holding an in-flight slot, by model.
        uncertain: Creates whose outcome was unknown (raised `SubmissionUncertainError`).
    """

    requests: Mapping[str, int]
    polls: int
    throttled: int
    retries: int
    submitted: int
    finished: Mapping[str, int]
    in_flight: Mapping[str, int]
    uncertain: int


@attrs.frozen(kw_only=True)
class Outcome:
    """
    One item of `Client.map`: its position, its prompt, and a result or an error.

    Attributes:
        index: The item's position in the input.
        prompt: The item's prompt.
        result: The generation's result, when it succeeded.
        error: Why it did not, when it failed.
        task_id: The task's id, when one was created.
    """

    index: int
    prompt: str
    result: GenerationResult | None = None
    error: QwenImageError | None = None
    task_id: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the item succeeded."""
        return self.result is not None
