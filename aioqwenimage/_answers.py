"""
What an HTTP answer is, read defensively: status, JSON body, request id, ``Retry-After``; and what
it means for the request that got it (`verdict`).

The transport reads answers (and is the only module that touches aiohttp); this module decides
what they say. Nothing here raises on a bad answer: a body that is not a JSON object, too large
or nested too deep is ``None`` with the reason in `Response.problem`, and a ``Retry-After``
that is not a sane number of seconds is absent or capped.

Whether an answer is a success, worth another try, or final is decided here and nowhere else:
the retries of idempotent calls, the downloads, the sweeps, the polls and the paid requests all
ask `verdict` (or `status_verdict`), so that no two of them can read a status differently.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping
from typing import Any

import attrs

from aioqwenimage._errors import (
    APIError,
    ServerError,
    TransportError,
    error_from_response,
    is_throttling_code,
)

__all__ = [
    "AnswerTooLargeError",
    "ConnectFailedError",
    "DownloadAnswer",
    "Response",
    "Verdict",
    "decode",
    "kept_headers",
    "parse_retry_after",
    "request_id",
    "request_id_of",
    "status_verdict",
    "too_large",
    "verdict",
]


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
    One HTTP answer: status, decoded JSON (``None`` when it was not usable JSON), request id,
    and the headers that `kept_headers` keeps.

    `problem` says why a body is ``None`` (not JSON, too large, nested too deep).
    """

    status: int
    body: Mapping[str, Any] | None
    request_id: str | None
    retry_after: float | None
    problem: str | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict)

    @property
    def ok(self) -> bool:
        """A 2xx answer."""
        return 200 <= self.status < 300  # noqa: PLR2004

    def error(self) -> APIError:
        """The mapped error for a non-2xx answer (or a 2xx whose body was not JSON)."""
        if self.ok:
            return ServerError(
                self.problem or "the answer was not a JSON object",
                status=self.status,
                code="MalformedResponse",
                request_id=self.request_id,
                headers=self.headers,
            )
        if 300 <= self.status < 400:  # noqa: PLR2004
            return APIError(
                f"the API answered with a redirect (HTTP {self.status}); API requests are never "
                "redirected, so that the key goes nowhere else: check base_url",
                status=self.status,
                code="Redirect",
                request_id=self.request_id,
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
        return verdict(self) in (Verdict.RETRY, Verdict.THROTTLED)

    @property
    def throttling(self) -> bool:
        """
        Whether a 429 is transient throttling (no code, or a ``Throttling*`` one), not a spent
        quota; a code that is not a string counts as none, as in `error_from_response`.
        """
        code = self.body.get("code") if self.body else None
        return not isinstance(code, str) or is_throttling_code(code)


class Verdict(enum.Enum):
    """What an answer means for the request that got it (`verdict`)."""

    OK = "ok"
    """A 2xx with a readable body: use it."""
    RETRY = "retry"
    """Transient: worth sending again after a backoff. For a paid request, only what provably
    created nothing (503)."""
    THROTTLED = "throttled"
    """A 429 worth waiting for (``Throttling*`` or no code); nothing was created."""
    FATAL = "fatal"
    """Final: raise `Response.error`. Sending it again would get the same answer."""
    UNCERTAIN = "uncertain"
    """Paid requests only: it may have created (and billed) something, or not; never re-sent."""


def status_verdict(
    status: int, *, readable: bool = True, throttling: bool = True, paid: bool = False
) -> Verdict:
    """
    The verdict of an answer known by its status (and whether its body could be read).

    Args:
        readable: The body is usable (for a 2xx: a JSON object).
        throttling: A 429 is throttling, not a spent quota (see `Response.throttling`).
        paid: The request orders images (a create, a synchronous call): an answer that does not
            prove that nothing was created is `Verdict.UNCERTAIN`, never `Verdict.RETRY`.
    """
    if 200 <= status < 300:  # noqa: PLR2004
        if readable:
            return Verdict.OK
        # Something answered "done" unreadably: a paid request may have created a task.
        return Verdict.UNCERTAIN if paid else Verdict.RETRY
    if status == 429:  # noqa: PLR2004
        return Verdict.THROTTLED if throttling else Verdict.FATAL
    if status >= 500:  # noqa: PLR2004
        # Only "503 ModelUnavailable" says nothing was created; another 5xx may come after the
        # task was made (a gateway that timed out waiting for the service).
        return Verdict.RETRY if not paid or status == 503 else Verdict.UNCERTAIN  # noqa: PLR2004
    return Verdict.FATAL


def verdict(response: Response, *, paid: bool = False) -> Verdict:
    """
    What `response` means for the request that got it.

    Idempotent requests (polls, lists, cancels): a 2xx with a body is `OK`; a throttling 429
    `THROTTLED`; a 5xx or an unreadable 2xx `RETRY`; anything else (a quota 429 included)
    `FATAL`. Paid requests (`paid`: creates, synchronous calls): the same, except that an
    unreadable 2xx and a 5xx other than 503 are `UNCERTAIN`.
    """
    return status_verdict(
        response.status,
        readable=response.body is not None,
        throttling=response.throttling,
        paid=paid,
    )


class ConnectFailedError(TransportError):
    """The connection could not be made: the request provably never left."""


@attrs.frozen(kw_only=True)
class DownloadAnswer:
    """
    The answer of one result-host request, redirects not followed.

    Attributes:
        status: The HTTP status.
        location: The ``Location`` of a redirect.
        body: The start of a non-200 answer's body (OSS explains errors in XML), at most 64 KiB.
        size: Bytes handed to the sink (200 only).
    """

    status: int
    location: str | None = None
    body: bytes = b""
    size: int = 0


class AnswerTooLargeError(TransportError):
    """An answer grew past its cap; what it said is unknown."""


def parse_retry_after(value: str | None, *, cap: float) -> float | None:
    """
    A ``Retry-After`` header as seconds, at most `cap`; ``None`` when absent or unusable.

    DashScope sends seconds. ``inf`` and huge numbers are cut to `cap`; NaN, negative values
    and HTTP dates (which would need the two clocks to agree) count as absent, and the
    caller's own backoff applies.
    """
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    if math.isnan(seconds) or seconds < 0:
        return None
    return min(seconds, cap)


def too_large(what: str, limit: int) -> str:
    return f"{what} is larger than {limit / 1024 / 1024:g} MiB; it was cut off"


def _refuse_constant(name: str) -> Any:
    msg = f"{name} is not JSON"
    raise ValueError(msg)


def decode(raw: bytes) -> tuple[Mapping[str, Any] | None, str | None]:
    """The answer's JSON object, or ``None`` and why not."""
    try:
        # Strict JSON: DashScope never sends NaN or Infinity, and they poison arithmetic.
        value = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        return None, "the answer was nested too deeply to be read"
    except ValueError:  # UnicodeDecodeError included
        return None, "the answer was not valid JSON"
    if not isinstance(value, dict):
        return None, "the answer was not a JSON object"
    return value, None


def request_id(value: str | None) -> str | None:
    return value[:200] if value else None


def request_id_of(body: Mapping[str, Any] | None) -> str | None:
    value = body.get("request_id") if body else None
    return value[:200] if isinstance(value, str) else None
