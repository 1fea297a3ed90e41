"""SyncClient: the blocking client, against the emulator, from one thread and from many."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import aioqwenimage as q
from aioqwenimage.testing import EmulatorLimits, FakeDashScope, Fault, FaultKind, ModelQuota
from tests.conftest import SCALE, client_limits, roomy_limits

PNG = b"\x89PNG\r\n\x1a\n"
ONE_SLOT = EmulatorLimits(models={"qwen-image-plus": ModelQuota(in_flight=1, submits=1000)})
SLOW = {"qwen-image-plus": (5000.0, 5000.0)}  # 5 s real: still running when the test ends


def sync_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "aioqwenimage-sync"]


@pytest.fixture
def fake():
    with FakeDashScope(time_scale=SCALE, seed=3, limits=roomy_limits()) as emulator:
        yield emulator


@pytest.fixture
def client(fake):
    with fake.sync_client(limits=client_limits(), seed=7) as c:
        yield c


def test_generate_returns_the_async_clients_result(client, tmp_path):
    """generate() blocks for a GenerationResult whose images can be read and saved."""
    result = client.generate("a fox", model="wan2.2-t2i-flash", n=2)
    paths = client.save_images(result, tmp_path)
    one = client.save_image(result.images[0], tmp_path / "one.png")
    assert isinstance(result, q.GenerationResult)
    assert [PNG] * 2 == [p.read_bytes()[:8] for p in paths]
    assert (PNG, PNG) == (client.read_image(result.images[1])[:8], one.read_bytes()[:8])


def test_generate_can_save_while_it_waits(client, tmp_path):
    """generate(save_to=) saves every image before returning."""
    result = client.generate("a fox", model="qwen-image-plus", save_to=tmp_path)
    assert [tmp_path / image.name for image in result.images] == sorted(tmp_path.iterdir())


def test_submit_gives_a_blocking_handle(client):
    """submit() returns a handle with task_id, status, done(), wait() and result()."""
    handle = client.submit("a fox", model="qwen-image-plus")
    first = handle.result()
    again = handle.wait(timeout=5)
    assert (True, q.TaskStatus.SUCCEEDED, handle.task_id) == (
        handle.done(),
        handle.status,
        first.task_id,
    )
    assert (first, "a fox", "qwen-image-plus") == (again, handle.prompt, handle.model)
    assert repr(handle).startswith("<SyncTaskHandle model='qwen-image-plus'")


def test_attach_and_cancel_by_id(client):
    """attach() re-attaches a finished task; cancel(task_id) answers False when too late."""
    done = client.generate("a fox", model="qwen-image-plus")
    assert done.task_id is not None
    again = client.attach(done.task_id, model="qwen-image-plus").result()
    assert ([i.url for i in done.images], False) == (
        [i.url for i in again.images],
        client.cancel(done.task_id),
    )


def test_errors_are_the_async_clients(client):
    """Bad input raises the same typed error, before any I/O."""
    with pytest.raises(q.InvalidRequestError, match="size"):
        client.generate("a fox", model="qwen-image-plus", size="10*10")


def test_a_handle_times_out_and_goes_on():
    """handle.wait(timeout=) raises TaskTimeoutError; the task is left running."""
    with (
        FakeDashScope(time_scale=SCALE, durations={"qwen-image-plus": (50, 50)}) as fake,
        fake.sync_client() as client,
    ):
        handle = client.submit("a fox", model="qwen-image-plus")
        with pytest.raises(q.TaskTimeoutError):
            handle.wait(timeout=0.001)
        assert handle.wait(timeout=5).images


def test_cancel_a_pending_handle():
    """handle.cancel() cancels a PENDING task remotely; waiting then raises TaskCanceledError."""
    with (
        FakeDashScope(time_scale=SCALE, limits=ONE_SLOT, durations=SLOW) as fake,
        fake.sync_client(
            limits=q.Limits(models={"qwen-image-plus": q.ModelLimits(in_flight=5)})
        ) as client,
    ):
        client.submit("first", model="qwen-image-plus")
        second = client.submit("second", model="qwen-image-plus")
        assert (True, q.TaskStatus.CANCELED) == (second.cancel(), second.status)
        with pytest.raises(q.TaskCanceledError):
            second.result()
        assert 1 == fake.stats.requests["cancel"][200]


def test_an_uncertain_create_is_resolved_and_attached(client, fake):
    """resolve_uncertain() finds the task a lost create made; attach() gives a blocking handle."""
    fake.faults.add(Fault(kind=FaultKind.DROP_AFTER, endpoints="create", times=1))
    with pytest.raises(q.SubmissionUncertainError) as info:
        client.submit("a fox", model="qwen-image-plus")
    resolution = client.resolve_uncertain(info.value)
    assert q.UncertainOutcome.CREATED == resolution.outcome
    assert resolution.task_id is not None
    result = client.attach(resolution.task_id).result()
    assert (resolution.task_id, 1) == (result.task_id, sum(fake.stats.tasks_created.values()))


def test_map_is_a_plain_iterator_in_completion_order(client):
    """map() yields one Outcome per item, failures included."""
    outcomes = list(client.map(["a", "b", {"prompt": "c", "size": "1*1"}], model="qwen-image-plus"))
    assert [0, 1, 2] == sorted(o.index for o in outcomes)
    assert [True, True, False] == [o.ok for o in sorted(outcomes, key=lambda o: o.index)]


def test_leaving_map_early_cancels_the_rest():
    """Breaking out of map() cancels the items still pending, remotely."""
    with (
        FakeDashScope(time_scale=SCALE, limits=ONE_SLOT, durations=SLOW) as fake,
        fake.sync_client(
            limits=q.Limits(models={"qwen-image-plus": q.ModelLimits(in_flight=3)})
        ) as client,
    ):
        items = [{"prompt": "bad", "size": "1*1"}, "a", "b", "c"]
        outcomes = client.map(items, model="qwen-image-plus")
        assert not next(outcomes).ok  # the bad item comes at once; the others are pending
        deadline = time.monotonic() + 5
        while client.stats.submitted < 3 and time.monotonic() < deadline:
            time.sleep(0.001)  # a real wait for the other thread, bounded; no simulated time
        outcomes.close()
        deadline = time.monotonic() + 5
        while fake.stats.requests["cancel"][200] < 2 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert 2 == fake.stats.requests["cancel"][200]


def test_list_tasks_iterates_the_accounts_tasks(client):
    """list_tasks() is a plain iterator of TaskInfo."""
    client.generate("a fox", model="qwen-image-plus")
    rows = list(client.list_tasks(status=q.TaskStatus.SUCCEEDED, page_size=1))
    assert ["qwen-image-plus"] == [row.model for row in rows]


def test_many_threads_share_one_client(client):
    """Eight threads generate at once through one loop, one pool and one set of limits."""
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: client.generate(f"fox {i}"), range(16)))
    assert 16 == len({r.task_id for r in results})
    assert (16, 1) == (client.stats.submitted, len(sync_threads()))


def test_close_leaves_no_thread_and_refuses_further_calls(fake):
    """close() ends the loop thread; calls after it raise ClientClosedError; close is idempotent."""
    client = fake.sync_client()
    client.generate("a fox")
    client.close()
    client.close()
    assert [] == sync_threads()
    with pytest.raises(q.ClientClosedError, match="closed"):
        client.generate("a fox")


def test_closing_ends_calls_waiting_in_other_threads():
    """close() from one thread ends a generate() waiting in another with ClientClosedError."""
    with FakeDashScope(time_scale=SCALE, durations=SLOW) as fake:
        client = fake.sync_client()
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(client.generate, "a fox")
            deadline = time.monotonic() + 5
            while client.stats.submitted < 1 and time.monotonic() < deadline:
                time.sleep(0.001)
            client.close()
            with pytest.raises(q.ClientClosedError):
                waiting.result(timeout=10)
    assert [] == sync_threads()


def test_bad_options_leave_no_thread():
    """A constructor error is raised in the caller, with no loop thread left behind."""
    with pytest.raises(ValueError, match="region"):
        q.SyncClient(api_key="sk-x", region="mars")
    assert [] == sync_threads()


def test_a_missing_key_is_reported_on_entering():
    """Entering the context opens the client: a missing key is an AuthenticationError."""
    client = q.SyncClient(base_url="http://127.0.0.1:9/api/v1", api_key="")
    with pytest.raises(q.AuthenticationError, match="no API key"), client:
        pass
    client.close()


def test_an_unclosed_client_warns_and_stops_its_thread(fake):
    """Garbage-collected unclosed, a SyncClient warns ResourceWarning and its thread ends."""
    client = fake.sync_client()
    client.generate("a fox")
    thread = sync_threads()[0]
    with pytest.warns(ResourceWarning, match="unclosed <SyncClient"):
        del client
    thread.join(5)
    assert not thread.is_alive()


def test_an_event_hook_cannot_call_back_into_the_client(fake):
    """Calling the client from its own loop (an event hook) is a clear error, not a deadlock."""
    errors: list[BaseException] = []

    def hook(_event) -> None:
        try:
            client.stats  # noqa: B018 - the call is the test
        except RuntimeError as exc:
            errors.append(exc)

    with fake.sync_client(event_hooks=[hook]) as client:
        client.generate("a fox")
    assert "own event loop" in str(errors[0])


@pytest.mark.skipif(os.name != "posix", reason="SIGINT delivery to the main thread")
def test_ctrl_c_during_generate_cancels_the_task_remotely():
    """An interrupted generate() cancels its PENDING task before KeyboardInterrupt propagates."""
    assert threading.current_thread() is threading.main_thread()
    with (
        FakeDashScope(time_scale=SCALE, limits=ONE_SLOT, durations=SLOW) as fake,
        fake.sync_client(
            limits=q.Limits(models={"qwen-image-plus": q.ModelLimits(in_flight=5)})
        ) as client,
    ):
        client.submit("first", model="qwen-image-plus")

        def interrupt() -> None:
            deadline = time.monotonic() + 5
            while client.stats.submitted < 2 and time.monotonic() < deadline:
                time.sleep(0.001)
            os.kill(os.getpid(), signal.SIGINT)

        threading.Thread(target=interrupt).start()
        with pytest.raises(KeyboardInterrupt):
            client.generate("second", model="qwen-image-plus")
        assert 1 == fake.stats.requests["cancel"][200]


def test_sync_endpoint_of_a_fastapi_app(fake):
    """A synchronous FastAPI endpoint (run in a worker thread) generates through a SyncClient."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    app = FastAPI()
    shared = fake.sync_client(limits=client_limits())

    @app.post("/images")
    def create(prompt: str) -> dict[str, list[str]]:
        return {"urls": [image.url for image in shared.generate(prompt).images]}

    with shared, TestClient(app) as http, ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(lambda i: http.post("/images", params={"prompt": f"{i}"}), range(4))
        )
    assert [200] * 4 == [a.status_code for a in answers]
    assert 4 == len({a.json()["urls"][0] for a in answers})


def test_options_and_methods_mirror_the_async_client():
    """Every Client option and method has its blocking twin, with the same parameters."""
    import inspect

    def params(fn) -> dict[str, object]:
        return {
            name: (str(p.annotation), p.default)
            for name, p in inspect.signature(fn).parameters.items()
            if name not in ("self", "session", "on_sending")  # loop-bound: async clients only
        }

    methods = {n for n in dir(q.Client) if not n.startswith("_")} - {"aclose"}
    assert set() == methods - set(dir(q.SyncClient))
    for name in ["__init__", *sorted(methods - {"stats"})]:
        assert params(getattr(q.Client, name)) == params(getattr(q.SyncClient, name)), name
