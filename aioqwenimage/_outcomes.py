"""
From a terminal snapshot to what the user gets: a `GenerationResult`, or the error for how the
task ended. Pure: the poller decides when a snapshot is terminal, this decides what it means.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import attrs

from aioqwenimage._errors import (
    QwenImageError,
    TaskCanceledError,
    TaskExpiredError,
    TaskFailedError,
    TaskModeratedError,
    is_moderation_code,
)
from aioqwenimage._models import (
    GeneratedImage,
    GenerationResult,
    ImageFetcher,
    TaskStatus,
)
from aioqwenimage._safety import safe_name
from aioqwenimage._snapshot import TaskSnapshot

__all__ = ["EventfulFetcher", "error_of", "result_of"]


def result_of(
    snapshot: TaskSnapshot, *, model: str | None, prompt: str | None, fetcher: ImageFetcher
) -> GenerationResult:
    """The result of a snapshot that has images (a SUCCEEDED task or a synchronous answer)."""
    # Ids come from the server: never a path of their own (issue 8, "../../escaped").
    stem = safe_name(snapshot.task_id or snapshot.request_id or "image")
    images = tuple(
        GeneratedImage(
            url=url, actual_prompt=actual, index=index, name=f"{stem}-{index}.png", fetcher=fetcher
        )
        for index, url, actual in snapshot.urls
    )
    return GenerationResult(
        images=images,
        failures=snapshot.failures,
        task_id=snapshot.task_id,
        request_id=snapshot.request_id,
        model=model,
        prompt=snapshot.prompt or prompt,
        usage=snapshot.usage,
        submitted_at=snapshot.submitted_at,
        scheduled_at=snapshot.scheduled_at,
        finished_at=snapshot.finished_at,
        body=snapshot.body,
        headers=snapshot.headers,
    )


def error_of(snapshot: TaskSnapshot) -> tuple[QwenImageError, TaskStatus]:
    """The error, and the final status, of a terminal snapshot without images."""
    task_id = snapshot.task_id
    if snapshot.status is TaskStatus.CANCELED:
        return TaskCanceledError("the task was cancelled", task_id=task_id), TaskStatus.CANCELED
    if snapshot.status is TaskStatus.UNKNOWN:
        expired = TaskExpiredError(
            "the service does not know this task: it never existed, or it is older than the "
            "24-hour retention",
            task_id=task_id,
        )
        return expired, TaskStatus.UNKNOWN
    # FAILED, or a SUCCEEDED answer without a single image: the first failure explains it.
    failure = snapshot.failures[0] if snapshot.failures else None
    code = snapshot.code or (failure.code if failure else None)
    message = snapshot.message or (failure.message if failure else None) or "no image"
    kind = TaskModeratedError if is_moderation_code(code) else TaskFailedError
    return kind(message, task_id=task_id, code=code), TaskStatus.FAILED


@attrs.frozen
class EventfulFetcher:
    """A fetcher that reports each saved image (as a ``DOWNLOADED`` event of its task)."""

    fetcher: ImageFetcher
    on_saved: Callable[[Path], object]

    async def read(self, url: str) -> bytes:
        return await self.fetcher.read(url)

    async def save(
        self,
        url: str,
        destination: str | Path,
        *,
        default_name: str,
        filename: str | None = None,
    ) -> Path:
        path = await self.fetcher.save(
            url, destination, default_name=default_name, filename=filename
        )
        self.on_saved(path)
        return path
