"""
Following an item's task to its end, and the registry of tasks being followed.

Each way a task can end is journaled as what it means for the item (succeeded, failed, cancelled,
expired, or still going on for the next run to re-attach). The registry (a handle per item, an
item per task id) is what the rest of the run needs from live tasks: a poll's event finds its
item, and Ctrl-C finds the tasks still pending to cancel them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from aioqwenimage._cli._messages import lost_create
from aioqwenimage._errors import (
    APIError,
    QwenImageError,
    SubmissionUncertainError,
    TaskCanceledError,
    TaskExpiredError,
    TaskFailedError,
)
from aioqwenimage._models import TaskStatus

if TYPE_CHECKING:
    from aioqwenimage import Client, GenerationResult, TaskHandle
    from aioqwenimage._cli._ledger import Ledger
    from aioqwenimage._cli._records import Row
    from aioqwenimage._cli._stopping import Stopping

__all__ = ["Following"]


class Following:
    """The tasks this run follows; `follow` takes one to its end."""

    def __init__(self, ledger: Ledger, stop: Stopping) -> None:
        self._ledger = ledger
        self._stop = stop
        self._handles: dict[int, TaskHandle] = {}
        self._by_task: dict[str, int] = {}

    def item_of(self, task_id: str) -> int | None:
        """The item whose task `task_id` is, if this run knows it."""
        return self._by_task.get(task_id)

    def track(self, seq: int, task_id: str) -> None:
        """Item `seq`'s task is `task_id` (for its events)."""
        self._by_task[task_id] = seq

    @staticmethod
    def attach(client: Client, row: Row) -> TaskHandle:
        """A handle on the task an earlier run created for `row`."""
        if row.task_id is None:
            msg = f"item {row.item_id} has no task to attach to"
            raise RuntimeError(msg)
        return client.attach(row.task_id, model=row.model)

    async def follow(self, client: Client, seq: int, handle: TaskHandle) -> GenerationResult | None:
        """Wait for item `seq`'s task and journal its end; the result when it succeeded."""
        ledger = self._ledger
        row = ledger.rows[seq]
        if handle.task_id is not None:
            self.track(seq, handle.task_id)
        while True:
            self._handles[seq] = handle
            try:
                result = await handle
            except TaskCanceledError as exc:
                if handle.task_id is None:  # an abandoned synchronous call may still be billed
                    ledger.uncertain(seq, "the synchronous call was abandoned before it answered")
                    return None
                if handle.status is not TaskStatus.CANCELED:
                    # Our interrupt asked to cancel it, but it was already running: the service
                    # finishes (and bills) it, so follow it to the end and keep the images.
                    handle = client.attach(handle.task_id, model=row.model)
                    continue
                ledger.canceled(seq, str(exc), quietly=bool(self._stop.interrupts))
                return None
            except TaskExpiredError:
                ledger.expired(seq, "the service no longer knows the task (older than 24 hours?)")
                return None
            except TaskFailedError as exc:
                ledger.failed(seq, exc.code, exc.message)
                return None
            except SubmissionUncertainError as exc:  # a synchronous call that lost its answer
                ledger.uncertain(seq, lost_create(exc))
                return None
            except APIError as exc:
                if handle.task_id is None:  # a synchronous call refused: nothing was made
                    ledger.failed(seq, exc.code, exc.message)
                else:  # the task goes on; the journal keeps its id for the next run
                    ledger.not_finished(seq, f"could not follow task {handle.task_id}: {exc}")
                return None
            except QwenImageError as exc:
                ledger.not_finished(seq, f"could not follow the task: {exc}")
                return None
            finally:
                self._handles.pop(seq, None)
            ledger.succeeded(seq, result)
            return result

    async def cancel_pending(self) -> None:
        """Ask the service to cancel every followed task still pending (Ctrl-C)."""
        async with anyio.create_task_group() as tg:
            for handle in list(self._handles.values()):
                # Only PENDING can be cancelled; as far as we know, since the last poll.
                pending = handle.status is TaskStatus.PENDING and not handle.done()
                if handle.task_id is not None and pending:
                    tg.start_soon(handle.cancel)
