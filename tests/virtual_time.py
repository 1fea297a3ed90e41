"""An event loop on virtual time, for driving async code without waiting real seconds."""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Callable
from typing import Any

import anyio


class _VirtualSelector:
    """Never blocks: when the loop would wait for a timer, time jumps to it."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        self._inner = selectors.DefaultSelector()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[Any]:
        events = self._inner.select(0)
        if events or timeout == 0:
            return events
        if timeout is None:
            msg = "deadlock: every task waits and no timer is set"
            raise RuntimeError(msg)
        self._loop.now += timeout
        return events

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on simulated time: sleeping takes no real time at all."""

    def __init__(self) -> None:
        self.now = 0.0
        super().__init__(_VirtualSelector(self))  # type: ignore[arg-type]

    def time(self) -> float:
        return self.now


def run_virtual(fn: Callable[[], Awaitable[Any]]) -> Any:
    """Run `fn` on virtual time starting at 0."""
    return anyio.run(fn, backend="asyncio", backend_options={"loop_factory": VirtualTimeLoop})
