"""
`Notifications`: the receiver of task-completion events, and its settings.

Model Studio can publish a "task finished" event to Alibaba Cloud EventBridge, which pushes it to
an HTTP endpoint (or a RocketMQ topic) with no rate limit. A client given a `Notifications` learns
its tasks' ends from these events, at one query per task (the confirming ``GET /tasks/{id}``),
instead of polling within the account's 20 task queries per second.

The receiver is transport-agnostic: `feed` takes a body and its headers and answers an HTTP status;
`asgi_app` and `aiohttp_handler` wrap it for a web framework; `listen` serves it alone. It checks
the fixed token EventBridge sends in ``x-eventbridge-signature-token`` in constant time and never
echoes it; it answers 2xx for every well-formed event (an event about another process's task is
normal, and a 5xx would only make EventBridge retry it), 4xx for what it refuses. What the event
says is never trusted: it makes the named task be polled at once, and only that poll's answer
ends the generation (``_notified_polling``, ``_registry``). The v2 RSA signature is not checked.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from typing import Any, Final

from aiohttp import web

from aioqwenimage._notice import MalformedEventError, SeenEvents, parse
from aioqwenimage._notified_polling import NotifiedPolling

__all__ = ["TOKEN_HEADER", "Notifications"]

logger = logging.getLogger("aioqwenimage")

TOKEN_HEADER: Final = "x-eventbridge-signature-token"  # noqa: S105 - a header name
MAX_BODY: Final = 64 * 1024  # an event is about 1 KiB; anything far larger is not one

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]
"""A plain ASGI 3 application (mount it in FastAPI or Starlette with ``app.mount``)."""

_REASONS: Final = {
    200: "accepted",
    400: "malformed event",
    401: "missing token",
    403: "wrong token",
    405: "POST only",
    413: "body too large",
}


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    # A plain dict from another framework may keep the sender's capitalisation.
    return next((v for k, v in headers.items() if k.lower() == name), None)


class Notifications:
    """
    Receives EventBridge's task-completion events for one `Client`, making polls the fallback.

    Pass it as ``Client(notifications=Notifications(token=...))``, then expose
    ``client.notifications`` at the URL of EventBridge's HTTP target: `asgi_app` (FastAPI,
    Starlette), `aiohttp_handler` (``aiohttp.web``), `listen` (a server of its own), or `feed`
    (a RocketMQ consumer, any other framework), in the client's event loop or any other.

    While notifications arrive, a task is polled only once its notification is overdue (its
    polls come `stretch` times later than usual) and sweeps pause; when `missing_after` tasks in
    a row were found finished by polls alone, polling returns to normal until notifications
    arrive again (a warning in the log, a ``NOTIFICATIONS_MISSING`` event).

    Args:
        token: The fixed token the HTTP target sends in ``x-eventbridge-signature-token``.
        stretch: How many times later than usual a task is polled while notifications are trusted.
        missing_after: Completions in a row found by polls alone before polling returns to normal.
        remember: How many event ids are remembered to drop redeliveries.

    Raises:
        ValueError: An empty token, a stretch below 1, or a count below 1.
    """

    __module__ = "aioqwenimage"

    def __init__(
        self,
        *,
        token: str,
        stretch: float = 4.0,
        missing_after: int = 3,
        remember: int = 10_000,
    ) -> None:
        if not token:
            raise ValueError("token must be a non-empty string")
        if not stretch >= 1 or missing_after < 1:
            msg = f"stretch must be at least 1 and missing_after at least 1, got {stretch!r}, "
            msg += f"{missing_after!r}"
            raise ValueError(msg)
        self._token = token.encode()
        self.stretch: float = float(stretch)
        self.missing_after: int = missing_after
        self._seen = SeenEvents(remember)
        self._polling: NotifiedPolling | None = None
        self.counts: Counter[str] = Counter()
        """What the receiver did: ``received``, ``refused``, ``duplicate``, ``ignored``
        (another event type, or a task this client does not follow), ``news`` (a live task,
        polled at once), ``forwarded`` (handed to the client's loop from another thread)."""

    def __repr__(self) -> str:  # never the token
        counts = " ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))
        return f"<Notifications {counts or 'received=0'}>"

    def _bind(self, polling: NotifiedPolling) -> None:
        """Called by the client that owns this receiver (one client per receiver)."""
        if self._polling is not None:
            raise ValueError("this Notifications already belongs to another Client")
        self._polling = polling

    @property
    def trusted(self) -> bool:
        """Whether polling is the fallback now (False once notifications went missing)."""
        return self._polling is None or self._polling.trusting

    # --- the transport-agnostic entry ---------------------------------------------------------

    async def feed(self, body: bytes, headers: Mapping[str, str]) -> int:
        """
        Take one delivery: check its token, read it, and poll its task at once if it is ours.

        Returns the HTTP status to answer: 200 accepted (a duplicate, an event about a task this
        client does not follow, or another event type included), 400 malformed, 401 without a
        token, 403 with a wrong one, 413 for a body over 64 KiB. Never raises.
        """
        self.counts["received"] += 1
        status = self._take(body, headers)
        if status != 200:  # noqa: PLR2004
            self.counts["refused"] += 1
            logger.info("completion notification refused: %s", _REASONS[status])
        return status

    def _take(self, body: bytes, headers: Mapping[str, str]) -> int:
        token = _header(headers, TOKEN_HEADER)
        if token is None:
            return 401
        if not hmac.compare_digest(token.encode(), self._token):
            return 403
        if len(body) > MAX_BODY:
            return 413
        try:
            event = parse(body)
        except MalformedEventError:
            return 400
        if event is None:
            self.counts["ignored"] += 1
            return 200
        if not self._seen.add(event.event_id):
            self.counts["duplicate"] += 1
            return 200
        news = False if self._polling is None else self._polling.hint(event.task_id)
        self.counts["forwarded" if news is None else "news" if news else "ignored"] += 1
        return 200

    # --- framework adapters --------------------------------------------------------------------

    def asgi_app(self) -> AsgiApp:
        """A plain ASGI application that answers every POST with `feed` (any path)."""

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "lifespan":
                while True:
                    message = await receive()
                    if message["type"] == "lifespan.startup":
                        await send({"type": "lifespan.startup.complete"})
                    elif message["type"] == "lifespan.shutdown":
                        await send({"type": "lifespan.shutdown.complete"})
                        return
            if scope["type"] != "http":
                return
            status = 405
            if scope["method"] == "POST":
                body, more = b"", True
                while more and len(body) <= MAX_BODY:
                    message = await receive()
                    body += message.get("body", b"")
                    more = message.get("more_body", False)
                headers = {
                    name.decode("latin-1").lower(): value.decode("latin-1")
                    for name, value in scope["headers"]
                }
                status = await self.feed(body, headers)
            payload = json.dumps({"status": _REASONS[status]}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": payload})

        return app

    def aiohttp_handler(self) -> Callable[[web.Request], Awaitable[web.Response]]:
        """An ``aiohttp.web`` handler that answers a POST with `feed`."""

        async def handler(request: web.Request) -> web.Response:
            status = 405
            if request.method == "POST":
                body = await request.content.read(MAX_BODY + 1)
                status = await self.feed(body, request.headers)
            return web.json_response({"status": _REASONS[status]}, status=status)

        return handler

    @contextlib.asynccontextmanager
    async def listen(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """
        Serve the receiver alone on `host`:`port` while the block runs; yields its URL.

        For scripts and the command line. Behind a public address, put TLS in front of it
        (EventBridge's HTTP target takes an https URL).
        """
        app = web.Application(client_max_size=MAX_BODY + 1)
        app.router.add_route("*", "/{tail:.*}", self.aiohttp_handler())
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
            bound = runner.addresses[0][1] if runner.addresses else port  # `port` 0: the one bound
            where = f"[{host}]" if ":" in host else host
            yield f"http://{where}:{bound}/"
        finally:
            await runner.cleanup()
