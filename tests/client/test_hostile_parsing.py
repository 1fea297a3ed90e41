"""Every server answer is parsed defensively: garbage in, a typed error (or nothing) out."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
from typing import Any

import anyio
import pytest
from aioresponses import aioresponses
from hypothesis import given, settings
from hypothesis import strategies as st

import aioqwenimage as q
from aioqwenimage import _answers, _paid, _polling
from aioqwenimage._download import url_expiry
from aioqwenimage._errors import error_from_response
from aioqwenimage._models import TaskInfo, parse_server_time
from aioqwenimage._outcomes import error_of, result_of
from aioqwenimage._safety import parse_oss_error
from aioqwenimage._snapshot import TaskSnapshot
from aioqwenimage.testing import Fault, FaultKind
from tests.conftest import SCALE

BASE = "https://api.example/api/v1"
CREATE = BASE + "/services/aigc/text2image/image-synthesis"
SYNC = BASE + "/services/aigc/multimodal-generation/generation"
TASK = re.compile(re.escape(BASE) + r"/tasks/.*")


def mocked_client(**kwargs: Any) -> q.Client:
    kwargs.setdefault("poll", q.PollPolicy(sweep=False))
    return q.Client(api_key="sk-test", base_url=BASE, time_scale=SCALE, seed=1, **kwargs)


# --- timestamps -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        math.nan,
        math.inf,
        -math.inf,
        1e300,
        -1e300,
        10**400,
        "0001-01-01 00:00:00",
        "9999-12-31 23:59:59.999",
        "2026-13-45 99:99:99",
        "",
        [1, 2],
        {"a": 1},
        True,
    ],
)
def test_absurd_timestamps_are_unknown_not_a_crash(value):
    """NaN, infinities, huge numbers and out-of-range dates parse as 'unknown'."""
    parsed = parse_server_time(value)
    assert parsed is None or parsed.tzinfo is not None


async def test_a_synchronous_answer_with_absurd_timestamps_still_gives_its_images():
    """A sync answer whose times overflow keeps its images; the times are just unknown."""
    answer = {
        "request_id": "r",
        "output": {
            "submit_time": 1e300,
            "end_time": -1e300,
            "scheduled_time": 10**30,
            "choices": [{"message": {"content": [{"image": "https://oss.example/a.png"}]}}],
        },
    }
    with aioresponses() as mocked:
        mocked.post(SYNC, body=json.dumps(answer))
        async with mocked_client() as client:
            result = await client.generate("a fox", model="qwen-image-max")
    assert 1 == len(result.images)
    assert (None, None, None) == (result.submitted_at, result.finished_at, result.scheduled_at)


async def test_a_synchronous_answer_with_nan_is_uncertain_not_a_crash():
    """NaN is not JSON: a sync answer carrying it is unreadable, so its outcome is uncertain."""
    with aioresponses() as mocked:
        mocked.post(SYNC, body='{"output": {"submit_time": NaN, "choices": []}}')
        async with mocked_client() as client:
            with pytest.raises(q.SubmissionUncertainError, match="not valid JSON"):
                await client.generate("a fox", model="qwen-image-max")


# --- creates ----------------------------------------------------------------------------------


async def test_a_deeply_nested_create_answer_is_uncertain():
    """A create answered with absurdly deep JSON was sent: SubmissionUncertainError, no crash."""
    with aioresponses() as mocked:
        mocked.post(CREATE, body='{"output": ' + "[" * 5000 + "]" * 5000 + "}")
        async with mocked_client() as client:
            with pytest.raises(q.SubmissionUncertainError, match="nested too deeply"):
                await client.submit("a fox")
            assert 1 == client.stats.uncertain


@pytest.mark.parametrize("task_id", ["../x", "a/b", "", 42, None, ["t"]])
async def test_a_create_answer_without_a_usable_task_id_is_uncertain(task_id):
    """A task id that is missing, not a string, or not a plain name cannot be polled safely."""
    with aioresponses() as mocked:
        mocked.post(CREATE, payload={"output": {"task_id": task_id, "task_status": "PENDING"}})
        async with mocked_client() as client:
            with pytest.raises(q.SubmissionUncertainError):
                await client.submit("a fox")
        assert not any(key[0] == "GET" for key in mocked.requests)


# --- polls ------------------------------------------------------------------------------------


async def test_polls_answering_garbage_end_the_task_after_a_bounded_number(
    fake, caplog: pytest.LogCaptureFixture
):
    """Polls that keep answering cut-off JSON end the task (cancelled remotely), quietly."""
    fake.faults.add(Fault(kind=FaultKind.MALFORMED, endpoints="query", rate=1.0))
    client = q.Client(
        api_key=fake.api_key,
        base_url=fake.base_url,
        time_scale=fake.time_scale,
        poll=q.PollPolicy(sweep=False),
    )
    async with client:
        with caplog.at_level(logging.WARNING, logger="aioqwenimage"):
            handle = await client.submit("a fox", model="wan2.2-t2i-flash")
            with anyio.fail_after(10), pytest.raises(q.ServerError) as caught:
                await handle
    assert "MalformedResponse" == caught.value.code
    assert handle.task_id in str(caught.value)
    assert _polling.GARBLED_POLLS == fake.stats.requests["query"][200]
    assert 1 == sum(fake.stats.requests["cancel"].values())
    assert [] == [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    "output",
    [
        {"task_status": "SUCCEEDED", "results": "garbage", "end_time": 1e300},
        {"task_status": "SUCCEEDED", "results": [{"url": 7}], "submit_time": -1e300},
        {"task_status": "FAILED", "code": ["x"], "message": {"m": 1}},
        {"task_status": "SUCCEEDED", "choices": [{"message": {"content": "x"}}]},
    ],
)
async def test_a_nonsensical_final_answer_ends_the_task_with_a_typed_error(output, caplog):
    """A terminal answer that makes no sense is a task failure, not a logged traceback."""
    with aioresponses() as mocked:
        mocked.post(CREATE, payload={"output": {"task_id": "t-1", "task_status": "PENDING"}})
        mocked.get(TASK, payload={"request_id": "r", "output": {"task_id": "t-1", **output}})
        async with mocked_client() as client:
            with anyio.fail_after(5), pytest.raises(q.TaskFailedError):
                await client.generate("a fox")
    assert [] == [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_sync_answer_claiming_a_huge_total_does_not_allocate_it():
    """task_metric.TOTAL of a trillion adds a bounded number of failures, not a trillion."""
    body = {"output": {"task_metric": {"TOTAL": 10**12}, "choices": []}}
    snapshot = TaskSnapshot.from_json(body, requested=2)
    assert len(snapshot.failures) <= 2


# --- every parser, arbitrary input ------------------------------------------------------------

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "output",
                    "task_id",
                    "task_status",
                    "results",
                    "choices",
                    "message",
                    "content",
                    "image",
                    "url",
                    "code",
                    "submit_time",
                    "scheduled_time",
                    "end_time",
                    "usage",
                    "request_id",
                    "task_metric",
                    "TOTAL",
                    "orig_prompt",
                    "actual_prompt",
                    "gmt_create",
                    "status",
                    "model_name",
                ]
            )
            | st.text(max_size=8),
            children,
            max_size=6,
        )
    ),
    max_leaves=30,
)


def only_typed_errors(parse: Any, *args: Any, **kwargs: Any) -> None:
    with contextlib.suppress(q.QwenImageError):
        parse(*args, **kwargs)


@settings(max_examples=300, deadline=None)
@given(value=JSON, status=st.integers(100, 599), requested=st.none() | st.integers(0, 10))
def test_every_parser_takes_arbitrary_json(value, status, requested):
    """Any JSON value given to any parser yields a result or a QwenImageError, nothing else."""
    body = value if isinstance(value, dict) else {"output": value}
    only_typed_errors(parse_server_time, value)
    only_typed_errors(TaskInfo.from_json, body)
    only_typed_errors(error_from_response, status, body)
    snapshot = TaskSnapshot.from_json(body, requested=requested)
    if snapshot.urls:
        result_of(snapshot, model="m", prompt="p", fetcher=None)  # type: ignore[arg-type]
    else:
        error_of(snapshot)
    response = _answers.Response(status=status, body=body, request_id=None, retry_after=None)
    only_typed_errors(response.error)
    assert isinstance(response.retryable, bool)
    raw = json.dumps(value).encode()
    decoded, problem = _answers.decode(raw)
    assert (decoded is None) == (problem is not None)
    only_typed_errors(_paid._created_task_id, response)


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_every_parser_takes_arbitrary_bytes(raw):
    """Bytes that may not be JSON, XML or a header value give a typed answer, never a crash."""
    decoded, problem = _answers.decode(raw)
    assert (decoded is None) == (problem is not None)
    assert isinstance(parse_oss_error(raw), dict)
    text = raw.decode("utf-8", "replace")
    seconds = _answers.parse_retry_after(text, cap=60.0)
    assert seconds is None or 0 <= seconds <= 60
    expiry = url_expiry("https://x/a.png?Expires=" + text)
    assert expiry is None or math.isfinite(expiry)
