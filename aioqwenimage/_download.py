"""
Result downloads: streamed, retried, written atomically, bounded, and never with the API key.

Result URLs are signed OSS URLs on another host; the signature is the credential, so the download
pool sends no ``Authorization`` header at all (the transport's download session has none).
"""

from __future__ import annotations

import logging
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import anyio

from aioqwenimage._errors import (
    ImageExpiredError,
    QwenImageError,
    TransportError,
    error_from_response,
)
from aioqwenimage._transport import RetryPolicy, Transport

__all__ = ["Downloader", "url_expiry"]

logger = logging.getLogger("aioqwenimage")


def url_expiry(url: str) -> float | None:
    """The epoch second a signed result URL expires (its ``Expires`` parameter), if it has one."""
    values = parse_qs(urlsplit(url).query).get("Expires")
    if not values:
        return None
    try:
        return float(values[0])
    except ValueError:
        return None


class Downloader:
    """Fetches result images through the transport's download pool, `concurrency` at a time."""

    def __init__(
        self,
        transport: Transport,
        *,
        concurrency: int,
        retry: RetryPolicy,
        rng: random.Random,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._transport = transport
        self._limiter = anyio.CapacityLimiter(concurrency)
        self._retry = retry
        self._rng = rng
        self._now = wall_clock
        self.downloads = 0
        self.retries = 0

    async def read(self, url: str) -> bytes:
        """The whole image, in memory."""
        chunks: list[bytes] = []

        async def sink(chunk: bytes) -> None:
            chunks.append(chunk)

        async def restart() -> None:
            chunks.clear()

        await self._fetch(url, sink, restart)
        return b"".join(chunks)

    async def save(self, url: str, destination: str | Path, *, default_name: str) -> Path:
        """
        Stream the image to `destination` (a directory gets `default_name`) and return the path.

        The bytes go to a hidden temporary file in the same directory, which is renamed over
        the target only when complete; on any failure it is removed.
        """
        target = Path(destination)
        if await anyio.Path(target).is_dir() or str(destination).endswith(("/", os.sep)):
            target = target / default_name
        await anyio.Path(target.parent).mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            async with await anyio.open_file(partial, "wb") as file:

                async def sink(chunk: bytes) -> None:
                    await file.write(chunk)

                async def restart() -> None:
                    await file.seek(0)
                    await file.truncate()

                await self._fetch(url, sink, restart)
            await anyio.to_thread.run_sync(os.replace, partial, target)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await anyio.Path(partial).unlink(missing_ok=True)
            raise
        return target

    async def _fetch(
        self,
        url: str,
        sink: Callable[[bytes], Awaitable[None]],
        restart: Callable[[], Awaitable[None]],
    ) -> None:
        self._check_expiry(url)
        attempt = 0
        async with self._limiter:
            while True:
                attempt += 1
                failure: QwenImageError
                try:
                    status = await self._transport.download(url, sink)
                except TransportError as exc:
                    failure = exc
                else:
                    if status == 200:  # noqa: PLR2004
                        self.downloads += 1
                        return
                    if status in (403, 404):
                        self._check_expiry(url)
                    failure = error_from_response(status, None)
                    if status < 500 and status != 429:  # noqa: PLR2004
                        raise failure
                if attempt >= self._retry.attempts:
                    raise failure
                self.retries += 1
                delay = self._retry.backoff(attempt, self._rng)
                logger.info(
                    "download of %s failed (%s); retry %d of %d in %.2f s",
                    url.split("?", 1)[0],
                    failure,
                    attempt,
                    self._retry.attempts - 1,
                    delay,
                )
                await restart()
                await anyio.sleep(delay)

    def _check_expiry(self, url: str) -> None:
        expires = url_expiry(url)
        if expires is not None and self._now() >= expires:
            msg = (
                "the result URL expired at "
                f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(expires))}; "
                "DashScope keeps results for 24 hours"
            )
            raise ImageExpiredError(msg)
