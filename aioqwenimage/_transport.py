"""
HTTP for the client: sessions and pools, the auth header, JSON, retries and error mapping.

This is the only module that imports aiohttp; nothing typed by aiohttp leaves it. Four pools keep
one kind of traffic from starving another (DESIGN.md, Concurrency): *control* calls (creates) are
short; *query* calls (polls, lists, cancels) spend the account's query budget, and have their own
connections so that a query leaves the moment its budget token is taken (a query that first waited
for a connection would go out late, bunched with later ones, and could exceed the account's limit
on arrival); *long* calls are synchronous generations that hold a connection for up to 300 s;
*downloads* go to the result host and never carry the API key.
"""

from __future__ import annotations

import enum
import importlib.metadata
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp

from aioqwenimage._answers import (
    AnswerTooLargeError,
    ConnectFailedError,
    DownloadAnswer,
    Response,
    Verdict,
    decode,
    kept_headers,
    parse_retry_after,
    request_id,
    request_id_of,
    too_large,
    verdict,
)
from aioqwenimage._errors import TransportError
from aioqwenimage._proxy import ProxyRoutes
from aioqwenimage._retry import Retry, TryAgain, retrying
from aioqwenimage._settings import PoolLimits, RetryPolicy, Timeouts

# Re-exported: paid requests, polls and the downloader meet answers through the transport.
__all__ = [
    "AnswerTooLargeError",
    "ConnectFailedError",
    "DownloadAnswer",
    "PoolKind",
    "PoolLimits",
    "Response",
    "RetryPolicy",
    "Timeouts",
    "Transport",
    "parse_retry_after",
]

logger = logging.getLogger("aioqwenimage")

USER_AGENT = f"aioqwenimage/{importlib.metadata.version('aioqwenimage')}"


class PoolKind(enum.Enum):
    """Which connection pool a request uses."""

    CONTROL = "control"
    QUERY = "query"
    LONG = "long"
    DOWNLOAD = "download"


class Transport:
    """
    The client's HTTP: three pooled sessions, one attempt per `send`, retries in `call`.

    Open it with `open` inside the event loop that will use it; `aclose` closes only the
    sessions it created.
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        workspace: str | None = None,
        pools: PoolLimits | None = None,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        session: aiohttp.ClientSession | None = None,
        rng: random.Random | None = None,
        proxy: str | None = None,
        trust_env: bool = True,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}", "User-Agent": USER_AGENT}
        if workspace:
            self._headers["X-DashScope-WorkSpace"] = workspace
        self._pools = pools or PoolLimits()
        self._timeouts = timeouts or Timeouts()
        self._retry = retry or RetryPolicy()
        self._rng = rng or random.Random()
        self._given_session = session
        # A session the caller passes keeps its own proxy settings unless `proxy` is explicit.
        self._proxies = ProxyRoutes.resolve(proxy, trust_env=trust_env and session is None)
        self._download_proxies = ProxyRoutes.resolve(proxy, trust_env=trust_env)
        self._sessions: dict[PoolKind, aiohttp.ClientSession] = {}
        self._owned: list[aiohttp.ClientSession] = []

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy of idempotent calls."""
        return self._retry

    @property
    def pools(self) -> PoolLimits:
        """The connection limits."""
        return self._pools

    def open(self) -> None:
        """Create the pooled sessions; must run inside the event loop that will use them."""
        if self._sessions:
            return
        for kind, limit in (
            (PoolKind.CONTROL, self._pools.control),
            (PoolKind.QUERY, self._pools.query),
            (PoolKind.LONG, self._pools.long),
            (PoolKind.DOWNLOAD, self._pools.download),
        ):
            if self._given_session is not None and kind is not PoolKind.DOWNLOAD:
                self._sessions[kind] = self._given_session
                continue
            connector = aiohttp.TCPConnector(
                limit=limit, limit_per_host=limit, keepalive_timeout=self._pools.keepalive
            )
            # No default headers: the API key is added per API request, so the download
            # session cannot send it anywhere even by mistake.
            session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._timeouts.connect),
                raise_for_status=False,
                trust_env=False,
            )
            self._sessions[kind] = session
            self._owned.append(session)

    async def aclose(self) -> None:
        """Close the sessions this transport created (never a session the caller passed)."""
        owned, self._owned = self._owned, []
        self._sessions.clear()
        for session in owned:
            await session.close()

    async def send(
        self,
        pool: PoolKind,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        async_task: bool = False,
    ) -> Response:
        """
        One API request, no retry.

        Raises:
            ConnectFailedError: The connection could not be made (nothing was sent).
            TransportError: The request may have been sent, but no answer came.
        """
        session = self._session(pool)
        headers = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        if async_task:
            headers["X-DashScope-Async"] = "enable"
        timeouts = self._timeouts
        if pool is PoolKind.LONG:
            read_timeout, total = timeouts.generation, timeouts.generation + timeouts.connect
        elif pool is PoolKind.QUERY:
            read_timeout, total = timeouts.control, timeouts.query_total
        else:
            read_timeout, total = timeouts.control, timeouts.control_total
        failure: TransportError
        try:
            url = self._base_url + path
            async with session.request(
                method,
                url,
                proxy=self._proxies.for_url(url),
                data=None if body is None else json.dumps(body, ensure_ascii=False).encode(),
                params=params,
                headers=headers,
                # DashScope never redirects; following one would replay the key elsewhere.
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    total=total, sock_connect=timeouts.connect, sock_read=read_timeout
                ),
            ) as response:
                raw, problem = await _read_capped(response, self._pools.max_answer_bytes)
                # A service that echoes the key (in a message, a header) must not put it
                # into an error, a result or a log line.
                raw = raw.replace(self._key.encode(), b"***") if self._key else raw
                decoded, problem = decode(raw) if problem is None else (None, problem)
                answer = Response(
                    status=response.status,
                    body=decoded,
                    request_id=request_id(response.headers.get("X-Request-ID"))
                    or request_id_of(decoded),
                    retry_after=parse_retry_after(
                        response.headers.get("Retry-After"), cap=self._retry.max_retry_after
                    ),
                    problem=problem,
                    headers={
                        name: self._scrub(value)
                        for name, value in kept_headers(response.headers).items()
                    },
                )
        except aiohttp.ClientConnectorError as exc:
            failure = ConnectFailedError(
                self._scrub(f"could not connect to the API: {exc.os_error}")
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            failure = TransportError(self._scrub(f"{method} {path}: {_describe(exc)}"))
        else:
            # Headers are never logged: the request's carry the key.
            logger.debug(
                "%s %s -> %d (request id %s)", method, url, answer.status, answer.request_id
            )
            if answer.body is None and answer.ok:
                logger.warning(
                    "%s %s answered %d with a body that is not JSON it can use (%s; request id %s)",
                    method,
                    url,
                    answer.status,
                    answer.problem,
                    answer.request_id,
                )
            return answer
        logger.debug("%s %s: %s", method, url, failure)
        # Raised outside the handler, with no cause or context: aiohttp's exceptions hold the
        # request's headers (the key among them), and nothing reachable from an error may.
        raise failure

    @property
    def _key(self) -> str:
        return self._headers["Authorization"].removeprefix("Bearer ")

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        acquire: Callable[[], Awaitable[None]] | None = None,
        on_retry: Callable[[Response | None, float], Awaitable[None]] | None = None,
    ) -> Response:
        """
        An idempotent task query (list, cancel), retried on 429 (throttling), 5xx and network
        errors (``_retry.retrying``; `_answers.verdict` says which answers are worth another
        attempt).

        `acquire` is awaited before every attempt (the query budget: a retry is a query too);
        `on_retry` hears of each retry before its delay (the answer, or ``None`` for a network
        error, and the delay) so that callers can count and report it.

        Raises:
            APIError: A non-retryable answer, or the last retryable one.
            TransportError: The network failed on every attempt.
        """

        async def once() -> Response:
            if acquire is not None:
                await acquire()
            answer = await self.send(PoolKind.QUERY, method, path, params=params)
            outcome = verdict(answer)
            if outcome is Verdict.OK:
                return answer
            if outcome is Verdict.FATAL:
                raise answer.error()
            raise TryAgain.answered(answer, outcome)

        async def tell(retry: Retry) -> None:
            if on_retry is not None:
                await on_retry(retry.answer, retry.delay)

        return await retrying(
            once, policy=self._retry, rng=self._rng, what=f"{method} {path}", on_retry=tell
        )

    async def download(
        self,
        url: str,
        sink: Callable[[bytes], Awaitable[None]],
        *,
        chunk_size: int = 256 * 1024,
    ) -> DownloadAnswer:
        """
        One request for `url`, streamed into `sink`, without any API credential.

        Redirects are not followed: the answer carries the ``Location`` for the caller to
        check against its policy. A non-200 answer never reaches `sink`; its body's start does
        reach the answer (the storage service explains errors there).

        Raises:
            AnswerTooLargeError: The body outgrew ``PoolLimits.max_download_bytes``.
            TransportError: The network failed before or during the body.
        """
        session = self._session(PoolKind.DOWNLOAD)
        limit = self._pools.max_download_bytes
        failure: TransportError
        try:
            async with session.get(
                url,
                proxy=self._download_proxies.for_url(url),
                headers={"User-Agent": USER_AGENT},
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    total=self._timeouts.download_total,
                    sock_connect=self._timeouts.connect,
                    sock_read=self._timeouts.download,
                ),
            ) as response:
                # The query string is the file's signature: a credential, left out of logs.
                logger.debug("GET %s -> %d", url.split("?", 1)[0], response.status)
                if response.status != 200:  # noqa: PLR2004
                    excerpt = await response.content.read(64 * 1024)
                    response.close()
                    return DownloadAnswer(
                        status=response.status,
                        location=response.headers.get("Location"),
                        body=excerpt,
                    )
                size = 0 if (response.content_length or 0) <= limit else limit + 1
                async for chunk in response.content.iter_chunked(chunk_size):
                    size += len(chunk)
                    if size > limit:
                        break
                    await sink(chunk)
                if size > limit:
                    response.close()  # the rest may still be coming: never back to the pool
                    failure = AnswerTooLargeError(too_large("the image", limit))
                else:
                    return DownloadAnswer(status=200, size=size)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            failure = TransportError(f"download failed: {_describe(exc)}")
        logger.debug("GET %s: %s", url.split("?", 1)[0], failure)
        raise failure  # unchained, as in `send`

    def _session(self, pool: PoolKind) -> aiohttp.ClientSession:
        try:
            return self._sessions[pool]
        except KeyError:
            msg = "the transport is closed"
            raise RuntimeError(msg) from None


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> tuple[bytes, str | None]:
    """The body; or nothing, and why, when it is longer than `limit` bytes."""
    if (response.content_length or 0) > limit:
        response.close()
        return b"", too_large("the answer", limit)
    chunks: list[bytes] = []
    size = 0
    while chunk := await response.content.read(64 * 1024):
        size += len(chunk)
        if size > limit:
            # Closed, not returned to the pool: the rest of the answer is still on its way.
            response.close()
            return b"", too_large("the answer", limit)
        chunks.append(chunk)
    return b"".join(chunks), None


def _describe(exc: BaseException) -> str:
    # Type and message only: the message of aiohttp's errors names the URL, never the headers.
    return f"{type(exc).__name__}: {exc}"[:500]
