"""Fidelity: the official ``dashscope`` SDK (2.0.2), unchanged, works against the emulator.

The SDK nobody here wrote is the judge of the emulator's wire format. Its v1 stack is blocking, so
it runs in a thread while the emulator serves on the test's loop. Its v1 ``wait`` sleeps a real
second between polls; the tests replace the clock module that ``dashscope.client.base_api`` uses
(a fake of the SDK's clock, not of our code), and its aio poller is avoided by making tasks end
before its first, immediate poll.
"""

from __future__ import annotations

import asyncio
import time
import types
from typing import TYPE_CHECKING, Any

import aiohttp
import dashscope
import dashscope.client.base_api
import pytest
from dashscope import ImageSynthesis, MultiModalConversation
from dashscope.aigc.image_generation import ImageGeneration
from dashscope.aigc.image_synthesis import AioImageSynthesis

from aioqwenimage.testing import EmulatorLimits, FakeDashScope, Fault, ModelQuota

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

MESSAGES = [{"role": "user", "content": [{"text": "a red fox in snow"}]}]


@pytest.fixture
async def fake() -> AsyncIterator[FakeDashScope]:
    """No limits; a simulated second lasts 0.1 ms, so tasks end before the SDK looks."""
    async with FakeDashScope(time_scale=1e-4, limits=None, seed=2) as emulator:
        yield emulator


@pytest.fixture
async def sdk(fake: FakeDashScope, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    """Point the v1 SDK at `fake`; give its poll loop a 1 ms sleep; close its shared sessions."""
    monkeypatch.setattr(dashscope, "base_http_api_url", fake.base_url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    fast_clock = types.SimpleNamespace(time=time.time, sleep=lambda _seconds: time.sleep(0.001))
    monkeypatch.setattr(dashscope.client.base_api, "time", fast_clock)
    yield fake.api_key
    await dashscope.close_shared_aio_session()
    dashscope.close_shared_sync_session()


async def _download(url: str) -> bytes:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert 200 == resp.status
        return await resp.read()


# --- v1 ImageSynthesis (sync, in a thread) ---------------------------------------------------


async def test_image_synthesis_call(sdk: str, fake: FakeDashScope):
    """ImageSynthesis.call submits, polls and parses a SUCCEEDED Wan task with two images."""
    response = await asyncio.to_thread(
        ImageSynthesis.call,
        model="wan2.2-t2i-flash",
        prompt="a red fox in snow",
        negative_prompt="blurry",
        api_key=sdk,
        n=2,
        size="1024*768",
        seed=42,
        prompt_extend=True,
        watermark=False,
    )
    assert (200, "SUCCEEDED", 2) == (
        response.status_code,
        response.output.task_status,
        response.usage.image_count,
    )
    urls = [result.url for result in response.output.results]
    assert (2, True) == (len(urls), all(u.startswith(fake.files_base_url) for u in urls))
    png = await _download(urls[0])
    assert b"\x89PNG" == png[:4]
    assert 0 == fake.stats.file_requests_with_authorization


async def test_async_call_wait_and_fetch(sdk: str, fake: FakeDashScope):
    """async_call answers PENDING; wait and fetch then read the finished task."""
    created = await asyncio.to_thread(
        ImageSynthesis.async_call, model="qwen-image-plus", prompt="a lighthouse", api_key=sdk
    )
    assert (200, "PENDING") == (created.status_code, created.output.task_status)
    done = await asyncio.to_thread(ImageSynthesis.wait, created, api_key=sdk)
    fetched = await asyncio.to_thread(ImageSynthesis.fetch, created.output.task_id, api_key=sdk)
    result = done.output.results[0]
    assert ("SUCCEEDED", "a lighthouse") == (done.output.task_status, result.orig_prompt)
    assert result.actual_prompt.startswith("a lighthouse")
    assert (200, "SUCCEEDED") == (fetched.status_code, fetched.output.task_status)
    assert 2 <= fake.stats.tasks[created.output.task_id].queries


async def test_wait_polls_a_running_task_until_it_ends(
    sdk: str, fake: FakeDashScope, monkeypatch: pytest.MonkeyPatch
):
    """The v1 poll loop sees PENDING/RUNNING answers and keeps going until SUCCEEDED."""
    fake_slow = FakeDashScope(time_scale=1e-4, limits=None, durations={"*": (300.0, 300.0)})
    async with fake_slow:
        monkeypatch.setattr(dashscope, "base_http_api_url", fake_slow.base_url)
        response = await asyncio.to_thread(
            ImageSynthesis.call, model="wan2.2-t2i-flash", prompt="x", api_key=sdk, n=1
        )
        (report,) = fake_slow.stats.tasks.values()
    assert ("SUCCEEDED", True) == (response.output.task_status, report.queries > 2)


async def test_cancel_pending_then_refuse_running(sdk: str, monkeypatch: pytest.MonkeyPatch):
    """cancel succeeds on a PENDING task (then CANCELED) and is 400 on a RUNNING one."""
    limits = EmulatorLimits(models={"wan2.2-t2i-flash": ModelQuota(in_flight=1)})
    async with FakeDashScope(time_scale=1e-4, limits=limits, durations={"*": (1e4, 1e4)}) as slow:
        monkeypatch.setattr(dashscope, "base_http_api_url", slow.base_url)
        running, pending = [
            await asyncio.to_thread(
                ImageSynthesis.async_call, model="wan2.2-t2i-flash", prompt="x", api_key=sdk
            )
            for _ in range(2)
        ]
        canceled = await asyncio.to_thread(ImageSynthesis.cancel, pending, api_key=sdk)
        state = await asyncio.to_thread(ImageSynthesis.fetch, pending, api_key=sdk)
        refused = await asyncio.to_thread(ImageSynthesis.cancel, running, api_key=sdk)
    assert (200, "CANCELED") == (canceled.status_code, state.output.task_status)
    assert (400, "UnsupportedOperation") == (refused.status_code, refused.code)
    assert (
        "Failed to cancel the task, please confirm if the task is in PENDING status."
        == refused.message
    )


async def test_list(sdk: str, fake: FakeDashScope):
    """ImageSynthesis.list reads the paged task list with its filters."""
    for model in ("wan2.2-t2i-flash", "qwen-image-plus", "wan2.2-t2i-flash"):
        await asyncio.to_thread(ImageSynthesis.call, model=model, prompt="x", api_key=sdk, n=1)
    response = await asyncio.to_thread(
        ImageSynthesis.list,
        api_key=sdk,
        model_name="wan2.2-t2i-flash",
        status="SUCCEEDED",
        page_no=1,
        page_size=1,
    )
    output: dict[str, Any] = response.output
    assert (200, 2, 2, 1) == (
        response.status_code,
        output["total"],
        output["total_page"],
        len(output["data"]),
    )
    assert "wan2.2-t2i-flash" == output["data"][0]["model_name"]


async def test_failed_tasks_and_error_bodies_parse(sdk: str, fake: FakeDashScope):
    """A FAILED task reaches output.code; a 401 body reaches code and message."""
    fake.faults.add(Fault(kind="task_failed", code="InternalError.Algo", message="algo", times=1))
    failed = await asyncio.to_thread(
        ImageSynthesis.call, model="wan2.2-t2i-flash", prompt="x", api_key=sdk, n=1
    )
    assert (200, "FAILED", "InternalError.Algo", "algo") == (
        failed.status_code,
        failed.output.task_status,
        failed.output.code,
        failed.output.message,
    )
    refused = await asyncio.to_thread(
        ImageSynthesis.async_call, model="wan2.2-t2i-flash", prompt="x", api_key="sk-wrong"
    )
    assert (401, "InvalidApiKey", "Invalid API-key provided.") == (
        refused.status_code,
        refused.code,
        refused.message,
    )


# --- v1 asyncio and multimodal -----------------------------------------------------------------


async def test_aio_image_synthesis_call(sdk: str, fake: FakeDashScope):
    """AioImageSynthesis.call works though its polls add '/' and leak kwargs as query params."""
    response = await AioImageSynthesis.call(
        model="wan2.2-t2i-flash",
        prompt="a red fox",
        api_key=sdk,
        n=1,
        size="1024*1024",
        seed=42,
        prompt_extend=True,
        watermark=False,
    )
    assert (200, "SUCCEEDED", 1) == (
        response.status_code,
        response.output.task_status,
        len(response.output.results),
    )
    assert 1 <= fake.stats.count("query", 200)


async def test_multimodal_conversation_qwen_image_2_pro(sdk: str, fake: FakeDashScope):
    """MultiModalConversation.call gets qwen-image-2.0-pro's synchronous answer."""
    response = await asyncio.to_thread(
        MultiModalConversation.call,
        model="qwen-image-2.0-pro",
        api_key=sdk,
        messages=MESSAGES,
        size="2048*1024",
        n=2,
        negative_prompt="blurry",
        prompt_extend=True,
        watermark=False,
        seed=7,
    )
    content = response.output.choices[0].message.content
    assert (200, 2) == (response.status_code, len(content))
    assert (2048, 1024, 2) == (
        response.usage.width,
        response.usage.height,
        response.usage.image_count,
    )
    assert 1 == fake.stats.count("sync", 200)


async def test_image_generation_wan26_async(sdk: str):
    """ImageGeneration.async_call (which sends is_async in parameters) creates an E3 task."""
    created = await asyncio.to_thread(
        ImageGeneration.async_call, model="wan2.6-t2i", api_key=sdk, messages=MESSAGES, n=1
    )
    done = await asyncio.to_thread(ImageGeneration.wait, created, api_key=sdk)
    content = done.output.choices[0]["message"]["content"]
    assert (200, "SUCCEEDED", "image") == (
        created.status_code,
        done.output.task_status,
        content[0]["type"],
    )


# --- v2 AsyncClient ----------------------------------------------------------------------------


async def test_v2_async_client_jobs_create_and_wait(fake: FakeDashScope):
    """The 2.0 AsyncClient creates a job and waits for it, with short poll intervals."""
    async with dashscope.AsyncClient(api_key=fake.api_key, base_url=fake.base_url) as client:
        job = await client.images.jobs.create(
            model="wan2.2-t2i-flash", prompt="a red fox", n=1, size="1024x1024"
        )
        assert "PENDING" == job.status
        done = await client.images.jobs.wait(job, poll_interval=0.001, max_interval=0.002)
    assert ("SUCCEEDED", 1) == (done.status, len(done.image_urls))
    assert done.image_urls[0].startswith(fake.files_base_url)


async def test_v2_maps_failures_and_refusals(fake: FakeDashScope):
    """The 2.0 client maps a moderated task and a refused cancel to its own errors."""
    from dashscope.v2.errors import BadRequestError, ContentFilterError

    fake.faults.add(Fault(kind="image_moderation", images=1, times=1))
    async with dashscope.AsyncClient(api_key=fake.api_key, base_url=fake.base_url) as client:
        job = await client.images.jobs.create(model="wan2.2-t2i-flash", prompt="x", n=1)
        with pytest.raises(ContentFilterError) as moderated:
            await client.images.jobs.wait(job, poll_interval=0.001, max_interval=0.002)
        with pytest.raises(BadRequestError) as refused:
            await client.images.jobs.cancel(job.task_id)
        # The SDK sends wan2.6 `generate` to the sync endpoint; the seed guide says "Wan supports
        # only asynchronous calls", and the emulator follows the seed (docs/models.md).
        with pytest.raises(BadRequestError) as sync_wan:
            await client.images.generate(model="wan2.6-t2i", prompt="x", n=1)
    assert ("DataInspectionFailed", "UnsupportedOperation", "InvalidParameter") == (
        moderated.value.code,
        refused.value.code,
        sync_wan.value.code,
    )


async def test_throttling_reaches_both_stacks(sdk: str, monkeypatch: pytest.MonkeyPatch):
    """A 429 reaches v1 as a response and v2 as RateLimitError after honouring Retry-After."""
    from dashscope.v2.errors import RateLimitError

    # Documented limits (2 submits/s), a 50 ms window: three quick creates overflow it.
    async with FakeDashScope(time_scale=0.05) as limited:
        monkeypatch.setattr(dashscope, "base_http_api_url", limited.base_url)
        answers = [
            await asyncio.to_thread(
                ImageSynthesis.async_call, model="qwen-image-plus", prompt="x", api_key=sdk
            )
            for _ in range(3)
        ]
        limited.faults.add(Fault(kind="throttle", endpoints="create", times=3))
        async with dashscope.AsyncClient(api_key=sdk, base_url=limited.base_url) as client:
            with pytest.raises(RateLimitError) as throttled:
                await client.images.jobs.create(model="wan2.2-t2i-flash", prompt="x", n=1)
        creates_429 = limited.stats.count("create", 429)
    assert ([200, 200, 429], "Throttling.RateQuota") == (
        [a.status_code for a in answers],
        answers[2].code,
    )
    # The 2.0 client re-sends the create twice on a 429 (its default max_retries).
    assert ("Throttling.RateQuota", 4) == (throttled.value.code, creates_429)
