# Copyright (c) 2026 aioqwenimage contributors. Licensed under the MIT License.

"""The emulator's hostile answers: 200s whose bodies a client must survive."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from aioqwenimage.testing import FakeDashScope, Fault, FaultKind
from aioqwenimage.testing._faults import (
    DRIP_PIECES,
    NESTING,
    WILD_RETRY_AFTERS,
    Fired,
    hostile_answer,
)

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


async def _create_task(fake: FakeDashScope) -> str:
    _, raw, _ = await _call(fake, "POST", E1, _create_body())
    return str(json.loads(raw)["output"]["task_id"])


@pytest.mark.parametrize("text", WILD_RETRY_AFTERS)
async def test_wild_retry_after_sends_the_literal_header(fake: FakeDashScope, text: str):
    """wild_retry_after: a 429 whose Retry-After is the given text, verbatim; nothing created."""
    fake.faults.add(Fault(kind="wild_retry_after", endpoints="create", retry_after_text=text))
    headers = {"Authorization": f"Bearer {fake.api_key}", **ASYNC}
    async with (
        aiohttp.ClientSession() as session,
        session.post(fake.base_url + E1, json=_create_body(), headers=headers) as resp,
    ):
        code = (await resp.json())["code"]
        assert (429, "Throttling.RateQuota", text) == (
            resp.status,
            code,
            resp.headers["Retry-After"],
        )
    assert 0 == fake.stats.tasks_created.get("wan2.2-t2i-flash", 0)


async def test_wild_retry_after_draws_each_hostile_form_on_polls(fake: FakeDashScope):
    """Without a text, each 429 carries one of the hostile forms, and over many all appear."""
    task_id = await _create_task(fake)
    fake.faults.add(Fault(kind=FaultKind.WILD_RETRY_AFTER, endpoints="query"))
    seen = set()
    headers = {"Authorization": f"Bearer {fake.api_key}"}
    async with aiohttp.ClientSession() as session:
        for _ in range(60):
            async with session.get(f"{fake.base_url}/tasks/{task_id}", headers=headers) as resp:
                assert 429 == resp.status
                seen.add(resp.headers["Retry-After"])
    assert set(WILD_RETRY_AFTERS) == seen


async def test_oversized_answers_are_padded_past_the_cap_without_a_length(fake: FakeDashScope):
    """oversized: a streamed 200 of the real answer plus `size` bytes of whitespace."""
    task_id = await _create_task(fake)
    fake.faults.add(Fault(kind="oversized", endpoints="query", times=1))
    headers = {"Authorization": f"Bearer {fake.api_key}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{fake.base_url}/tasks/{task_id}", headers=headers) as resp,
    ):
        raw = await resp.read()
        assert (200, None) == (resp.status, resp.headers.get("Content-Length"))
    assert 6 * 1024 * 1024 < len(raw)
    assert task_id == json.loads(raw)["output"]["task_id"]  # still valid JSON, only huge


async def test_oversized_answer_ends_when_the_client_hangs_up(fake: FakeDashScope):
    """A client that stops reading early leaves the emulator serving the next request."""
    task_id = await _create_task(fake)
    fake.faults.add(Fault(kind="oversized", endpoints="query", times=1, size=64 * 1024 * 1024))
    headers = {"Authorization": f"Bearer {fake.api_key}"}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{fake.base_url}/tasks/{task_id}", headers=headers) as resp:
            first = await resp.content.read(1024)
        assert first.startswith(b"{")
        async with session.get(f"{fake.base_url}/tasks/{task_id}", headers=headers) as resp:
            assert 200 == resp.status
            assert task_id == (await resp.json())["output"]["task_id"]


async def test_drip_trickles_the_answer_over_its_delay(fake: FakeDashScope):
    """drip: the whole answer arrives in pieces, spread over delay x time_scale real seconds."""
    task_id = await _create_task(fake)
    # 20 simulated seconds at time_scale 0.01: 0.2 s of real time.
    fake.faults.add(Fault(kind="drip", endpoints="query", times=1, delay=20.0))
    headers = {"Authorization": f"Bearer {fake.api_key}"}
    loop = asyncio.get_running_loop()
    pieces = 0
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{fake.base_url}/tasks/{task_id}", headers=headers) as resp,
    ):
        started = loop.time()
        raw = b""
        async for chunk in resp.content.iter_any():
            raw += chunk
            pieces += 1
        elapsed = loop.time() - started
    assert task_id == json.loads(raw)["output"]["task_id"]
    assert pieces > DRIP_PIECES // 2
    assert 0.15 < elapsed < 5.0


async def test_drip_is_cut_by_a_client_deadline(fake: FakeDashScope):
    """A client whose total deadline is shorter than the drip gives up; the next answer is whole."""
    task_id = await _create_task(fake)
    fake.faults.add(Fault(kind="drip", endpoints="query", times=1, delay=300.0))  # 3 s real
    headers = {"Authorization": f"Bearer {fake.api_key}"}
    async with aiohttp.ClientSession() as session:
        with pytest.raises(TimeoutError):
            async with session.get(
                f"{fake.base_url}/tasks/{task_id}",
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=0.1),
            ) as resp:
                await resp.read()
        async with session.get(f"{fake.base_url}/tasks/{task_id}", headers=headers) as resp:
            assert task_id == (await resp.json())["output"]["task_id"]


def test_new_fault_kinds_round_trip_through_json():
    """The admin endpoint's JSON carries retry_after_text and size; wrong types are refused."""
    fault = Fault(kind="oversized", size=10, retry_after_text="inf", endpoints="query")
    assert fault == Fault.from_json(fault.to_json())
    with pytest.raises(ValueError, match="size must be an integer"):
        Fault.from_json({"kind": "oversized", "size": "big"})
    with pytest.raises(ValueError, match="retry_after_text must be a string"):
        Fault.from_json({"kind": "wild_retry_after", "retry_after_text": 5})


async def test_fired_faults_are_counted_and_reported_by_the_admin_endpoint(fake: FakeDashScope):
    """Faults.fired counts each kind as it fires; GET /__emulator__/faults reports it."""
    fake.faults.add(Fault(kind="wild_retry_after", endpoints="create", times=2))
    for _ in range(3):
        await _call(fake, "POST", E1, _create_body())
    assert {FaultKind.WILD_RETRY_AFTER: 2} == dict(fake.faults.fired)
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            fake.base_url.removesuffix("/api/v1") + "/__emulator__/faults",
            headers={"Authorization": f"Bearer {fake.api_key}"},
        ) as resp,
    ):
        assert {"wild_retry_after": 2} == (await resp.json())["fired"]
    fake.faults.clear()
    assert 0 == len(fake.faults.fired)
