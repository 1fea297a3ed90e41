"""
Result downloads: streamed, retried, written atomically, bounded, and never with the API key.

Result URLs are signed OSS URLs on another host; the signature is the credential, so the download
pool sends no ``Authorization`` header at all (the transport's download session has none). What
may be fetched and kept is `_safety`'s policy; redirects are followed here, hop by hop, so that
each one is checked against it.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import anyio

from aioqwenimage._answers import Verdict, status_verdict
from aioqwenimage._errors import (
    ImageExpiredError,
    InvalidRequestError,
    QwenImageError,
    UnsafeResultError,
    error_from_response,
)
from aioqwenimage._events import Recorder
from aioqwenimage._retry import Retry, TryAgain, retrying
from aioqwenimage._safety import (
    MAX_REDIRECTS,
    SIGNATURE_BYTES,
    ResultPolicy,
    check_image_signature,
    parse_oss_error,
    safe_name,
    target_in,
)
from aioqwenimage._settings import RetryPolicy
from aioqwenimage._transport import AnswerTooLargeError, DownloadAnswer, Transport

__all__ = ["Downloader", "url_expiry"]


def url_expiry(url: str) -> float | None:
    """The epoch second a signed result URL expires (its ``Expires`` parameter), if it has one."""
    values = parse_qs(urlsplit(url).query).get("Expires")
    if not values:
        return None
    try:
        expires = float(values[0])
    except ValueError:
        return None
    return expires if math.isfinite(expires) else None


class Downloader:
    """
    Fetches result images through the transport's download pool, `concurrency` at a time.

    `policy` decides which URLs (and redirects) may be fetched; `events` counts every HTTP request
    sent to a result host (retries and redirects included) as a ``download``, and the re-sends.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        concurrency: int,
        retry: RetryPolicy,
        rng: random.Random,
        events: Recorder,
        policy: ResultPolicy | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._transport = transport
        self._limiter = anyio.CapacityLimiter(concurrency)
        self._retry = retry
        self._rng = rng
        self._policy = policy or ResultPolicy(strict=True)
        self._now = wall_clock
        self._events = events

    async def read(self, url: str) -> bytes:
        """The whole image, in memory."""
        chunks: list[bytes] = []

        async def sink(chunk: bytes) -> None:
            chunks.append(chunk)

        async def restart() -> None:
            chunks.clear()

        await self._fetch(url, sink, restart)
        return b"".join(chunks)

    async def save(
        self,
        url: str,
        destination: str | Path,
        *,
        default_name: str,
        filename: str | None = None,
    ) -> Path:
        """
        Stream the image to a file and return its path.

        With `filename`, `destination` is a directory and the file is ``destination/filename``.
        Without, an existing file is replaced; else `destination` is a directory (receiving
        `default_name`, reduced to a safe name) when it is one already, ends with a separator,
        or has no file extension; else it is the file itself. A directory is created as
        needed, and a file written into it must resolve inside it.

        The bytes go to a hidden temporary file in the same directory, which is renamed over
        the target only when complete and checked; on any failure it is removed.

        Raises:
            InvalidRequestError: `filename` is not a plain file name, or `destination` is an
                existing file where a directory is meant.
            UnsafeResultError: The file would land outside the directory, or the policy
                refused the URL or the bytes.
        """
        target = Path(destination)
        trailing = str(destination).endswith(("/", os.sep))
        existing_file = await anyio.Path(target).is_file()
        if existing_file and (filename is not None or trailing):
            msg = f"{str(destination)!r} is a file, not a directory to save into"
            raise InvalidRequestError(msg, parameter="destination")
        is_directory = not existing_file and (
            filename is not None
            or trailing
            or not target.suffix
            or await anyio.Path(target).is_dir()
        )
        if is_directory:
            name = filename if filename is not None else safe_name(default_name)
            await anyio.Path(target).mkdir(parents=True, exist_ok=True)
            target = await anyio.to_thread.run_sync(target_in, target, name)
        else:
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
        self._policy.check(url)
        self._check_expiry(url)

        async def once() -> None:
            try:
                await self._fetch_once(url, sink)
            except AnswerTooLargeError as exc:  # a policy refusal: another try grows as large
                raise UnsafeResultError(str(exc)) from None

        async def before_retry(_retry: Retry) -> None:
            self._events.retried()
            await restart()  # the next attempt starts the file (or the buffer) over

        async with self._limiter:
            await retrying(
                once,
                policy=self._retry,
                rng=self._rng,
                # The query string is the file's signature: a credential, left out of logs.
                what=f"download of {url.split('?', 1)[0]}",
                on_retry=before_retry,
            )

    async def _fetch_once(self, url: str, sink: Callable[[bytes], Awaitable[None]]) -> None:
        """One download, following up to `MAX_REDIRECTS` redirects that the policy allows."""
        head = bytearray()

        async def checked(chunk: bytes) -> None:
            # The first bytes decide, before any of them is handed on: no page saved as .png.
            if len(head) < SIGNATURE_BYTES:
                head.extend(chunk)
                if len(head) < SIGNATURE_BYTES:
                    return
                check_image_signature(bytes(head))
                chunk, head[SIGNATURE_BYTES:] = bytes(head), b""
            await sink(chunk)

        hop = url
        for _ in range(MAX_REDIRECTS + 1):
            self._events.sent("download")
            answer = await self._transport.download(hop, checked)
            if answer.status == 200:  # noqa: PLR2004
                if len(head) < SIGNATURE_BYTES:  # shorter than any image header
                    check_image_signature(bytes(head))
                return
            if 300 <= answer.status < 400 and answer.location:  # noqa: PLR2004
                target = urljoin(hop, answer.location)
                self._policy.check(target, redirected_from=hop)
                hop = target
                continue
            raise self._error(url, answer)
        msg = f"more than {MAX_REDIRECTS} redirects from the result host; giving up"
        raise UnsafeResultError(msg)

    def _error(self, url: str, answer: DownloadAnswer) -> QwenImageError | TryAgain:
        """The error for a non-200 answer: OSS's own code and message, when it sent them."""
        fields = parse_oss_error(answer.body)
        code, message = fields.get("Code"), fields.get("Message")
        if _says_expired(fields) or (answer.status in (400, 403, 404) and self._expired(url)):
            return ImageExpiredError(_expired_message(url, fields))
        text = f"the result host answered HTTP {answer.status}"
        if message:
            text = f"{text}: {message}"
        body = {"code": code, "message": text, "request_id": fields.get("RequestId")}
        error = error_from_response(answer.status, body)
        # The storage service's codes are not DashScope's: any 429 is throttling.
        outcome = status_verdict(answer.status)
        if outcome in (Verdict.RETRY, Verdict.THROTTLED):
            return TryAgain(error, status=answer.status, throttled=outcome is Verdict.THROTTLED)
        return error

    def _expired(self, url: str) -> bool:
        expires = url_expiry(url)
        return expires is not None and self._now() >= expires

    def _check_expiry(self, url: str) -> None:
        if self._expired(url):
            raise ImageExpiredError(_expired_message(url, {}))


def _says_expired(fields: Mapping[str, str]) -> bool:
    """OSS's own verdict, by its own clock: ours may be wrong either way."""
    if fields.get("Code") == "AccessDenied" and "expired" in fields.get("Message", "").lower():
        return True
    expires, now = _oss_time(fields.get("Expires")), _oss_time(fields.get("ServerTime"))
    return expires is not None and now is not None and now >= expires


def _oss_time(value: str | None) -> float | None:
    if not value:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            parsed = dt.datetime.strptime(value, fmt).replace(tzinfo=dt.timezone.utc)
        except ValueError:
            continue
        return parsed.timestamp()
    return None


def _expired_message(url: str, fields: Mapping[str, str]) -> str:
    expires = url_expiry(url)
    when = (
        f" at {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(expires))}"
        if expires is not None and expires < 253402300800  # noqa: PLR2004 - year 9999
        else ""
    )
    source = " (so says the storage service)" if fields else ""
    return (
        f"the result URL expired{when}{source}; DashScope keeps results for 24 hours, so the "
        "images of this task are gone"
    )
