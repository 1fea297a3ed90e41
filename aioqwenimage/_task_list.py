"""
The task list (``GET /tasks``): its query parameters, and its pages followed to the end.

`Client.list_tasks`, the sweeps and the model lookup of attached tasks (``_queries``) read this one
endpoint; its filters (times in the service's own format, ``model_name``, ``status``) and its paging
(``page_no``/``page_size``, ``total_page``) are spelled here once. Sending a page (the query budget,
retries) is the caller's `ListPage`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import Any

from aioqwenimage._errors import InvalidRequestError
from aioqwenimage._models import TaskStatus
from aioqwenimage._parsing import list_time

__all__ = ["ListPage", "list_pages", "list_query", "task_status"]

ListPage = Callable[[Mapping[str, str]], Awaitable[Mapping[str, Any]]]
"""Sends one list query with these parameters and returns its body (``{}`` when it had none)."""


def task_status(value: object) -> TaskStatus | None:
    """
    A status filter: a `TaskStatus`, one's value (``"SUCCEEDED"``), or ``None``.

    Raises:
        InvalidRequestError: `value` is neither.
    """
    if value is None or isinstance(value, TaskStatus):
        return value
    if isinstance(value, str) and value in TaskStatus.__members__:
        return TaskStatus(value)
    msg = (
        f"status must be a TaskStatus or one of {', '.join(TaskStatus.__members__)}, got {value!r}"
    )
    raise InvalidRequestError(msg, parameter="status")


def list_query(
    *,
    page_size: int,
    start: dt.datetime | float | None = None,
    end: dt.datetime | float | None = None,
    model: str | None = None,
    status: TaskStatus | str | None = None,
    task_id: str | None = None,
) -> dict[str, str]:
    """
    The query parameters of a list, the page number aside.

    Args:
        page_size: Rows per page.
        start: The window's start: a datetime (naive means UTC) or epoch seconds.
        end: The window's end, likewise; the service allows at most 24 hours.
        model: Only tasks of this model.
        status: Only tasks in this status (see `task_status`).
        task_id: Only this task.

    Raises:
        InvalidRequestError: `status` is not a status.
    """
    wanted = task_status(status)
    params = {"page_size": str(page_size)}
    if start is not None:
        params["start_time"] = list_time(start)
    if end is not None:
        params["end_time"] = list_time(end)
    if model is not None:
        params["model_name"] = model
    if wanted is not None:
        params["status"] = wanted.value
    if task_id is not None:
        params["task_id"] = task_id
    return params


async def list_pages(
    list_page: ListPage, query: Mapping[str, str]
) -> AsyncGenerator[list[Mapping[str, Any]], None]:
    """
    The rows of each page of the list `query` selects, page after page, until the last.

    The last page is the one numbered ``total_page``, or one without rows, or one whose
    ``total_page`` is not a number: a service that answers oddly ends the listing rather than
    paging for ever. Rows that are not JSON objects are left out.
    """
    page = 1
    while True:
        body = await list_page({**query, "page_no": str(page)})
        rows = body.get("data")
        yield [row for row in rows if isinstance(row, Mapping)] if isinstance(rows, list) else []
        total_pages = body.get("total_page")
        if not rows or not isinstance(total_pages, int) or page >= total_pages:
            return
        page += 1
