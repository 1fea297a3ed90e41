"""The error tree and the one mapping from HTTP answers to it."""

from __future__ import annotations

import pytest

import aioqwenimage as q
from aioqwenimage._errors import error_from_response, is_throttling_code


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (400, "InvalidParameter", q.InvalidRequestError),
        (400, "DataInspectionFailed", q.ContentModerationError),
        (400, "IPInfringementSuspect", q.ContentModerationError),
        (400, "Arrearage", q.QuotaExceededError),
        (401, "InvalidApiKey", q.AuthenticationError),
        (403, "AccessDenied", q.PermissionDeniedError),
        (404, "ModelNotFound", q.InvalidRequestError),
        (413, "BadRequest.TooLarge", q.InvalidRequestError),
        (429, "Throttling.RateQuota", q.RateLimitError),
        (429, "Throttling.AllocationQuota", q.QuotaExceededError),
        (429, "PrepaidBillOverdue", q.QuotaExceededError),
        (500, "InternalError", q.ServerError),
        (503, "ModelUnavailable", q.ServerError),
    ],
)
def test_status_and_code_map_to_one_class(status, code, expected):
    """dashscope-api.md §6: the code decides where specific, the status otherwise."""
    error = error_from_response(status, {"code": code, "message": "m", "request_id": "r-1"})

    assert expected is type(error)
    assert (status, code, "m", "r-1") == (error.status, error.code, error.message, error.request_id)


def test_missing_body_still_maps_and_reads():
    """A non-JSON error answer maps by status with a readable message."""
    error = error_from_response(502, None, request_id="abc")
    assert isinstance(error, q.ServerError)
    assert "HTTP 502 | HTTP 502 | request_id=abc" == str(error)


def test_throttling_codes_are_transient_but_quota_is_not():
    """Throttling* is worth waiting for; an exhausted allocation is not."""
    assert is_throttling_code("Throttling.RateQuota")
    assert is_throttling_code("Throttling.BurstRate")
    assert not is_throttling_code("Throttling.AllocationQuota")
    assert not is_throttling_code(None)


def test_task_errors_carry_the_task_id_and_timeout_is_a_timeout():
    """Task errors carry task_id; TaskTimeoutError is also a TimeoutError."""
    timeout = q.TaskTimeoutError("late", task_id="t-1")
    moderated = q.TaskModeratedError("bad", task_id="t-2", code="DataInspectionFailed")

    assert isinstance(timeout, TimeoutError)
    assert "t-1" == timeout.task_id
    assert isinstance(moderated, q.ContentModerationError)
    assert isinstance(moderated, q.TaskFailedError)
    assert "DataInspectionFailed: bad" == str(moderated)


def test_every_error_is_a_qwen_image_error():
    """One base class catches everything the library raises."""
    for name in q.__all__:
        obj = getattr(q, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, q.QwenImageError)
