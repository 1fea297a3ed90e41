"""
Every error aioqwenimage raises, and the one place where HTTP answers become them.

::

    QwenImageError
    ├── APIError                    the service answered an error: status, code, message, request_id
    │   ├── AuthenticationError     401, or no API key configured
    │   ├── PermissionDeniedError   403: model, workspace or endpoint not allowed for this key
    │   ├── InvalidRequestError     400/404/413/415, or refused by the model catalog before any I/O
    │   ├── ContentModerationError  DataInspectionFailed and kin: never retried
    │   │   └── TaskModeratedError  ...reported by a task that ended FAILED (a TaskFailedError too)
    │   ├── RateLimitError          429 throttling that outlasted the retry budget
    │   ├── QuotaExceededError      arrears, exhausted quota: never retried
    │   └── ServerError             5xx
    ├── TransportError              the network failed (connect, reset, timeout)
    ├── SubmissionUncertainError    a create was sent, its outcome is unknown; it was not re-sent
    ├── ImageExpiredError           a result URL is past its expiry
    ├── UnsafeResultError           a result refused for safety: URL, redirect, bytes, file name
    ├── WrongEventLoopError         a client used outside the event loop it was opened in
    └── TaskError                   about one task (task_id)
        ├── TaskFailedError         the task ended FAILED
        ├── TaskCanceledError       the task ended CANCELED, or its handle was cancelled
        │   └── ClientClosedError   ...because the client was closed (a RuntimeError too)
        ├── TaskExpiredError        the service does not know the task (UNKNOWN: none, or >24 h)
        └── TaskTimeoutError        waiting outlasted the caller's timeout (a TimeoutError too)

No message ever contains the API key: messages come from the service or from this library.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "APIError",
    "AuthenticationError",
    "ClientClosedError",
    "ContentModerationError",
    "ImageExpiredError",
    "InvalidRequestError",
    "PermissionDeniedError",
    "QuotaExceededError",
    "QwenImageError",
    "RateLimitError",
    "ServerError",
    "SubmissionUncertainError",
    "TaskCanceledError",
    "TaskError",
    "TaskExpiredError",
    "TaskFailedError",
    "TaskModeratedError",
    "TaskTimeoutError",
    "TransportError",
    "UnsafeResultError",
    "WrongEventLoopError",
    "error_from_response",
    "is_moderation_code",
    "is_throttling_code",
]


class QwenImageError(Exception):
    """The base of every error this library raises."""


class APIError(QwenImageError):
    """
    The service answered with an error.

    Attributes:
        status: The HTTP status, or ``None`` when the error was found without a request.
        code: DashScope's error code, e.g. ``"InvalidParameter"``.
        message: DashScope's message, or this library's.
        request_id: The id of the failed request, for support tickets.
        body: The answer's JSON body as the service sent it (a copy), for fields this
            library does not know; ``None`` without an answer or when it was not JSON.
        headers: The answer's headers that matter (request id, ``Retry-After``, DashScope's
            flow-control and timing headers, any rate-limit headers), with lower-case names;
            empty without an answer.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        # Copies, not views: errors must stay picklable (multiprocessing, pytest-xdist).
        self.body: Mapping[str, Any] | None = None if body is None else dict(body)
        self.headers: Mapping[str, str] = dict(headers or {})

    def __str__(self) -> str:
        parts = [f"{self.code}: {self.message}" if self.code else self.message]
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        if self.request_id:
            parts.append(f"request_id={self.request_id}")
        return " | ".join(parts)


class AuthenticationError(APIError):
    """Raised on 401 ``InvalidApiKey``, and at first use when no API key is configured."""


class PermissionDeniedError(APIError):
    """Raised on 403: the key may not use this model, workspace or endpoint."""


class InvalidRequestError(APIError):
    """
    Raised when a request is malformed: by the service (400, 404, 413, 415), or by the model
    catalog before any network I/O, naming the parameter, the rule and the model.

    Attributes:
        parameter: The offending parameter, when known.
        model: The model the rule belongs to, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        parameter: str | None = None,
        model: str | None = None,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            message, status=status, code=code, request_id=request_id, body=body, headers=headers
        )
        self.parameter = parameter
        self.model = model


class ContentModerationError(APIError):
    """Raised when moderation rejects a prompt, an input or an output (``DataInspectionFailed``)."""


class RateLimitError(APIError):
    """Raised when throttling (429) outlasted the retry budget.

    Attributes:
        retry_after: The service's ``Retry-After`` in seconds, when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            message, status=status, code=code, request_id=request_id, body=body, headers=headers
        )
        self.retry_after = retry_after


class QuotaExceededError(APIError):
    """Raised on arrears or an exhausted quota; retrying cannot help, so it never happens."""


class ServerError(APIError):
    """Raised on a 5xx answer that outlasted the retry budget (or on a create, at once)."""


class TransportError(QwenImageError):
    """Raised when the network failed: connection refused or reset, DNS, TLS, timeout."""


class SubmissionUncertainError(QwenImageError):
    """
    Raised when a request that orders images was sent but its outcome is unknown (the connection
    dropped after sending, a timeout, a 5xx other than 503). The request was *not* re-sent,
    because a second one could order and bill the same image twice.

    For a task-creating request, `Client.resolve_uncertain` finds the task it created, or shows
    that none was. A synchronous call creates no task: nothing can be looked up.

    Attributes:
        model: The model of the request.
        prompt: The prompt of the request.
        creates_task: Whether the request would have created a task (``False``: a synchronous
            call, which leaves nothing to look up).
        sent_at: When the request was (last) sent, in epoch seconds; ``None`` if unknown.
        parameters: The request's ``parameters`` as sent (size, n, seed...).
    """

    def __init__(
        self,
        message: str,
        *,
        model: str,
        prompt: str,
        creates_task: bool = True,
        sent_at: float | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.model = model
        self.prompt = prompt
        self.creates_task = creates_task
        self.sent_at = sent_at
        self.parameters: Mapping[str, Any] = dict(parameters or {})


class ImageExpiredError(QwenImageError):
    """Raised when a result image is fetched after its signed URL expired (24 h after the task)."""


class UnsafeResultError(QwenImageError):
    """
    Raised when a result is refused for safety, and nothing was written: a result URL that is
    not ``https`` or names (or redirects to) a loopback, link-local or private address while
    the API host is not local; bytes that are not a PNG, JPEG or WebP image, or larger than
    ``PoolLimits.max_download_bytes``; a file name from the service that would land outside
    the chosen directory.
    """


class TaskError(QwenImageError):
    """
    The base of errors about one task.

    Attributes:
        task_id: The task's id; ``None`` for a synchronous call, which has none.
    """

    def __init__(self, message: str, *, task_id: str | None) -> None:
        super().__init__(message)
        self.task_id = task_id


class TaskFailedError(TaskError):
    """
    Raised when a task ends ``FAILED`` (or a synchronous call produced no image).

    Attributes:
        code: The task's error code.
        message: The task's error message.
    """

    def __init__(self, message: str, *, task_id: str | None, code: str | None) -> None:
        super().__init__(f"{code}: {message}" if code else message, task_id=task_id)
        self.code = code
        self.message = message


class TaskModeratedError(TaskFailedError, ContentModerationError):
    """Raised when a task ends ``FAILED`` because moderation rejected its input or output."""

    def __init__(self, message: str, *, task_id: str | None, code: str | None) -> None:
        TaskFailedError.__init__(self, message, task_id=task_id, code=code)
        # The APIError side: a task's failure has no HTTP status or request of its own.
        self.status: int | None = None
        self.request_id: str | None = None


class TaskCanceledError(TaskError):
    """Raised when a task ends ``CANCELED``, or its handle was cancelled locally."""


class ClientClosedError(TaskCanceledError, RuntimeError):
    """
    Raised when the client was closed: by a call made after `Client.aclose` began, by a
    submission still waiting for its limits then (no request leaves after it), and by every
    handle not yet finished. ``task_id`` names the task when one exists, for `Client.attach`.
    """


class WrongEventLoopError(QwenImageError, RuntimeError):
    """
    Raised when a client is used in another event loop than the one it was opened in (for
    example across two ``asyncio.run`` calls): its connections and tasks belong to that loop.
    """


class TaskExpiredError(TaskError):
    """Raised when the service answers ``UNKNOWN``: no such task, or past the 24 h retention."""


class TaskTimeoutError(TaskError, TimeoutError):
    """Raised when ``wait(timeout=...)`` ran out; the task goes on and can be awaited again."""


_MODERATION_CODES = frozenset(
    {"DataInspectionFailed", "IPInfringementSuspect", "DataInspection", "Inappropriate"}
)
_QUOTA_CODES = frozenset(
    {
        "Arrearage",
        "AllocationQuota.FreeTierOnly",
        # A 429, but an exhausted allocation ("increase your quota limit"): waiting won't help.
        "Throttling.AllocationQuota",
        "CommodityNotPurchased",
        "PrepaidBillOverdue",
        "PostpaidBillOverdue",
    }
)


def is_moderation_code(code: str | None) -> bool:
    """Whether a DashScope code means moderation rejected the content."""
    return code is not None and (code in _MODERATION_CODES or code.startswith("DataInspection"))


def is_throttling_code(code: str | None) -> bool:
    """Whether a 429's code is transient throttling (worth waiting for), not a spent quota."""
    return code is not None and code.startswith("Throttling") and code not in _QUOTA_CODES


def error_from_response(
    status: int,
    body: Mapping[str, Any] | None,
    *,
    request_id: str | None = None,
    retry_after: float | None = None,
    headers: Mapping[str, str] | None = None,
) -> APIError:
    """
    The error for a non-2xx answer, from its HTTP status and DashScope ``code``.

    The code decides where it is specific (moderation, quota), the status otherwise
    (``dashscope-api.md`` §6).
    """
    raw, body = body, body or {}
    code = body.get("code") if isinstance(body.get("code"), str) else None
    raw_message = body.get("message")
    message = raw_message if isinstance(raw_message, str) and raw_message else f"HTTP {status}"
    request_id = request_id or (
        body.get("request_id") if isinstance(body.get("request_id"), str) else None
    )
    fields: dict[str, Any] = {
        "status": status,
        "code": code,
        "request_id": request_id,
        "body": raw,
        "headers": headers,
    }
    if code in _QUOTA_CODES:
        return QuotaExceededError(message, **fields)
    if is_moderation_code(code):
        return ContentModerationError(message, **fields)
    if status == 401:  # noqa: PLR2004
        return AuthenticationError(message, **fields)
    if status == 403:  # noqa: PLR2004
        return PermissionDeniedError(message, **fields)
    if status == 429:  # noqa: PLR2004
        return RateLimitError(message, retry_after=retry_after, **fields)
    if status >= 500:  # noqa: PLR2004
        return ServerError(message, **fields)
    return InvalidRequestError(message, **fields)
