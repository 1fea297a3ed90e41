"""What an answer means (`_answers.verdict`): every status and body, for both kinds of request."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aioqwenimage._answers import Response, Verdict, status_verdict, verdict

OK, RETRY, THROTTLED, FATAL, UNCERTAIN = (
    Verdict.OK,
    Verdict.RETRY,
    Verdict.THROTTLED,
    Verdict.FATAL,
    Verdict.UNCERTAIN,
)
BODY = {"output": {"task_id": "t"}, "request_id": "r"}


def answer(status: int, body: Any = None) -> Response:
    return Response(status=status, body=body, request_id=None, retry_after=None)


@pytest.mark.parametrize(
    ("status", "body", "idempotent", "paid"),
    [
        (200, BODY, OK, OK),
        (201, BODY, OK, OK),
        (200, {}, OK, OK),  # an empty object is readable; what it lacks is the caller's concern
        (200, None, RETRY, UNCERTAIN),
        (204, None, RETRY, UNCERTAIN),
        (429, {"code": "Throttling.RateQuota"}, THROTTLED, THROTTLED),
        (429, {"code": "Throttling"}, THROTTLED, THROTTLED),
        (429, {"message": "no code"}, THROTTLED, THROTTLED),
        (429, None, THROTTLED, THROTTLED),
        (429, {"code": 7}, THROTTLED, THROTTLED),
        (429, {"code": "Throttling.AllocationQuota"}, FATAL, FATAL),
        (429, {"code": "PrepaidBillOverdue"}, FATAL, FATAL),
        (500, {"code": "InternalError"}, RETRY, UNCERTAIN),
        (502, None, RETRY, UNCERTAIN),
        (504, None, RETRY, UNCERTAIN),
        (503, {"code": "ModelUnavailable"}, RETRY, RETRY),
        (503, None, RETRY, RETRY),
        (599, None, RETRY, UNCERTAIN),
        (400, {"code": "InvalidParameter"}, FATAL, FATAL),
        (400, None, FATAL, FATAL),
        (401, {"code": "InvalidApiKey"}, FATAL, FATAL),
        (403, None, FATAL, FATAL),
        (404, None, FATAL, FATAL),
        (302, None, FATAL, FATAL),
        (301, BODY, FATAL, FATAL),
        (100, None, FATAL, FATAL),
    ],
)
def test_each_status_and_body_has_one_verdict_per_kind(status, body, idempotent, paid):
    """The table of today's semantics: idempotent requests and paid ones."""
    response = answer(status, body)
    assert (idempotent, paid) == (verdict(response), verdict(response, paid=True))


@given(
    status=st.integers(100, 699),
    body=st.none()
    | st.fixed_dictionaries(
        {}, optional={"code": st.none() | st.integers() | st.text(max_size=30), "x": st.text()}
    ),
)
def test_paid_differs_only_where_something_may_have_been_created(status, body):
    """A paid verdict is the idempotent one, except RETRY becomes UNCERTAIN unless a 503."""
    response = answer(status, body)
    idempotent, paid = verdict(response), verdict(response, paid=True)
    assert UNCERTAIN != idempotent
    if idempotent is RETRY and status != 503:
        assert UNCERTAIN == paid
    else:
        assert idempotent == paid
    assert (OK == idempotent) == (200 <= status < 300 and body is not None)
    assert (THROTTLED == idempotent) == (status == 429 and response.throttling)


@given(status=st.integers(100, 699), body=st.none() | st.just(BODY))
def test_retryable_is_the_verdict_of_an_idempotent_request(status, body):
    """`Response.retryable` says RETRY or THROTTLED, nothing else."""
    response = answer(status, body)
    assert response.retryable == (verdict(response) in (RETRY, THROTTLED))


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, OK),
        (206, OK),
        (302, FATAL),
        (403, FATAL),
        (404, FATAL),
        (429, THROTTLED),
        (500, RETRY),
        (503, RETRY),
    ],
)
def test_a_status_alone_has_a_verdict(status, expected):
    """Answers without a DashScope body (result downloads) are judged by their status."""
    assert expected == status_verdict(status)


def test_a_status_verdict_takes_what_the_body_said():
    """Unreadable 2xx, a quota 429 and paid 5xx are judged as the full verdict does."""
    assert RETRY == status_verdict(200, readable=False)
    assert UNCERTAIN == status_verdict(200, readable=False, paid=True)
    assert FATAL == status_verdict(429, throttling=False)
    assert UNCERTAIN == status_verdict(500, paid=True)
    assert RETRY == status_verdict(503, paid=True)
