"""
The emulator's listening sockets: a TCP site that counts accepted connections, and a quiet logger.

Counting happens in the protocol factory, the one place every accepted connection passes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

__all__ = ["CountingSite", "QuietLogger"]


class QuietLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server logger, but everything at debug: an emulator never prints tracebacks."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:  # noqa: ARG002
        super().log(logging.DEBUG, msg, *args, **kwargs)


class CountingSite(web.BaseSite):
    """A TCP site that counts the connections it accepts."""

    __slots__ = ("_bound", "_host", "_on_accept", "_port")

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, on_accept: Callable[[], None]
    ) -> None:
        super().__init__(runner, backlog=1024)
        self._host = host
        self._port = port
        self._bound = port
        self._on_accept = on_accept

    @property
    def name(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._bound}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None  # noqa: S101 - the runner is set up before its sites
        on_accept = self._on_accept

        def accept() -> asyncio.Protocol:
            on_accept()
            return server()

        self._server = await asyncio.get_running_loop().create_server(
            accept, self._host, self._port, backlog=self._backlog, reuse_address=True
        )
        self._bound = self._server.sockets[0].getsockname()[1]
