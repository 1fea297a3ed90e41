"""End to end against the emulator: every model family, every way a generation can end."""

from __future__ import annotations

import struct

import pytest

import aioqwenimage as q
from aioqwenimage.testing import FakeDashScope, Fault, FaultKind
from tests.conftest import SCALE, make_client, roomy_limits


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize(
    ("model", "size", "n", "has_task"),
    [
        ("qwen-image-plus", "1328*1328", None, True),  # async Qwen (E1)
        ("qwen-image", (928, 1664), None, True),
        ("qwen-image-2.0-pro", "1536x1024", 2, False),  # sync Qwen (E2)
        ("qwen-image-max", "1664*928", None, False),
        ("wan2.2-t2i-flash", "768*1024", 3, True),  # Wan <= 2.5 (E1)
        ("wan2.5-t2i-preview", None, 2, True),
        ("wan2.6-t2i", "1280*1280", 2, True),  # wan2.6 (E3)
    ],
)
async def test_every_family_generates_real_pngs_of_the_requested_size(
    client, model, size, n, has_task
):
    """Each model family ends in a result whose images are PNGs of the requested size."""
    result = await client.generate("a lighthouse at dusk", model=model, size=size, n=n)

    assert has_task == (result.task_id is not None)
    assert (n or 1) == len(result.images)
    assert model == result.model
    data = await result.images[0].read()
    expected = q._catalog.parse_size(size) if size else q._catalog.MODELS[model].size.default
    assert expected == png_size(data)


async def test_async_result_carries_server_timings_and_prompts(client):
    """Async results carry the server's timestamps, the echoed prompt and the rewritten one."""
    result = await client.generate("a fox", model="qwen-image-plus")

    assert result.submitted_at is not None and result.finished_at is not None
    assert result.submitted_at <= result.scheduled_at <= result.finished_at  # type: ignore[operator]
    assert "a fox" == result.prompt
    assert result.images[0].actual_prompt
    assert 1 == result.usage["image_count"]


async def test_partial_failure_keeps_the_good_images(client, fake):
    """n > 1 with one image moderated: SUCCEEDED with the rest and a per-image failure."""
    fake.faults.add(Fault(kind=FaultKind.IMAGE_MODERATION, times=1, images=1))

    result = await client.generate("a fox", model="wan2.2-t2i-flash", n=3)

    assert 2 == len(result.images)
    assert [("DataInspectionFailed", 2)] == [(f.code, f.index) for f in result.failures]


async def test_failed_task_raises_task_failed_error(client, fake):
    """A task ending FAILED raises TaskFailedError with its code and task id."""
    fake.faults.add(Fault(kind=FaultKind.TASK_FAILED, times=1, code="InternalError.Algo"))

    with pytest.raises(q.TaskFailedError) as info:
        await client.generate("a fox", model="qwen-image-plus")

    assert "InternalError.Algo" == info.value.code
    assert info.value.task_id
    assert 1 == client.stats.finished.get("FAILED")


async def test_moderation_at_submit_and_per_image(client, fake):
    """DataInspectionFailed at submit is a ContentModerationError; on every image, TaskModerated."""
    fake.faults.add(Fault(kind=FaultKind.MODERATION, times=1))
    with pytest.raises(q.ContentModerationError) as info:
        await client.generate("a fox", model="qwen-image-plus")
    assert 400 == info.value.status

    fake.faults.add(Fault(kind=FaultKind.IMAGE_MODERATION, times=1, images=1))
    with pytest.raises(q.TaskModeratedError) as moderated:
        await client.generate("a fox", model="qwen-image-plus")
    assert isinstance(moderated.value, q.ContentModerationError)
    assert moderated.value.task_id

    fake.faults.add(Fault(kind=FaultKind.MODERATION, times=1, endpoints="sync"))
    with pytest.raises(q.ContentModerationError):
        await client.generate("a fox", model="qwen-image-2.0")


async def test_cancel_pending_task_ends_canceled(fake):
    """A PENDING task (queued behind a full cap) is cancelled remotely and ends CANCELED."""
    fake_limits = EmulatorLimitsOneSlot()
    async with (
        # The first task holds the one slot long enough that the second is still PENDING.
        FakeDashScope(
            time_scale=SCALE, limits=fake_limits, durations={"qwen-image-plus": (300, 300)}
        ) as slow,
        make_client(
            slow, limits=q.Limits(models={"qwen-image-plus": q.ModelLimits(in_flight=5)})
        ) as client,
    ):
        first = await client.submit("one", model="qwen-image-plus")
        second = await client.submit("two", model="qwen-image-plus")  # queued: PENDING

        assert await second.cancel()  # the service cancelled it: nothing is billed

        with pytest.raises(q.TaskCanceledError):
            await second
        assert q.TaskStatus.CANCELED == second.status
        assert (await first).images
        assert 1 == slow.stats.requests["cancel"][200]


def EmulatorLimitsOneSlot():  # noqa: N802 - reads as a value
    from aioqwenimage.testing import EmulatorLimits, ModelQuota

    return EmulatorLimits(models={"qwen-image-plus": ModelQuota(in_flight=1, submits=1000)})


async def test_cancel_running_task_is_local_only():
    """A RUNNING task cannot be cancelled remotely: the handle ends cancelled, the task goes on."""
    # Long enough that a poll sees it RUNNING before it ends, however busy the machine.
    durations = {"qwen-image-plus": (300, 300)}
    async with (
        FakeDashScope(time_scale=SCALE, limits=roomy_limits(), durations=durations) as fake,
        make_client(fake) as client,
    ):
        await _cancel_running(client, fake)


async def _cancel_running(client: q.Client, fake: FakeDashScope) -> None:
    handle = await client.submit("a fox", model="qwen-image-plus")
    while handle.status is not q.TaskStatus.RUNNING:
        await fake_tick()

    assert not await handle.cancel()  # RUNNING: the service goes on

    with pytest.raises(q.TaskCanceledError, match="locally"):
        await handle
    assert 1 == fake.stats.requests["cancel"][400]
    # The task still runs remotely, so it keeps its slot until a quiet poll sees it end.
    assert {"qwen-image-plus": 1} == client.stats.in_flight
    while client.stats.in_flight:
        await fake_tick()
    assert "SUCCEEDED" == str(fake.stats.tasks[handle.task_id].status)


async def fake_tick() -> None:
    import anyio

    await anyio.sleep(SCALE)


async def test_unknown_task_raises_task_expired(client):
    """Attaching an id the service does not know ends in TaskExpiredError (UNKNOWN)."""
    with pytest.raises(q.TaskExpiredError) as info:
        await client.attach("no-such-task")
    assert "no-such-task" == info.value.task_id


async def test_throttled_submit_waits_and_succeeds(client, fake):
    """429s on create pause the lane and re-send (nothing was created); one task results."""
    fake.faults.add(Fault(kind=FaultKind.THROTTLE, endpoints="create", times=2, retry_after=1))

    result = await client.generate("a fox", model="qwen-image-plus")

    assert result.images
    assert 1 == fake.stats.tasks_created["qwen-image-plus"]
    assert 2 == client.stats.throttled


@pytest.mark.parametrize(
    ("kind", "counter"),
    [
        (FaultKind.THROTTLE, "throttled"),
        (FaultKind.INTERNAL_ERROR, "retries"),
        (FaultKind.UNAVAILABLE, "retries"),
        (FaultKind.MALFORMED, "retries"),
        (FaultKind.DROP_BEFORE, "retries"),
    ],
)
async def test_throttled_and_failing_polls_never_end_the_wait(client, fake, kind, counter):
    """429s, 5xx, malformed answers and drops on polls are retried; the wait ends in the result."""
    fake.faults.add(Fault(kind=kind, endpoints="query", times=3))

    result = await client.generate("a fox", model="qwen-image-plus")

    assert result.images
    if kind is FaultKind.DROP_BEFORE:
        # aiohttp itself re-sends an idempotent GET once when a reused keep-alive connection
        # drops, so some drops never reach the client's retry logic.
        assert 1 <= client.stats.retries <= 3
    else:
        assert 3 == getattr(client.stats, counter)


async def test_unavailable_and_refused_submits_are_resent(client, fake):
    """503 on create proves nothing was created: re-sent, and exactly one task exists."""
    fake.faults.add(Fault(kind=FaultKind.UNAVAILABLE, endpoints="create", times=2))

    assert (await client.generate("a fox", model="qwen-image-plus")).images
    assert 1 == fake.stats.tasks_created["qwen-image-plus"]


@pytest.mark.parametrize(
    "kind", [FaultKind.DROP_AFTER, FaultKind.DROP_BEFORE, FaultKind.INTERNAL_ERROR]
)
async def test_ambiguous_create_is_never_resent(client, fake, kind):
    """A dropped connection or a 500 on create raises SubmissionUncertainError and sends once."""
    fake.faults.add(Fault(kind=kind, endpoints="create", times=1))

    with pytest.raises(q.SubmissionUncertainError) as info:
        await client.submit("a fox", model="qwen-image-plus")

    expected_tasks = 1 if kind is FaultKind.DROP_AFTER else 0
    assert expected_tasks == sum(fake.stats.tasks_created.values())
    assert 1 == sum(fake.stats.requests["create"].values())
    assert ("qwen-image-plus", "a fox") == (info.value.model, info.value.prompt)
    assert 1 == client.stats.uncertain


async def test_dropped_sync_call_is_uncertain(client, fake):
    """A synchronous call whose connection drops is uncertain too (it may have been billed)."""
    fake.faults.add(Fault(kind=FaultKind.DROP_AFTER, endpoints="sync", times=1))

    with pytest.raises(q.SubmissionUncertainError):
        await client.generate("a fox", model="qwen-image-2.0")
    assert 1 == sum(fake.stats.requests["sync"].values())


async def test_service_rejections_map_to_typed_errors(fake):
    """A wrong key is an AuthenticationError that never shows the key."""
    async with q.Client(api_key="sk-wrong-key", base_url=fake.base_url, time_scale=SCALE) as client:
        with pytest.raises(q.AuthenticationError) as info:
            await client.generate("a fox", model="qwen-image-plus")
    assert 401 == info.value.status
    assert "sk-wrong-key" not in str(info.value)


async def test_expired_result_url_is_a_clear_error(fake):
    """Past the URL's expiry, downloads raise ImageExpiredError without a request."""
    async with (
        FakeDashScope(time_scale=SCALE, url_ttl=0.001, limits=roomy_limits()) as short,
        make_client(short) as client,
    ):
        result = await client.generate("a fox", model="qwen-image-plus")
        await fake_tick()
        await fake_tick()
        with pytest.raises(q.ImageExpiredError, match="24 hours"):
            await result.images[0].read()


async def test_downloads_never_carry_the_api_key(client, fake, tmp_path):
    """The result host never sees an Authorization header; files land atomically."""
    result = await client.generate("a fox", model="wan2.2-t2i-flash", n=2, save_to=tmp_path)

    assert 2 == fake.stats.file_requests
    assert 0 == fake.stats.file_requests_with_authorization
    names = sorted(p.name for p in tmp_path.iterdir())
    assert sorted(image.name for image in result.images) == names


async def test_failed_download_is_retried_and_leaves_no_partial_file(client, fake, tmp_path):
    """A 500 from the result host is retried; a persistent one leaves no file behind."""
    result = await client.generate("a fox", model="qwen-image-plus")
    fake.faults.add(Fault(kind=FaultKind.INTERNAL_ERROR, endpoints="file", times=1))
    path = await result.images[0].save(tmp_path / "a.png")
    assert (1328, 1328) != png_size(path.read_bytes()) or True  # saved, decodable below
    assert q._catalog.MODELS["qwen-image-plus"].size.default == png_size(path.read_bytes())

    fake.faults.add(Fault(kind=FaultKind.INTERNAL_ERROR, endpoints="file"))
    with pytest.raises(q.ServerError):
        await result.images[0].save(tmp_path / "b.png")
    assert ["a.png"] == sorted(p.name for p in tmp_path.iterdir())


async def test_list_tasks_pages_through_everything(client):
    """list_tasks yields every task of the window across pages."""
    handles = [await client.submit(f"p{i}", model="wan2.2-t2i-flash", n=1) for i in range(7)]
    for handle in handles:
        await handle

    listed = [info async for info in client.list_tasks(page_size=3, model="wan2.2-t2i-flash")]

    assert sorted(h.task_id for h in handles) == sorted(i.task_id for i in listed)  # type: ignore[type-var]
    assert {q.TaskStatus.SUCCEEDED} == {i.status for i in listed}
