"""
The task queries other than polls: a page of the task list, and a remote cancel.

They are idempotent, so the transport retries them, and like polls they spend the account's one
budget of task queries (20 per second for all of an account's keys, ``dashscope-api.md`` §7):
each request takes a token of the same `QueryBudget` the poll scheduler meters polls with.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from aioqwenimage._errors import QwenImageError
from aioqwenimage._events import Recorder
from aioqwenimage._query_budget import QueryBudget
from aioqwenimage._task_list import list_query
from aioqwenimage._transport import Response, Transport

__all__ = ["TaskQueries"]

logger = logging.getLogger("aioqwenimage")


class TaskQueries:
    """Lists and cancels, within the query budget, retried, counted."""

    def __init__(self, transport: Transport, budget: QueryBudget, events: Recorder) -> None:
        self._transport = transport
        self._budget = budget
        self._events = events

    @property
    def budget(self) -> QueryBudget:
        """The account's budget of task queries, shared with the poll scheduler."""
        return self._budget

    def __repr__(self) -> str:
        return f"<TaskQueries budget={self._budget!r}>"

    async def list_page(self, params: Mapping[str, str]) -> Mapping[str, Any]:
        """One page of the task list (``GET /tasks``) with these parameters."""
        self._events.sent("list")
        response = await self._transport.call(
            "GET", "/tasks", params=params, acquire=self._budget.acquire, on_retry=self._retried
        )
        return response.body or {}

    async def model_of(self, task_id: str) -> str | None:
        """The model the service recorded for a task (attached without one), or ``None``."""
        try:
            body = await self.list_page(
                {**list_query(task_id=task_id, page_size=1), "page_no": "1"}
            )
        except QwenImageError as exc:
            logger.info("the model of task %s could not be listed: %s", task_id, exc)
            return None
        rows = body.get("data")
        for row in rows if isinstance(rows, list) else []:
            name = row.get("model_name") if isinstance(row, Mapping) else None
            if isinstance(name, str) and name and row.get("task_id") == task_id:
                return name
        return None

    async def cancel(self, task_id: str) -> bool:
        """Cancel a task remotely; whether the service did (only ``PENDING`` tasks can be)."""
        self._events.sent("cancel")
        attempts = 0

        async def acquire() -> None:
            # A PENDING task starts, and bills, at a moment nobody knows: the first attempt is
            # not held by a 429's pause (only by the rate). Throttled again, it waits like any.
            nonlocal attempts
            attempts += 1
            await self._budget.acquire(urgent=attempts == 1)

        try:
            await self._transport.call(
                "POST", f"/tasks/{task_id}/cancel", acquire=acquire, on_retry=self._retried
            )
        except QwenImageError as exc:
            # 400 UnsupportedOperation: the task is not PENDING any more. Anything else that
            # outlasted the retries leaves it running too; the caller learns it from the status.
            logger.debug("remote cancel of task %s failed: %s", task_id, exc)
            return False
        return True

    async def _retried(self, response: Response | None, _delay: float) -> None:
        self._events.retried(throttled=response is not None and response.status == 429)  # noqa: PLR2004
