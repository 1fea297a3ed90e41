"""
Cancelling generations: a handle's `cancel`, `Client.cancel` by id, and giving up on a generation
nobody will wait for (its caller left, or its time ran out).

The service cancels only ``PENDING`` tasks. A task it will not cancel runs on and bills, so its
waiters are told at once but the client keeps its slot and polls it, quietly, to its end: the
lanes never count fewer tasks in flight than the service does. A synchronous call cannot be
cancelled remotely at all; it is abandoned.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import anyio.abc

from aioqwenimage._errors import TaskCanceledError, TaskTimeoutError
from aioqwenimage._handle import TaskHandle
from aioqwenimage._models import TaskStatus
from aioqwenimage._queries import TaskQueries
from aioqwenimage._registry import Registry

__all__ = ["Cancelling"]

# Seconds a caller that gives up waits at most to learn whether its task was cancelled.
VERDICT_WAIT = 30


class Cancelling:
    """Remote cancels and local give-ups, deciding what each means for the handle."""

    def __init__(
        self,
        registry: Registry,
        queries: TaskQueries,
        *,
        task_group: Callable[[], Awaitable[anyio.abc.TaskGroup]],
    ) -> None:
        self._registry = registry
        self._queries = queries
        self._task_group = task_group

    def __repr__(self) -> str:
        return f"<Cancelling registry={self._registry!r}>"

    async def task_group(self) -> anyio.abc.TaskGroup:
        """The client's task group, where work that must outlive its caller runs."""
        return await self._task_group()

    async def cancel_id(self, task_id: str) -> bool:
        """Cancel a task by id (tracked or not); whether the service cancelled it."""
        flight = self._registry.by_id(task_id)
        if flight is not None:
            return await flight.handle.cancel()
        return await self._queries.cancel(task_id)

    async def cancel(self, handle: TaskHandle) -> bool:
        """`TaskHandle.cancel`: remotely when ``PENDING``, else locally; whether remotely."""
        flight = self._registry.get(handle)
        if flight is None:
            return False
        if handle.task_id is None:  # a synchronous call: abandon it (it may have been billed)
            error = TaskCanceledError("cancelled", task_id=None)
            self._registry.end(flight, error, status=TaskStatus.CANCELED)
            return False
        if await self._queries.cancel(handle.task_id):
            error = TaskCanceledError("cancelled", task_id=handle.task_id)
            self._registry.end(flight, error, status=TaskStatus.CANCELED)
            return True
        # Not PENDING any more: the service finishes (and bills) it. The waiters are told now,
        # but the task keeps its slot and is still polled, quietly, until it really ends, so
        # the lane never counts fewer tasks in flight than the service does.
        if flight is not self._registry.get(handle):  # it ended while the cancel was asked
            return False
        flight.abandoned = True
        if handle.status is TaskStatus.PENDING:
            handle._observe(TaskStatus.RUNNING)  # noqa: SLF001 - the service said: not pending
        error = TaskCanceledError(
            "cancelled locally; the service could not cancel it (no longer PENDING), so it may "
            "still finish and bill",
            task_id=handle.task_id,
        )
        self._registry.settle(handle, error)
        return False

    def own(self, handle: TaskHandle) -> None:
        """Mark a handle as the library's own (generate, map): closing cancels its task."""
        flight = self._registry.get(handle)
        if flight is not None:
            flight.owned = True

    async def abandon(self, handle: TaskHandle) -> bool | None:
        """
        Give up on a generation nobody will wait for: cancel it remotely if ``PENDING``, else
        track it to its end. The work runs in the client's task group, so a second cancellation
        of the caller cannot cut it short; this waits for its verdict (bounded, shielded).

        Returns:
            Whether the service cancelled the task; ``None`` if that is not known in time.
        """
        if self._registry.closed:  # closing gave up every generation already
            return None
        verdict: list[bool] = []
        decided = anyio.Event()

        async def run() -> None:
            try:
                verdict.append(await handle.cancel())
            finally:
                decided.set()

        (await self._task_group()).start_soon(run)
        with anyio.CancelScope(shield=True), anyio.move_on_after(VERDICT_WAIT):
            await decided.wait()
        return verdict[0] if verdict else None

    async def give_up(self, handle: TaskHandle, limit: float | None) -> TaskTimeoutError:
        """Cancel a generation whose time ran out; the error says what became of the task."""
        cancelled = await self.abandon(handle)
        waited = f"no result after {limit} s"
        if cancelled:
            what = "the task was cancelled remotely while PENDING, so it will not be billed"
        elif cancelled is None:
            what = "cancelling the task did not complete in time: it may still run and bill"
        elif handle.status.is_terminal:
            what = f"the task ended {handle.status.value} meanwhile"
        else:
            what = (
                f"the task is {handle.status.value} and the service cancels only PENDING "
                "tasks: it will finish and bill; the client tracks it to its end"
            )
        return TaskTimeoutError(f"{waited}; {what}", task_id=handle.task_id)
