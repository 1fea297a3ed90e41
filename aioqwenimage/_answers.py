"""
What an HTTP answer is, read defensively: status, JSON body, request id, ``Retry-After``.

The transport reads answers (and is the only module that touches aiohttp); this module decides
what they say. Nothing here raises on a bad answer: a body that is not a JSON object, too large
or nested too deep is ``None`` with the reason in `Response.problem`, and a ``Retry-After``
that is not a sane number of seconds is absent or capped.
"""

from __future__ import annotations

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
    "decode",
    "kept_headers",
    "parse_retry_after",
    "request_id",
    "request_id_of",
    "too_large",
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
        if self.status == 429:  # noqa: PLR2004
            code = self.body.get("code") if self.body else None
            return code is None or is_throttling_code(code)
        return self.status >= 500 or (self.ok and self.body is None)  # noqa: PLR2004


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
