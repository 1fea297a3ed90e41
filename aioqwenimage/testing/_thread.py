"""
An emulator served from a background thread with its own event loop.

Synchronous tests (starlette's ``TestClient``, Django's test client, a ``def`` test calling a
blocking client) never yield to an event loop, so an emulator started on the test's loop would
never answer them. In its own thread it answers whatever the calling thread does. The thread is
a daemon: a test run that forgets to stop it still exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from aioqwenimage.testing._server import FakeDashScope

__all__ = ["EmulatorThread"]

_T = TypeVar("_T")


class EmulatorThread:
    """Runs one emulator's ``start`` ... ``close`` on an event loop in a daemon thread."""

    def __init__(self, fake: FakeDashScope) -> None:
        self._fake = fake
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(
            target=self._run,
            name=f"aioqwenimage-emulator-{id(fake):x}",
            daemon=True,
        )

    def start(self) -> None:
        """Start serving; returns once both hosts listen. Raises what starting raised."""
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error

    def stop(self) -> None:
        """Close the emulator and wait for the thread to end. Idempotent."""
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            # The loop may have ended on its own between the check and the call.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def in_loop(self) -> bool:
        """Whether the caller runs on the emulator's own thread."""
        return threading.current_thread() is self._thread

    def call(self, fn: Callable[[], _T]) -> _T:
        """Run `fn` on the emulator's loop, between two requests, and return its result."""
        if self.in_loop() or self._loop is None or not self._thread.is_alive():
            return fn()

        async def run() -> _T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result()

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self._fake.start()
        except BaseException as exc:  # noqa: BLE001 - handed to the thread that started us
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self._fake.close()
