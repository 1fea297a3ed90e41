"""
The host of a client's background work: one asyncio task that owns one anyio task group.

The poll scheduler, the sweeper, synchronous calls and creates run in that task group. The host
task, not the caller that opened the client, owns it, so `Client.aclose` may run in another task
than the opener (FastAPI lifespans, pytest fixtures) without crossing cancel scopes between tasks,
and stopping the host leaves nothing running. A client belongs to the loop it was opened in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import anyio
import anyio.abc

from aioqwenimage._errors import WrongEventLoopError

__all__ = ["Host"]

Runner = Callable[[], Coroutine[Any, Any, None]]


class Host:
    """Runs background work in one task group, from `start` until `stop`."""

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started: anyio.Event | None = None
        self._stop: anyio.Event | None = None
        self._tg: anyio.abc.TaskGroup | None = None

    def __repr__(self) -> str:
        return f"<Host running={self._task is not None and not self._task.done()}>"

    def start(self, runners: Sequence[Runner]) -> None:
        """Start the host task in the running loop, with `runners` running until `stop`."""
        self._loop = asyncio.get_running_loop()
        self._started = anyio.Event()
        self._stop = anyio.Event()
        self._task = self._loop.create_task(self._run(runners))

    def check_loop(self) -> None:
        """
        Raises:
            WrongEventLoopError: The running loop is not the one the host started in.
        """
        if asyncio.get_running_loop() is not self._loop:
            # Its sessions, task group and scheduler live in that loop, which may be gone.
            msg = (
                "this client was opened in another event loop; a client belongs to the event "
                "loop it was opened in: create one per loop (e.g. per asyncio.run)"
            )
            raise WrongEventLoopError(msg)

    async def task_group(self) -> anyio.abc.TaskGroup:
        """The task group, once the host runs."""
        # Once it runs, no checkpoint: a caller being cancelled hands its clean-up (a remote
        # cancel) to the group from its `except` block, where any checkpoint would raise again.
        if self._tg is None:
            assert self._started is not None  # noqa: S101
            await self._started.wait()
        assert self._tg is not None  # noqa: S101
        return self._tg

    async def stop(self) -> None:
        """Cancel everything running in the task group and wait until the host task ended."""
        assert self._stop is not None  # noqa: S101
        assert self._task is not None  # noqa: S101
        self._stop.set()
        await self._task

    async def _run(self, runners: Sequence[Runner]) -> None:
        assert self._stop is not None  # noqa: S101
        assert self._started is not None  # noqa: S101
        async with anyio.create_task_group() as tg:
            self._tg = tg
            for run in runners:
                tg.start_soon(run)
            self._started.set()
            await self._stop.wait()
            tg.cancel_scope.cancel()
