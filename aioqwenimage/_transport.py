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
import anyio
import attrs

from aioqwenimage._errors import (
    APIError,
    QwenImageError,
    ServerError,
    TransportError,
    error_from_response,
    is_throttling_code,
)
from aioqwenimage._proxy import ProxyRoutes
from aioqwenimage._timeouts import network_timeout

__all__ = [
    "ConnectFailedError",
    "PoolKind",
    "PoolLimits",
    "Response",
    "RetryPolicy",
    "Timeouts",
    "Transport",
]

logger = logging.getLogger("aioqwenimage")

USER_AGENT = f"aioqwenimage/{importlib.metadata.version('aioqwenimage')}"


class PoolKind(enum.Enum):
    """Which connection pool a request uses."""

    CONTROL = "control"
    QUERY = "query"
    LONG = "long"
    DOWNLOAD = "download"


@attrs.frozen(kw_only=True)
class Timeouts:
    """
    Network timeouts, in seconds.

    Attributes:
        connect: Establishing a connection (TCP and TLS).
        control: Reading the answer of a create, poll, list or cancel.
        generation: A synchronous generation: DashScope allows up to 300 s.
        download: Between two chunks of a result download.
    """

    connect: float = 10.0
    control: float = 30.0
    generation: float = 300.0
    download: float = 60.0

    def __attrs_post_init__(self) -> None:
        for field in attrs.fields(Timeouts):
            value = getattr(self, field.name)
            if value is not None:  # None: a limit that is off, where one may be
                network_timeout(value, f"Timeouts.{field.name}")


@attrs.frozen(kw_only=True)
class PoolLimits:
    """
    Connection limits per pool, and how long idle connections are kept.

    Attributes:
        control: Connections for creates.
        query: Connections for polls, lists and cancels; also the most polls awaiting an answer
            at once.
        long: Connections for synchronous generations (each holds one for the whole call).
        download: Connections to the result host.
        keepalive: Idle seconds before a pooled connection is closed; longer than the longest
            poll interval so that polls reuse connections (the 2.0 SDK's 5 s does not).
    """

    control: int = 32
    query: int = 32
    long: int = 256
    download: int = 16
    keepalive: float = 30.0


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """
    Retries of idempotent calls (list, cancel, downloads): capped, jittered exponential backoff.

    Attributes:
        attempts: Tries in all, the first included.
        base: The first backoff, in seconds.
        cap: The largest backoff, in seconds.
    """

    attempts: int = 5
    base: float = 0.5
    cap: float = 20.0

    def backoff(self, attempt: int, rng: random.Random, floor: float | None = None) -> float:
        """The delay before retry number `attempt` (1-based); `floor` is a ``Retry-After``."""
        delay = min(self.cap, self.base * 2.0 ** (attempt - 1))
        delay = delay / 2 + rng.uniform(0, delay / 2)  # "equal jitter": spread, never near zero
        return max(delay, floor + rng.uniform(0, 0.1 * floor + 0.05)) if floor else delay

    def scaled(self, factor: float) -> RetryPolicy:
        """The same policy with every delay times `factor` (tests compress time with it)."""
        return attrs.evolve(self, base=self.base * factor, cap=self.cap * factor)


# Response headers worth keeping for users (`GenerationResult.headers`, `APIError.headers`): the
# request id, back-off hints, DashScope's flow-control and timing headers, rate-limit headers by
# any vendor's naming. An allow-list, so that nothing else (cookies) is ever carried along.
_KEPT_HEADER_PREFIXES = (
    "x-request-id",
    "retry-after",
    "x-dashscope-",
    "x-ratelimit-",
    "ratelimit",
    "req-cost-time",
    "req-arrive-time",
    "resp-start-time",
)


def kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers of an answer that users may need, with lower-case names."""
    return {
        name.lower(): value
        for name, value in headers.items()
        if name.lower().startswith(_KEPT_HEADER_PREFIXES)
    }


@attrs.frozen(kw_only=True)
class Response:
    """
    One HTTP answer: status, decoded JSON (``None`` when it was not JSON), request id, and the
    headers that `kept_headers` keeps.
    """

    status: int
    body: Mapping[str, Any] | None
    request_id: str | None
    retry_after: float | None
    headers: Mapping[str, str] = attrs.field(factory=dict)

    @property
    def ok(self) -> bool:
        """A 2xx answer."""
        return 200 <= self.status < 300  # noqa: PLR2004

    def error(self) -> APIError:
        """The mapped error for a non-2xx answer (or a 2xx whose body was not JSON)."""
        if self.ok:
            return ServerError(
                "the answer was not valid JSON",
                status=self.status,
                code="MalformedResponse",
                request_id=self.request_id,
                headers=self.headers,
            )
        return error_from_response(
            self.status,
            self.body,
            request_id=self.request_id,
            retry_after=self.retry_after,
            headers=self.headers,
        )

    @property
    def retryable(self) -> bool:
        """Whether an idempotent request that got this answer is worth sending again."""
        if self.status == 429:  # noqa: PLR2004
            code = self.body.get("code") if self.body else None
            return code is None or is_throttling_code(code)
        return self.status >= 500 or (self.ok and self.body is None)  # noqa: PLR2004


class ConnectFailedError(TransportError):
    """The connection could not be made: the request provably never left."""


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP-date: DashScope sends seconds; treat a date as "no hint"


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
        read_timeout = (
            self._timeouts.generation if pool is PoolKind.LONG else self._timeouts.control
        )
        try:
            url = self._base_url + path
            async with session.request(
                method,
                url,
                proxy=self._proxies.for_url(url),
                data=None if body is None else json.dumps(body, ensure_ascii=False).encode(),
                params=params,
                headers=headers,
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self._timeouts.connect, sock_read=read_timeout
                ),
            ) as response:
                raw = await response.read()
                body = _decode(raw)
                answer = Response(
                    status=response.status,
                    body=body,
                    request_id=response.headers.get("X-Request-ID") or _request_id_of(body),
                    retry_after=_retry_after(response.headers),
                    headers=kept_headers(response.headers),
                )
        except aiohttp.ClientConnectorError as exc:
            logger.debug("%s %s: could not connect: %s", method, url, exc.os_error)
            msg = f"could not connect to the API: {exc.os_error}"
            raise ConnectFailedError(msg) from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            logger.debug("%s %s: %s: %s", method, url, type(exc).__name__, exc)
            msg = f"{method} {path}: {type(exc).__name__}: {exc}"
            raise TransportError(msg) from exc
        # Headers are never logged: the request's carry the key.
        logger.debug("%s %s -> %d (request id %s)", method, url, answer.status, answer.request_id)
        if body is None and answer.ok:
            logger.warning(
                "%s %s answered %d with a body that is not JSON (request id %s)",
                method,
                url,
                answer.status,
                answer.request_id,
            )
        return answer

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
        errors.

        `acquire` is awaited before every attempt (the query budget: a retry is a query too);
        `on_retry` hears of each retry before its delay (the answer, or ``None`` for a network
        error, and the delay) so that callers can count and report it.

        Raises:
            APIError: A non-retryable answer, or the last retryable one.
            TransportError: The network failed on every attempt.
        """
        attempt = 0
        while True:
            attempt += 1
            failure: QwenImageError
            answer: Response | None = None
            if acquire is not None:
                await acquire()
            try:
                answer = await self.send(PoolKind.QUERY, method, path, params=params)
            except TransportError as exc:
                failure = exc
            else:
                if answer.ok and answer.body is not None:
                    return answer
                failure = answer.error()
                if not answer.retryable:
                    raise failure
            if attempt >= self._retry.attempts:
                raise failure
            floor = answer.retry_after if answer is not None else None
            delay = self._retry.backoff(attempt, self._rng, floor)
            logger.info(
                "%s %s: %s; retry %d of %d in %.2f s",
                method,
                path,
                f"HTTP {answer.status}" if answer is not None else type(failure).__name__,
                attempt,
                self._retry.attempts - 1,
                delay,
            )
            if on_retry is not None:
                await on_retry(answer, delay)
            await anyio.sleep(delay)

    async def download(
        self, url: str, sink: Callable[[bytes], Awaitable[None]], *, chunk_size: int = 256 * 1024
    ) -> int:
        """
        Stream `url` into `sink`, one attempt, without any API credential; returns the status.

        A non-200 status is returned without calling `sink` so that the caller can map it.

        Raises:
            TransportError: The network failed before or during the body.
        """
        session = self._session(PoolKind.DOWNLOAD)
        try:
            async with session.get(
                url,
                proxy=self._download_proxies.for_url(url),
                headers={"User-Agent": USER_AGENT},
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    sock_connect=self._timeouts.connect,
                    sock_read=self._timeouts.download,
                ),
            ) as response:
                # The query string is the file's signature: a credential, left out of logs.
                logger.debug("GET %s -> %d", url.split("?", 1)[0], response.status)
                if response.status != 200:  # noqa: PLR2004
                    await response.read()
                    return response.status
                async for chunk in response.content.iter_chunked(chunk_size):
                    await sink(chunk)
                return response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            logger.debug("GET %s: %s: %s", url.split("?", 1)[0], type(exc).__name__, exc)
            msg = f"download failed: {type(exc).__name__}: {exc}"
            raise TransportError(msg) from exc

    def _session(self, pool: PoolKind) -> aiohttp.ClientSession:
        try:
            return self._sessions[pool]
        except KeyError:
            msg = "the transport is closed"
            raise RuntimeError(msg) from None


def _decode(raw: bytes) -> Mapping[str, Any] | None:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _request_id_of(body: Mapping[str, Any] | None) -> str | None:
    value = body.get("request_id") if body else None
    return value if isinstance(value, str) else None
