"""Edge paths of creates, polls, cancels and downloads that a healthy service rarely takes."""

from __future__ import annotations

import re
import time

import anyio
import pytest
from aioresponses import aioresponses

import aioqwenimage as q
from aioqwenimage._download import url_expiry
from aioqwenimage.testing import Fault, FaultKind
from tests.conftest import SCALE, connection_refused, make_client

BASE = "https://api.example/api/v1"
CREATE = BASE + "/services/aigc/text2image/image-synthesis"
TASK = re.compile(re.escape(BASE) + r"/tasks/.*")
DONE = {
    "request_id": "r",
    "output": {
        "task_id": "t-1",
        "task_status": "SUCCEEDED",
        "results": [{"url": "https://oss.example/t-1.png"}],
    },
}


def mocked_client(**kwargs) -> q.Client:
    kwargs.setdefault("poll", q.PollPolicy(sweep=False))
    return q.Client(api_key="sk-test", base_url=BASE, time_scale=SCALE, seed=1, **kwargs)


async def test_refused_connection_is_resent_because_nothing_left():
    """A create whose connection was refused provably created nothing: it is sent again."""
    with aioresponses() as mocked:
        mocked.post(CREATE, exception=connection_refused())
        mocked.post(CREATE, payload={"output": {"task_id": "t-1", "task_status": "PENDING"}})
        mocked.get(TASK, payload=DONE, repeat=True)
        async with mocked_client() as client:
            result = await client.generate("a fox", model="qwen-image-plus")
            assert 1 == client.stats.retries
    assert "t-1" == result.task_id


async def test_refused_every_time_gives_up_with_a_transport_error():
    """Refused connections are retried up to the budget, then raised."""
    with aioresponses() as mocked:
        mocked.post(CREATE, exception=connection_refused(), repeat=True)
        async with mocked_client(retry=q.RetryPolicy(attempts=3)) as client:
            with pytest.raises(q.TransportError, match="could not connect"):
                await client.submit("a fox", model="qwen-image-plus")
            assert {} == client.stats.in_flight


async def test_success_without_a_task_id_is_uncertain():
    """A 2xx create answer without a task id cannot prove anything was or was not created."""
    with aioresponses() as mocked:
        mocked.post(CREATE, payload={"output": {}, "request_id": "r"})
        async with mocked_client() as client:
            with pytest.raises(q.SubmissionUncertainError, match="no task id"):
                await client.submit("a fox", model="qwen-image-plus")


async def test_a_rejected_key_mid_poll_ends_the_wait():
    """A 401 on a poll is not transient: the handle fails with AuthenticationError."""
    with aioresponses() as mocked:
        mocked.post(CREATE, payload={"output": {"task_id": "t-1", "task_status": "PENDING"}})
        mocked.get(TASK, status=401, payload={"code": "InvalidApiKey", "message": "Invalid."})
        async with mocked_client() as client:
            with pytest.raises(q.AuthenticationError):
                await client.generate("a fox", model="qwen-image-plus")
            assert {} == client.stats.in_flight


@pytest.mark.parametrize(
    ("kind", "error"),
    [(FaultKind.THROTTLE, q.RateLimitError), (FaultKind.UNAVAILABLE, q.ServerError)],
)
async def test_throttling_or_unavailability_outlasting_the_budget_is_raised(fake, kind, error):
    """Creates refused again and again end in the mapped error, and nothing was created."""
    fake.faults.add(Fault(kind=kind, endpoints="create", retry_after=0.001))
    async with make_client(fake, retry=q.RetryPolicy(attempts=3)) as client:
        with pytest.raises(error):
            await client.submit("a fox", model="qwen-image-plus")
        assert {} == client.stats.in_flight
    assert 0 == sum(fake.stats.tasks_created.values())


async def test_malformed_sync_answer_is_uncertain(client, fake):
    """A 200 whose body is not JSON may have billed the images: uncertain, never re-sent."""
    fake.faults.add(Fault(kind=FaultKind.MALFORMED, endpoints="sync", times=1))
    with pytest.raises(q.SubmissionUncertainError):
        await client.generate("a fox", model="qwen-image-2.0")
    assert 1 == sum(fake.stats.requests["sync"].values())


async def test_cancel_by_id_of_a_pending_task(fake):
    """client.cancel(task_id) cancels a tracked PENDING task and says so."""
    from aioqwenimage.testing import EmulatorLimits, FakeDashScope, ModelQuota

    one_slot = EmulatorLimits(models={"qwen-image-plus": ModelQuota(in_flight=1, submits=1000)})
    async with (
        # The first task holds the one slot long enough that the second is still PENDING.
        FakeDashScope(
            time_scale=SCALE, limits=one_slot, durations={"qwen-image-plus": (300, 300)}
        ) as slow,
        make_client(slow) as client,
    ):
        first = await client.submit("first", model="qwen-image-plus")
        second = await client.submit("second", model="qwen-image-plus")
        assert await client.cancel(second.task_id)  # type: ignore[arg-type]
        assert q.TaskStatus.CANCELED == second.status
        await first


async def test_throttled_lists_are_retried_and_counted(client, fake):
    """A 429 on a list is retried within the budget and counted as throttling."""
    await client.generate("a fox", model="qwen-image-plus")
    fake.faults.add(Fault(kind=FaultKind.THROTTLE, endpoints="list", times=1, retry_after=0.001))
    listed = [task async for task in client.list_tasks()]
    assert 1 == len(listed)
    assert 1 == client.stats.throttled


async def test_a_sync_call_cancelled_while_waiting_for_its_rate_frees_its_slot(fake):
    """Cancelled while the 2-per-minute window of qwen-image-max holds it: no slot is kept."""
    async with make_client(fake, limits=q.Limits()) as client:
        admitted = [await client.submit(p, model="qwen-image-max") for p in ("one", "two")]
        with anyio.move_on_after(0.005):  # the window frees after 60 compressed seconds
            await client.submit("three", model="qwen-image-max")
        for handle in admitted:
            await handle
        assert {} == client.stats.in_flight
        assert 2 == client.stats.requests["sync"]
    assert 2 == sum(fake.stats.requests["sync"].values())


def test_url_expiry_reads_the_signature_parameter():
    """Expires is read from the query; absent or malformed means unknown."""
    assert 1700000000.0 == url_expiry("https://x/a.png?Expires=1700000000&Signature=s")
    assert url_expiry("https://x/a.png") is None
    assert url_expiry("https://x/a.png?Expires=soon") is None


async def test_download_retries_a_dropped_transfer_from_scratch(client, fake, tmp_path):
    """A read that failed midway starts over: the bytes are whole, never doubled."""
    result = await client.generate("a fox", model="wan2.2-t2i-flash", n=1)
    clean = await result.images[0].read()
    fake.faults.add(Fault(kind=FaultKind.INTERNAL_ERROR, endpoints="file", times=2))
    assert clean == await result.images[0].read()
    fake.faults.add(Fault(kind=FaultKind.DROP_BEFORE, endpoints="file", times=1))
    path = await result.images[0].save(tmp_path)
    assert clean == path.read_bytes()


async def test_missing_result_file_is_an_error_not_a_retry(client, fake):
    """A 404 from the result host (not expired) is raised at once."""
    result = await client.generate("a fox", model="qwen-image-plus")
    broken = result.images[0].url.replace(".png", "-gone.png")
    with pytest.raises(q.QwenImageError):
        await client.download_image(broken)
    assert time.time() < (url_expiry(broken) or 0)
