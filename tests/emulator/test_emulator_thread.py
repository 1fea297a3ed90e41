"""The emulator in a background thread: for synchronous tests (TestClient, Django) and apps."""

from __future__ import annotations

import json
import socket
import threading
import urllib.request

import anyio
import pytest

import aioqwenimage as q
from aioqwenimage.testing import FakeDashScope


def get_json(fake: FakeDashScope, path: str) -> dict:
    """A blocking GET of the emulator's API, as synchronous code would do it."""
    request = urllib.request.Request(  # noqa: S310 - the emulator's loopback URL
        fake.base_url + path, headers={"Authorization": f"Bearer {fake.api_key}"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        return json.load(response)


def emulator_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("aioqwenimage-emulator")]


def test_a_synchronous_test_reaches_the_fixture(fake_dashscope):
    """A plain (non-async) test gets answers from the fixture: its loop runs in a thread."""
    assert "UNKNOWN" == get_json(fake_dashscope, "/tasks/nope")["output"]["task_status"]


async def test_an_async_test_uses_the_same_fixture(fake_dashscope):
    """The fixture's client generates from an async test, in the emulator's compressed time."""
    async with fake_dashscope.client() as client:
        with anyio.fail_after(2):
            result = await client.generate("a fox", model="qwen-image-plus")
    assert (1, 1) == (len(result.images), sum(fake_dashscope.stats.tasks_created.values()))


async def test_client_overrides_replace_the_defaults(fake_dashscope):
    """fake_dashscope.client(**overrides) passes any Client option through."""
    async with fake_dashscope.client(api_key="sk-wrong") as client:
        with pytest.raises(q.AuthenticationError):
            await client.generate("a fox")


async def test_the_env_fixture_points_client_from_environment_at_the_emulator(
    fake_dashscope_env,
):
    """With fake_dashscope_env, a bare Client() talks to the emulator in its time."""
    async with q.Client() as client:
        with anyio.fail_after(2):
            result = await client.generate("a fox", model="qwen-image-plus")
    assert (
        fake_dashscope_env.files_base_url
        == result.images[0].url[: len(fake_dashscope_env.files_base_url)]
    )


def test_environ_names_key_url_and_time_scale():
    """environ is what a Client() needs: key, API root, region and time scale."""
    with FakeDashScope(time_scale=0.002, api_key="sk-x") as fake:
        assert {
            "DASHSCOPE_API_KEY": "sk-x",
            "DASHSCOPE_HTTP_BASE_URL": fake.base_url,
            "DASHSCOPE_REGION": "singapore",
            "AIOQWENIMAGE_TIME_SCALE": "0.002",
        } == fake.environ


def test_with_block_serves_from_a_thread_and_leaves_nothing_behind():
    """`with FakeDashScope()` serves in a thread; leaving it stops the thread and frees the port."""
    with FakeDashScope(time_scale=0.001) as fake:
        status = get_json(fake, "/tasks/nope")["output"]["task_status"]
        port = int(fake.base_url.split(":")[2].split("/")[0])
        assert 1 == len(emulator_threads())
    assert ("UNKNOWN", []) == (status, emulator_threads())
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port)):
        pass


def test_a_port_that_cannot_be_bound_fails_the_with_statement():
    """A startup error reaches the caller, and no thread is left running."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        fake = FakeDashScope(port=taken.getsockname()[1])
        with pytest.raises(OSError, match="address already in use"), fake:
            pass
    assert [] == emulator_threads()


def test_reset_from_the_test_thread_forgets_tasks():
    """reset() called from another thread runs on the emulator's own loop."""
    with FakeDashScope(time_scale=0.001) as fake:

        async def generate() -> None:
            async with fake.client() as client:
                await client.generate("a fox", model="qwen-image-plus")

        anyio.run(generate)
        before = sum(fake.stats.tasks_created.values())
        fake.reset()
        assert (1, 0) == (before, sum(fake.stats.tasks_created.values()))


def test_a_thread_is_started_once():
    """Starting a running emulator again is refused clearly."""
    with FakeDashScope() as fake, pytest.raises(RuntimeError, match="starts once"):
        fake.start_in_thread()


async def test_async_close_of_a_threaded_emulator_stops_its_thread():
    """await fake.close() on an emulator served from a thread stops that thread."""
    fake = FakeDashScope()
    fake.start_in_thread()
    await fake.close()
    assert [] == emulator_threads()
    with pytest.raises(RuntimeError, match="closed, not running"):
        _ = fake.base_url
