"""Raw access: results and API errors carry the answer's JSON body and the headers that matter."""

from __future__ import annotations

import pickle
import re

import attrs
import pytest
from aioresponses import aioresponses

import aioqwenimage as q
from aioqwenimage.testing import Fault, FaultKind

BASE = "https://api.example/api/v1"
CREATE = BASE + "/services/aigc/text2image/image-synthesis"
TASK = re.compile(re.escape(BASE) + r"/tasks/.*")
HEADERS = {
    "X-Request-ID": "r-head",
    "X-RateLimit-Remaining-Requests": "7",
    "x-dashscope-inner-flow-control-meta": '{"count_limit":2,"count_limit_period":60}',
    "req-cost-time": "16503",
    "Set-Cookie": "session=abc",
    "Server": "istio-envoy",
}
KEPT = {
    "x-request-id": "r-head",
    "x-ratelimit-remaining-requests": "7",
    "x-dashscope-inner-flow-control-meta": '{"count_limit":2,"count_limit_period":60}',
    "req-cost-time": "16503",
}


def mocked_client() -> q.Client:
    return q.Client(
        api_key="sk-secret",
        base_url=BASE,
        time_scale=0.001,
        seed=1,
        poll=q.PollPolicy(sweep=False),
    )


async def test_result_carries_fields_the_library_does_not_know():
    """An unknown output field and the rate-limit headers of the last answer reach the user."""
    done = {
        "request_id": "r",
        "output": {
            "task_id": "t-1",
            "task_status": "SUCCEEDED",
            "results": [{"url": "https://oss.example/t-1.png"}],
            "brand_new_field": {"credits": 3},
        },
    }
    with aioresponses() as mocked:
        mocked.post(CREATE, payload={"output": {"task_id": "t-1", "task_status": "PENDING"}})
        mocked.get(TASK, payload=done, headers=HEADERS, repeat=True)
        async with mocked_client() as client:
            result = await client.generate("a fox", model="qwen-image-plus")

    assert {"credits": 3} == result.body["output"]["brand_new_field"]
    assert KEPT == dict(result.headers)


async def test_result_body_and_headers_are_read_only():
    """The raw fields can be read but not changed, like the rest of the frozen result."""
    done = {
        "request_id": "r",
        "output": {"task_id": "t-1", "task_status": "SUCCEEDED", "results": [{"url": "u"}]},
    }
    with aioresponses() as mocked:
        mocked.post(CREATE, payload={"output": {"task_id": "t-1", "task_status": "PENDING"}})
        mocked.get(TASK, payload=done, headers=HEADERS, repeat=True)
        async with mocked_client() as client:
            result = await client.generate("a fox", model="qwen-image-plus")

    with pytest.raises(TypeError):
        result.body["output"] = {}  # type: ignore[index]
    with pytest.raises(TypeError):
        result.headers["x-request-id"] = "forged"  # type: ignore[index]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        result.body = {}  # type: ignore[misc]
    assert "brand_new_field" not in repr(result)
    assert "body=" not in repr(result)


async def test_api_error_carries_body_and_headers():
    """A 400 on a poll keeps the service's whole body and its rate-limit headers."""
    body = {"code": "Throttling.RateQuota", "message": "slow down", "request_id": "r", "hint": 1}
    with aioresponses() as mocked:
        mocked.post(CREATE, payload={"output": {"task_id": "t-1", "task_status": "PENDING"}})
        mocked.get(TASK, status=400, payload=body, headers=HEADERS, repeat=True)
        async with mocked_client() as client:
            with pytest.raises(q.InvalidRequestError) as info:
                await client.generate("a fox", model="qwen-image-plus")

    assert body == info.value.body
    assert KEPT == dict(info.value.headers)


async def test_errors_from_the_emulator_carry_its_request_id_header(fake):
    """A moderation rejection at submit has the error body and the X-Request-ID header."""
    fake.faults.add(Fault(kind=FaultKind.MODERATION, times=1))
    async with q.Client(
        api_key=fake.api_key, base_url=fake.base_url, time_scale=fake.time_scale
    ) as client:
        with pytest.raises(q.ContentModerationError) as info:
            await client.generate("a fox", model="qwen-image-plus")

    assert info.value.body is not None
    assert "DataInspectionFailed" == info.value.body["code"]
    assert info.value.request_id == info.value.headers["x-request-id"]


async def test_results_from_the_emulator_carry_the_answer(client):
    """Async and sync results carry the body they were read from and its request id header."""
    task = await client.generate("a fox", model="qwen-image-plus")
    sync = await client.generate("a fox", model="qwen-image-max")

    assert "SUCCEEDED" == task.body["output"]["task_status"]
    assert task.request_id == task.headers["x-request-id"]
    assert "choices" in sync.body["output"]
    assert sync.request_id == sync.headers["x-request-id"]


def test_errors_raised_before_any_request_have_no_answer():
    """A catalog rejection has no body and no headers: nothing was sent."""
    error = q.InvalidRequestError("bad size", parameter="size", model="qwen-image-plus")

    assert error.body is None
    assert {} == dict(error.headers)


def test_api_errors_with_raw_fields_survive_pickling():
    """Errors cross process boundaries (multiprocessing, xdist) with their raw fields."""
    error = q.RateLimitError(
        "slow down",
        status=429,
        code="Throttling",
        retry_after=2.0,
        body={"code": "Throttling"},
        headers={"retry-after": "2"},
    )

    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes

    assert {"code": "Throttling"} == copy.body
    assert {"retry-after": "2"} == copy.headers
    assert 2.0 == copy.retry_after
