# Copyright (c) 2026 aioqwenimage contributors. Licensed under the MIT License.

"""The emulator's hostile answers: 200s whose bodies a client must survive."""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from aioqwenimage.testing import FakeDashScope, Fault, FaultKind
from aioqwenimage.testing._faults import NESTING, Fired, hostile_answer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

E1 = "/services/aigc/text2image/image-synthesis"
ASYNC = {"X-DashScope-Async": "enable"}
FORMAT = "%Y-%m-%d %H:%M:%S.%f"


@pytest.fixture
async def fake() -> AsyncIterator[FakeDashScope]:
    """No limits; tasks of a simulated second, 10 ms of real time."""
    async with FakeDashScope(
        time_scale=0.01, limits=None, seed=5, durations={"*": (1.0, 1.0)}
    ) as emulator:
        yield emulator


async def _call(
    fake: FakeDashScope, method: str, path: str, body: Any = None
) -> tuple[int, bytes, str]:
    headers = {"Authorization": f"Bearer {fake.api_key}", **ASYNC}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, fake.base_url + path, json=body, headers=headers) as resp,
    ):
        return resp.status, await resp.read(), resp.headers.get("Content-Type", "")


def _create_body() -> dict[str, Any]:
    return {"model": "wan2.2-t2i-flash", "input": {"prompt": "a fox"}, "parameters": {"n": 1}}


async def test_not_json_answers_are_html_and_the_create_took_effect(fake: FakeDashScope):
    """not_json: a 200 HTML page; the task was created all the same."""
    fake.faults.add(Fault(kind="not_json", endpoints="create", times=1))
    status, raw, content_type = await _call(fake, "POST", E1, _create_body())
    assert (200, True) == (status, content_type.startswith("text/html"))
    assert raw.startswith(b"<html>")
    assert 1 == fake.stats.tasks_created["wan2.2-t2i-flash"]


async def test_nested_answers_overflow_a_recursive_parser(fake: FakeDashScope):
    """nested: a 200 whose JSON is 100,000 levels deep."""
    fake.faults.add(Fault(kind=FaultKind.NESTED, endpoints="create", times=1))
    status, raw, _ = await _call(fake, "POST", E1, _create_body())
    assert (200, 2 * NESTING) == (status, len(raw))
    with pytest.raises(RecursionError):
        json.loads(raw)


async def test_skewed_times_claim_a_year_long_run(fake: FakeDashScope):
    """skewed_times: the task's submit_time is a year before its end_time."""
    _, raw, _ = await _call(fake, "POST", E1, _create_body())
    task_id = json.loads(raw)["output"]["task_id"]
    fake.faults.add(Fault(kind="skewed_times", endpoints="query"))
    output: dict[str, Any] = {}
    for _ in range(200):  # until it ends: 10 ms of real time
        _, raw, _ = await _call(fake, "GET", f"/tasks/{task_id}")
        output = json.loads(raw)["output"]
        if output["task_status"] == "SUCCEEDED":
            break
    submitted = dt.datetime.strptime(output["submit_time"], FORMAT)  # noqa: DTZ007
    ended = dt.datetime.strptime(output["end_time"], FORMAT)  # noqa: DTZ007
    assert 365 == (ended - submitted).days


def test_skewing_leaves_answers_without_a_submit_time_alone():
    """An answer that has no submit_time (an error, a list) goes out unchanged."""
    fired = Fired({FaultKind.SKEWED_TIMES: Fault(kind="skewed_times")})
    for body in (b'{"code":"x"}', b"not json", b'{"output":{"task_status":"PENDING"}}'):
        assert (body, "application/json") == hostile_answer(fired, body, "application/json")
