"""
What a client does besides generating: the account's task list, recovering an uncertain create,
and result files.

`Client` inherits these methods from `AccountMethods`, which holds them apart from the client's
lifecycle and its generation methods (``_client``): each of them is a thin front of a part of
the client (``_task_list`` and ``_queries``, ``_resolver``, ``_download``), with its checks.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, cast

import anyio

from aioqwenimage import _resolver
from aioqwenimage._errors import InvalidRequestError, SubmissionUncertainError
from aioqwenimage._models import GeneratedImage, GenerationResult, TaskInfo, TaskStatus
from aioqwenimage._resolver import UncertainResolution
from aioqwenimage._safety import safe_name
from aioqwenimage._task_list import list_pages, list_query
from aioqwenimage._timeouts import wait_timeout

if TYPE_CHECKING:
    from aioqwenimage._client import Client
    from aioqwenimage._wiring import Parts

__all__ = ["AccountMethods"]


class AccountMethods:
    """The task-list, recovery and file methods of `Client` (see there)."""

    _parts: Parts

    def _ensure_open(self) -> None:
        raise NotImplementedError

    async def list_tasks(
        self,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        model: str | None = None,
        status: TaskStatus | str | None = None,
        page_size: int = 50,
    ) -> AsyncIterator[TaskInfo]:
        """
        The account's tasks (of any key), page by page; the service keeps 24 hours.

        Args:
            start: The window's start (timezone-aware; naive means UTC).
            end: The window's end; the window may span at most 24 hours.
            model: Only tasks of this model.
            status: Only tasks in this status: a `TaskStatus` or its value (``"SUCCEEDED"``).
            page_size: Rows fetched per request.

        Raises:
            InvalidRequestError: `status` is neither a `TaskStatus` nor one's value.
        """
        query = list_query(start=start, end=end, model=model, status=status, page_size=page_size)
        self._ensure_open()
        async with contextlib.aclosing(list_pages(self._parts.queries.list_page, query)) as pages:
            async for rows in pages:
                for row in rows:
                    yield TaskInfo.from_json(row)

    async def resolve_uncertain(
        self, error: SubmissionUncertainError, *, wait: float | None = None
    ) -> UncertainResolution:
        """
        Find the task an uncertain create made, or show with evidence that it made none.

        Lists the tasks of the error's model since the request was sent (the service keeps 24
        hours), follows each one this client did not create to its end, and matches the prompt
        and parameters the service echoes. Nothing is created or cancelled.

        Args:
            error: The `SubmissionUncertainError` raised by `generate`, `submit` or `map`.
            wait: Seconds to wait at most for each listed task that has not ended (``None``:
                until it ends). A task still running after it leaves the outcome unknown.

        Returns:
            `UncertainOutcome.CREATED` with a handle to the task, `NOT_CREATED` (sending the
            request again orders its images once), or `UNKNOWN` (a synchronous call, an
            unreadable list, a task that did not end in time); its ``evidence`` says why.

        Raises:
            InvalidRequestError: `error` is not a `SubmissionUncertainError`, or `wait` is not
                ``None`` or a number >= 0.
        """
        given: object = error  # untyped callers may pass any exception
        if not isinstance(given, SubmissionUncertainError):
            msg = f"error must be a SubmissionUncertainError, got {type(given).__name__}"
            raise InvalidRequestError(msg, parameter="error")
        seconds = wait_timeout(wait, "wait")
        self._ensure_open()
        client = cast("Client", self)  # only Client inherits these methods
        return await _resolver.resolve_uncertain(
            client, error, known_task_ids=self._parts.registry.created_task_ids, wait=seconds
        )

    async def save_images(self, result: GenerationResult, directory: str | Path) -> list[Path]:
        """
        Save every image of `result` into `directory`, concurrently; returns the paths.

        `directory` is always a directory (created as needed), whatever its name; each image
        is saved under its `GeneratedImage.name`.

        Raises:
            QwenImageError: A download failed (see `GeneratedImage.save`).
            OSError: The directory or a file cannot be written.
        """
        paths: list[Path] = [Path()] * len(result.images)
        failures: list[Exception] = []

        async def save(position: int, image: GeneratedImage) -> None:
            try:
                paths[position] = await image.save(directory, filename=image.name)
            except Exception as exc:  # noqa: BLE001 - raised below, unwrapped from the group
                failures.append(exc)

        async with anyio.create_task_group() as tg:
            for position, image in enumerate(result.images):
                tg.start_soon(save, position, image)
        if failures:
            raise failures[0]
        return paths

    async def download_image(self, url: str, destination: str | Path | None = None) -> bytes | Path:
        """
        Fetch any result URL: its bytes, or the saved path when `destination` is given.

        `destination` is read as by `GeneratedImage.save`; into a directory, the file is named
        after the URL's last path segment, reduced to a safe name.

        Raises:
            UnsafeResultError: The URL, a redirect or the bytes were refused (see the errors
                guide), or the image is larger than ``PoolLimits.max_download_bytes``.
            ImageExpiredError: The URL has expired.
        """
        self._ensure_open()
        if destination is None:
            return await self._parts.downloader.read(url)
        return await self._parts.downloader.save(url, destination, default_name=_name_from_url(url))


def _name_from_url(url: str) -> str:
    name = url.split("?", 1)[0].split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return safe_name(name, fallback="image.png")
