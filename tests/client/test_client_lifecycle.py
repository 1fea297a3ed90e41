"""Lifecycle, cancellation, map, events and secrecy of the client, against the emulator."""

from __future__ import annotations

import asyncio
import gc
import logging

import aiohttp
import anyio
import pytest

import aioqwenimage as q
from aioqwenimage.testing import EmulatorLimits, FakeDashScope, ModelQuota
from tests.conftest import SCALE, client_limits, make_client, roomy_limits

ONE_SLOT = EmulatorLimits(models={"qwen-image-plus": ModelQuota(in_flight=1, submits=1000)})


async def test_context_manager_opens_and_closes_once(fake):
    """`async with` returns the client; after close it refuses work; closing twice is fine."""
    client = make_client(fake)
    async with client as entered:
        assert entered is client
        assert "state=opened" in repr(client)
    await client.aclose()
    assert "state=closed" in repr(client)
    with pytest.raises(RuntimeError, match="closed"):
        await client.generate("a fox")
    with pytest.raises(RuntimeError, match="closed"):
        client.attach("t")


async def test_never_opened_client_closes_quietly(fake):
    """A client that never sent anything closes without work or warnings."""
    await make_client(fake).aclose()


async def test_unclosed_client_warns_resource_warning(fake):
    """An opened client dropped without aclose() warns with ResourceWarning."""
    client = make_client(fake)
    await client.__aenter__()
    with pytest.warns(ResourceWarning, match="unclosed"):
        client.__del__()
    await client.aclose()


async def test_missing_key_is_reported_at_first_use(fake, monkeypatch):
    """No key anywhere: construction works, the first request says how to set one."""
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    client = q.Client(base_url=fake.base_url)
    with pytest.raises(q.AuthenticationError, match="DASHSCOPE_API_KEY"):
        await client.generate("a fox")
    await client.aclose()


async def test_key_from_environment(fake, monkeypatch):
    """$DASHSCOPE_API_KEY and $DASHSCOPE_HTTP_BASE_URL configure a client with no arguments."""
    monkeypatch.setenv("DASHSCOPE_API_KEY", fake.api_key)
    monkeypatch.setenv("DASHSCOPE_HTTP_BASE_URL", fake.base_url)
    async with q.Client(time_scale=SCALE, limits=client_limits()) as client:
        assert (await client.generate("a fox", model="wan2.2-t2i-flash", n=1)).images


def test_bad_settings_fail_at_construction():
    """Plain HTTP off loopback and a non-positive time scale are refused at once."""
    with pytest.raises(q.InvalidRequestError, match="plain HTTP"):
        q.Client(api_key="k", base_url="http://example.com/api/v1")
    with pytest.raises(ValueError, match="time_scale"):
        q.Client(api_key="k", time_scale=0)


async def test_the_key_never_appears_in_reprs_logs_or_errors(fake, caplog):
    """The API key is absent from reprs, DEBUG logs, events and error messages."""
    events: list[q.TaskEvent] = []
    caplog.set_level(logging.DEBUG)
    async with make_client(fake, event_hooks=[events.append]) as client:
        handle = await client.submit("a fox", model="qwen-image-plus")
        await handle
        with pytest.raises(q.InvalidRequestError) as info:
            await client.generate("a fox", model="qwen-image-plus", size="1*1")
        texts = [repr(client), repr(handle), str(info.value), caplog.text, *map(repr, events)]
    assert all(fake.api_key not in text for text in texts)
    assert caplog.text  # debug logging did happen


async def test_invalid_request_sends_nothing(client, fake):
    """Catalog rejections happen before any network I/O."""
    with pytest.raises(q.InvalidRequestError):
        await client.generate("a fox", model="qwen-image-plus", n=2)
    assert 0 == sum(sum(c.values()) for c in fake.stats.requests.values())


async def test_close_leaves_no_tasks_and_fails_waiters(fake):
    """aclose() stops everything: waiters get TaskCanceledError, no asyncio task remains."""
    before = asyncio.all_tasks()
    client = make_client(fake)
    async with client:
        handle = await client.submit("a fox", model="qwen-image-plus")
    with pytest.raises(q.TaskCanceledError, match="closed"):
        await handle
    assert set() == asyncio.all_tasks() - before


async def test_own_session_is_used_and_not_closed(fake):
    """A caller's aiohttp session carries the API calls and stays open after aclose()."""
    async with aiohttp.ClientSession() as session:
        async with make_client(fake, session=session) as client:
            assert (await client.generate("a fox", model="qwen-image-plus")).images
        assert not session.closed


async def test_wait_timeout_leaves_the_task_running(fake):
    """wait(timeout) raises TaskTimeoutError; the task goes on and can be awaited again."""
    async with (
        FakeDashScope(
            time_scale=SCALE, limits=roomy_limits(), durations={"qwen-image-plus": (40, 40)}
        ) as slow,
        make_client(slow) as client,
    ):
        handle = await client.submit("a fox", model="qwen-image-plus")
        with pytest.raises(q.TaskTimeoutError) as info:
            await handle.wait(timeout=0.001)
        assert isinstance(info.value, TimeoutError)
        assert handle.task_id == info.value.task_id
        assert (await handle.wait(timeout=5)).images


async def test_generate_timeout_cancels_the_task(fake):
    """generate(timeout=) gives up: the task is cancelled (remotely while PENDING)."""
    async with (
        FakeDashScope(
            time_scale=SCALE, limits=ONE_SLOT, durations={"qwen-image-plus": (400, 400)}
        ) as slow,
        make_client(
            slow, limits=q.Limits(models={"qwen-image-plus": q.ModelLimits(in_flight=5)})
        ) as client,
    ):
        first = await client.submit("first", model="qwen-image-plus")
        with pytest.raises(q.TaskTimeoutError):
            await client.generate("second", model="qwen-image-plus", timeout=0.002)
        assert 1 == slow.stats.requests["cancel"][200]
        await first


async def test_cancelling_generate_cancels_the_pending_task_remotely(fake):
    """Cancelling the coroutine running generate() cancels its PENDING task, shielded."""
    async with (
        FakeDashScope(
            time_scale=SCALE, limits=ONE_SLOT, durations={"qwen-image-plus": (400, 400)}
        ) as slow,
        make_client(
            slow, limits=q.Limits(models={"qwen-image-plus": q.ModelLimits(in_flight=5)})
        ) as client,
    ):
        first = await client.submit("first", model="qwen-image-plus")
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.generate, "second")
            with anyio.fail_after(5):  # cancel once the second task provably exists
                while client.stats.submitted < 2:
                    await anyio.sleep(SCALE)
            tg.cancel_scope.cancel()
        assert 1 == slow.stats.requests["cancel"][200]
        assert "CANCELED" in {str(report.status) for report in slow.stats.tasks.values()}
        await first


async def test_cancel_by_task_id(client, fake):
    """client.cancel(task_id) cancels a tracked task, and answers False when it was too late."""
    handle = await client.submit("a fox", model="qwen-image-plus")
    await handle
    assert not await client.cancel(handle.task_id)  # type: ignore[arg-type]


async def test_cancelling_a_sync_call_abandons_it(client):
    """A synchronous handle cancels locally (there is no remote task)."""
    handle = await client.submit("a fox", model="qwen-image-2.0")
    await handle.cancel()
    with pytest.raises(q.TaskCanceledError):
        await handle
    assert q.TaskStatus.CANCELED == handle.status


async def test_attach_from_another_client(fake):
    """A task created by one client can be awaited from another by id."""
    async with make_client(fake) as first:
        handle = await first.submit("a fox", model="qwen-image-plus")
        task_id = handle.task_id
    async with make_client(fake) as second:
        result = await second.attach(task_id, model="qwen-image-plus")  # type: ignore[arg-type]
    assert task_id == result.task_id
    assert result.images


async def test_map_yields_every_item_with_its_outcome(client):
    """map() yields one outcome per item, failures included, in completion order."""
    items = [
        "a",
        {"prompt": "b", "model": "wan2.2-t2i-flash", "n": 2},
        {"prompt": "c", "size": "1*1"},
        {"prompt": "d", "bogus": 1},
    ]

    outcomes = [o async for o in client.map(items, model="qwen-image-plus")]

    by_index = {o.index: o for o in outcomes}
    assert [0, 1, 2, 3] == sorted(by_index)
    assert by_index[0].ok and by_index[0].task_id
    assert 2 == len(by_index[1].result.images)  # type: ignore[union-attr]
    assert isinstance(by_index[2].error, q.InvalidRequestError)
    assert "size" == by_index[2].error.parameter
    assert isinstance(by_index[3].error, q.InvalidRequestError)


async def test_leaving_map_early_cancels_the_rest(fake):
    """Breaking out of map() stops the remaining items; nothing is left running."""
    async with make_client(fake) as client:
        async for outcome in client.map(
            [f"p{i}" for i in range(30)], model="qwen-image-plus", concurrency=4
        ):
            assert outcome.ok
            break
        # Running tasks keep their slots until they really end remotely; pending ones are gone.
        with anyio.fail_after(5):
            while client.stats.in_flight:
                await anyio.sleep(SCALE)
    assert sum(fake.stats.tasks_created.values()) < 30


async def test_events_trace_the_lifecycle_and_bad_hooks_are_ignored(fake, tmp_path, caplog):
    """Hooks see submitted, polled, finished and downloaded; a raising hook does not break work."""
    kinds: list[q.EventKind] = []

    def broken(event: q.TaskEvent) -> None:
        raise RuntimeError("hook bug")

    async with make_client(fake, event_hooks=[lambda e: kinds.append(e.kind), broken]) as client:
        await client.generate("a fox", model="qwen-image-plus", save_to=tmp_path)

    assert q.EventKind.SUBMITTED == kinds[0]
    assert q.EventKind.POLLED in kinds
    assert [q.EventKind.FINISHED, q.EventKind.DOWNLOADED] == kinds[-2:]
    assert "hook" in caplog.text


async def test_stats_count_requests_and_outcomes(client):
    """stats counts requests by kind, polls and outcomes."""
    await client.generate("a fox", model="qwen-image-plus")
    await client.generate("a fox", model="qwen-image-2.0")

    stats = client.stats
    assert (1, 1) == (stats.requests["create"], stats.requests["sync"])
    assert stats.polls >= 1
    assert {"SUCCEEDED": 2} == dict(stats.finished)
    assert 2 == stats.submitted


async def test_unknown_snapshot_model_works_with_a_warning(client):
    """A model the catalog does not know is routed by family, with one UserWarning."""
    with pytest.warns(UserWarning, match="not in aioqwenimage's catalog"):
        result = await client.generate("a fox", model="qwen-image-max-2099-01-01")
    assert result.images


async def test_edit_model_sends_local_images(client, tmp_path):
    """Edit models take local files, uploaded inline as data URIs."""
    source = tmp_path / "in.png"
    source.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    result = await client.generate(
        "make it blue", model="qwen-image-edit-plus", images=[source], size="1024*768"
    )
    assert result.images
    gc.collect()


async def test_map_reports_an_unwritable_save_to_as_the_items_failure(client, tmp_path):
    """An OSError while saving is that item's error, not a crash of the client."""
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")

    # A directory inside a file cannot be made (a file itself is refused before any I/O).
    unwritable = blocked / "sub"
    outcomes = [
        o async for o in client.map(["a", "b"], model="qwen-image-plus", save_to=unwritable)
    ]

    assert 2 == len(outcomes)
    assert all(isinstance(o.error, q.QwenImageError) and o.task_id for o in outcomes)
    assert isinstance(outcomes[0].error.__cause__, OSError)  # type: ignore[union-attr]
    assert (await client.generate("c", model="qwen-image-plus")).images  # still working
    # A save refused with a typed error still names the item's task.
    [refused] = [o async for o in client.map(["d"], model="qwen-image-plus", save_to=blocked)]
    assert isinstance(refused.error, q.InvalidRequestError)
    assert refused.task_id
