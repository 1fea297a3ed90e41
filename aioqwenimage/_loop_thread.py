"""
An event loop in a daemon thread, reached through an anyio blocking portal: `SyncClient`'s engine.

Blocking callers hand coroutines to the loop and wait on a `concurrent.futures.Future`. A caller
interrupted while waiting (Ctrl-C) cancels the coroutine and waits, bounded, for its cleanup:
`Client.generate` cancels its task remotely then, and that must happen before the interrupt ends
the program. The thread is a daemon, so a client nobody closed never blocks interpreter exit.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Final, TypeVar

import anyio
from anyio.from_thread import BlockingPortal

from aioqwenimage._errors import ClientClosedError

__all__ = ["LoopThread"]

_T = TypeVar("_T")
_CANCEL_GRACE: Final = 35.0  # seconds an interrupted call may take to cancel (generate: 30 s)


class LoopThread:
    """An event loop in a daemon thread, reached through an anyio blocking portal."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._portal: BlockingPortal | None = None
        self._closed = False
        self._lock = threading.Lock()
        self.thread: threading.Thread = threading.Thread(
            target=self._main, name="aioqwenimage-sync", daemon=True
        )
        self.thread.start()
        self._ready.wait()

    def _main(self) -> None:
        async def serve() -> None:
            async with BlockingPortal() as portal:
                self._portal = portal
                self._ready.set()
                await portal.sleep_until_stopped()

        try:
            anyio.run(serve, backend="asyncio")
        finally:
            self._ready.set()

    def _require(self) -> BlockingPortal:
        if threading.current_thread() is self.thread:
            msg = "a SyncClient cannot be called from its own event loop (an event hook)"
            raise RuntimeError(msg)
        if self._closed or self._portal is None:
            msg = "the client is closed; create a new SyncClient"
            raise ClientClosedError(msg, task_id=None)
        return self._portal

    def call(self, fn: Callable[[], _T]) -> _T:
        """Run a plain function on the loop and return its result (even an awaitable one)."""
        # Boxed: the portal awaits whatever awaitable a function returns, and a TaskHandle is one.
        return self._require().call(lambda: [fn()])[0]

    def run(self, fn: Callable[[], Awaitable[_T]]) -> _T:
        """Run a coroutine function on the loop; an interrupted caller cancels it, and waits."""
        finished = threading.Event()

        async def guarded() -> _T:
            try:
                return await fn()
            finally:
                finished.set()

        try:
            future: Future[_T] = self._require().start_task_soon(guarded)
        except RuntimeError as exc:  # the portal stopped after the check: closed meanwhile
            msg = "the client is closed; create a new SyncClient"
            raise ClientClosedError(msg, task_id=None) from exc
        try:
            return future.result()
        except BaseException:
            if future.cancel():
                finished.wait(_CANCEL_GRACE)
            raise

    def stop(self, last: Callable[[], Awaitable[object]]) -> None:
        """Await `last` on the loop, then stop the loop and join its thread. Idempotent."""
        with self._lock:
            if self._closed:
                return
            portal = self._require() if self._portal is not None else None
            self._closed = True
        if portal is None:  # pragma: no cover - the loop failed to start
            self.thread.join()
            return
        try:
            portal.call(last)
        finally:
            portal.call(portal.stop)
            self.thread.join()

    def stop_soon(self, last: Callable[[], Awaitable[object]]) -> bool:
        """Like `stop` without blocking (for finalisers); whether it was still running."""
        with self._lock:
            if self._closed or self._portal is None:
                return False
            self._closed = True
        portal = self._portal

        async def shutdown() -> None:
            try:
                await last()
            finally:
                await portal.stop()

        # A finaliser may run on the loop's own thread, where the portal cannot be called, or
        # at interpreter exit, when the loop may be gone already.
        if threading.current_thread() is not self.thread:
            with contextlib.suppress(RuntimeError):
                portal.start_task_soon(shutdown)
        return True
