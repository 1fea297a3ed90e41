"""
What the emulator puts on the wire: error bodies, time formats, request ids and JSON encoding.

Every message here is the documented one (``dashscope-api.md`` §5-§6); the few the documentation
does not give are marked ``[I]``.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import math
import uuid
from collections.abc import Mapping
from typing import Any, Final, TypeVar

from aioqwenimage._parsing import SERVER_TZ

__all__ = [
    "JSON_POST",
    "JSON_TASKS",
    "ApiError",
    "Endpoint",
    "dumps",
    "epoch_ms",
    "error_body",
    "format_time",
    "new_request_id",
    "retry_after",
]

# POST answers carry plain JSON, task endpoints the charset form (recorded headers, §5).
JSON_POST: Final = "application/json"
JSON_TASKS: Final = "application/json;charset=UTF-8"

MSG_INVALID_PARAMETER: Final = (
    "Required parameter(s) missing or invalid, please check the request parameters."
)
MSG_MODEL_NOT_EXIST: Final = "Model not exist."
MSG_URL_ERROR: Final = "url error, please check url!"
MSG_EMPTY_MODEL: Final = 'Required parameter "model" missing from request.'
MSG_EMPTY_INPUT: Final = "Required input parameter missing from request."
MSG_N_FIXED: Final = "num_images_per_prompt must be 1"
MSG_NO_API_KEY: Final = "No API-key provided."
MSG_BAD_API_KEY: Final = "Invalid API-key provided."
MSG_SYNC_UNSUPPORTED: Final = "current user api does not support synchronous calls"
MSG_ASYNC_UNSUPPORTED: Final = "Current user api does not support asynchronous calls."
MSG_CANCEL: Final = "Failed to cancel the task, please confirm if the task is in PENDING status."
MSG_TOO_LARGE: Final = "Payload Too Large."
MSG_RATE_QUOTA: Final = "Requests rate limit exceeded, please try again later."
MSG_INTERNAL: Final = (
    "An internal error has occured, please try again later or contact service support."
)
MSG_UNAVAILABLE: Final = "Model is unavailable, please try again later."
MSG_INPUT_INSPECTION: Final = "Input data may contain inappropriate content."
MSG_OUTPUT_INSPECTION: Final = "Output data may contain inappropriate content."
MSG_DATA_URI: Final = "Exceeded limit on max bytes per data-uri item : 10485760"


_T = TypeVar("_T", bound=type)


def public(cls: _T) -> _T:
    """Show `cls` under its public path, ``aioqwenimage.testing``, in reprs and docs."""
    cls.__module__ = "aioqwenimage.testing"
    return cls


@public
class Endpoint(enum.Enum):
    """Which kind of request: the unit of stats and of fault injection."""

    CREATE = "create"
    """E1 and E3: a task-creating POST."""
    SYNC = "sync"
    """E2: the synchronous multimodal POST."""
    QUERY = "query"
    """E4: ``GET /tasks/{id}``."""
    LIST = "list"
    """E5: ``GET /tasks``."""
    CANCEL = "cancel"
    """E6: ``POST /tasks/{id}/cancel``."""
    FILE = "file"
    """A result image on the file host."""
    ADMIN = "admin"
    """The ``/__emulator__/`` control endpoints (stats only; never faulted)."""
    OTHER = "other"
    """Anything else: unknown paths (stats only)."""


class ApiError(Exception):
    """
    A documented error answer; raised anywhere in request handling, rendered in one place.

    Attributes:
        status: The HTTP status.
        code: The DashScope ``code``.
        message: The DashScope ``message``.
        headers: Extra response headers (``Retry-After``).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers: Mapping[str, str] = headers or {}

    @classmethod
    def invalid(cls, message: str = MSG_INVALID_PARAMETER) -> ApiError:
        """A 400 ``InvalidParameter``."""
        return cls(400, "InvalidParameter", message)


def dumps(value: object) -> bytes:
    """Compact UTF-8 JSON, as the service sends it (CJK text unescaped)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def error_body(code: str, message: str, request_id: str) -> bytes:
    """``{"request_id","code","message"}``: the body of every non-200 answer (§6)."""
    return dumps({"request_id": request_id, "code": code, "message": message})


def new_request_id() -> str:
    """A fresh UUID in its canonical text form."""
    return str(uuid.uuid4())


def format_time(epoch: float) -> str:
    """A task timestamp: ``YYYY-MM-DD HH:mm:ss.SSS`` in UTC+8 (§5.2)."""
    moment = dt.datetime.fromtimestamp(epoch, SERVER_TZ)
    return f"{moment:%Y-%m-%d %H:%M:%S}.{moment.microsecond // 1000:03d}"


def epoch_ms(epoch: float) -> int:
    """A list timestamp: epoch milliseconds (§5.4)."""
    return int(epoch * 1000)


def parse_list_time(text: str) -> float:
    """
    Read a list window bound, ``YYYYMMDDhhmmss`` in UTC+8, as epoch seconds.

    Raises:
        ValueError: The text is not in that form.
    """
    if len(text) != 14 or not text.isdigit():  # noqa: PLR2004 - the width of YYYYMMDDhhmmss
        msg = f"expected YYYYMMDDhhmmss, got {text!r}"
        raise ValueError(msg)
    moment = dt.datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=SERVER_TZ)
    return moment.timestamp()


def retry_after(simulated: float, time_scale: float) -> str:
    """
    The ``Retry-After`` value for a wait of `simulated` seconds.

    In simulated time it is a whole number of seconds, at least 1 (what a real server sends);
    it is then scaled to real seconds, so under ``time_scale < 1`` it is a decimal such as
    ``"0.01"`` (clients that read it as a float wait the compressed time).
    """
    seconds = max(1, math.ceil(simulated - 1e-9)) * time_scale
    return f"{seconds:.6g}"


def rate_quota_error(simulated_wait: float, time_scale: float) -> ApiError:
    """The 429 for a rate limit or an in-flight cap (§6: concurrency rejection is ``[I]``)."""
    return ApiError(
        429,
        "Throttling.RateQuota",
        MSG_RATE_QUOTA,
        headers={"Retry-After": retry_after(simulated_wait, time_scale)},
    )


def status_for_code(code: str) -> int:
    """The HTTP status the service pairs with an error `code` (§6), for injected failures."""
    if code.startswith(("InternalError", "SystemError")):
        return 500
    if code == "ModelUnavailable":
        return 503
    if code.startswith("Throttling"):
        return 429
    return 400


def to_jsonable(value: Any) -> Any:
    """Mappings and sequences as plain JSON types, for admin answers."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value
