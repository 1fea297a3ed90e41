"""
`TaskHandle`: an awaitable view of one generation, async task or synchronous call alike.

The client resolves a handle; users await it any number of times, from any number of coroutines.
Awaiting is only waiting: cancelling a waiter leaves the task alone (`cancel` is the explicit way
to stop it, and `Client.generate` does it for you when you cancel it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any

import anyio

from aioqwenimage._errors import TaskTimeoutError
from aioqwenimage._models import GenerationResult, TaskStatus
from aioqwenimage._timeouts import wait_timeout

__all__ = ["TaskHandle"]


class TaskHandle:
    """
    One generation in flight: ``await handle`` for its `GenerationResult`.

    Handles come from `Client.submit` and `Client.attach`; they are not built by hand.

    Attributes:
        model: The model generating the images (``None`` for an attached task of unknown model).
    """

    __module__ = "aioqwenimage"

    def __init__(
        self,
        *,
        model: str | None,
        task_id: str | None,
        canceller: Callable[[TaskHandle], Awaitable[bool]],
        prompt: str | None = None,
    ) -> None:
        self.model = model
        self.prompt = prompt
        self._task_id = task_id
        self._status = TaskStatus.PENDING
        self._canceller = canceller
        self._done = anyio.Event()
        self._result: GenerationResult | None = None
        self._error: BaseException | None = None
        self._callbacks: list[Callable[[], object]] = []
        self.polls = 0

    @property
    def task_id(self) -> str | None:
        """The remote task's id; ``None`` for a synchronous call, which has none."""
        return self._task_id

    @property
    def status(self) -> TaskStatus:
        """
        The last status the client knows (as of the last poll, or the end of a synchronous
        call). A task cancelled locally while ``RUNNING`` is still polled until it ends, and
        this follows it there, although the handle's outcome stays `TaskCanceledError`.
        """
        return self._status

    def done(self) -> bool:
        """Whether the outcome is known (a result or an error)."""
        return self._done.is_set()

    def __await__(self) -> Generator[Any, None, GenerationResult]:
        return self.wait().__await__()

    async def wait(self, timeout: float | None = None) -> GenerationResult:  # noqa: ASYNC109
        """
        Wait for the result. Only waiting: neither a timeout nor cancelling the waiting
        coroutine touches the task.

        Args:
            timeout: Seconds to wait at most (``0``: only look); ``None`` or ``inf`` waits as
                long as it takes.

        Raises:
            InvalidRequestError: `timeout` is not a number of seconds >= 0 (NaN, negative).
            TaskTimeoutError: `timeout` passed first. The task goes on; wait again if you like.
            TaskFailedError: The task ended ``FAILED``.
            TaskCanceledError: The task was cancelled.
            TaskExpiredError: The service no longer knows the task.
            QwenImageError: Anything else that ended the generation (see the error tree).
        """
        with anyio.move_on_after(wait_timeout(timeout)):
            await self._done.wait()
        if not self._done.is_set():
            msg = (
                f"no result after {timeout} s; the task goes on (status {self._status.value}): "
                "wait again, or cancel it"
            )
            raise TaskTimeoutError(msg, task_id=self._task_id)
        if self._error is not None:
            raise self._error
        assert self._result is not None  # noqa: S101 - set together with _done
        return self._result

    async def cancel(self) -> bool:
        """
        Cancel the generation: remotely if the task is still ``PENDING`` (the service cancels
        nothing else), and locally in any case: waiters get `TaskCanceledError`. A synchronous
        call is abandoned (its connection closed). Cancelling a finished handle does nothing.

        Returns:
            Whether the service cancelled the task, so that it will not be billed.
        """
        if self.done():
            return False
        return await self._canceller(self)

    def __repr__(self) -> str:
        return (
            f"<TaskHandle model={self.model!r} task_id={self._task_id!r} "
            f"status={self._status.value} polls={self.polls}>"
        )

    # The client's side: set while the generation runs.

    def _set_task_id(self, task_id: str) -> None:
        self._task_id = task_id

    def _set_status(self, status: TaskStatus) -> None:
        if not self._done.is_set():  # an outcome's status is final
            self._status = status

    def _observe(self, status: TaskStatus) -> None:
        """What the service says now, also after the outcome was settled locally."""
        self._status = status

    def _when_done(self, callback: Callable[[], object]) -> None:
        """Call `callback` (synchronously) once the outcome is known; at once if it is."""
        if self._done.is_set():
            callback()
        else:
            self._callbacks.append(callback)

    def _resolve(self, result: GenerationResult) -> None:
        if not self._done.is_set():
            self._result = result
            self._status = TaskStatus.SUCCEEDED
            self._settled()

    def _fail(self, error: BaseException, status: TaskStatus | None = None) -> None:
        if not self._done.is_set():
            self._error = error
            if status is not None:
                self._status = status
            self._settled()

    def _settled(self) -> None:
        self._done.set()
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()
