"""$AIOQWENIMAGE_TIME_SCALE: a Client() built from the environment runs in an emulator's time."""

from __future__ import annotations

import logging
import re

import anyio
import pytest
from aioresponses import aioresponses

import aioqwenimage as q
from aioqwenimage.testing import FakeDashScope
from tests.virtual_time import run_virtual

ENV = "AIOQWENIMAGE_TIME_SCALE"
DONE = {
    "request_id": "r",
    "output": {
        "task_id": "t-1",
        "task_status": "SUCCEEDED",
        "results": [{"url": "https://oss.example/t-1.png"}],
    },
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in ("DASHSCOPE_API_KEY", "DASHSCOPE_REGION", "DASHSCOPE_HTTP_BASE_URL", ENV):
        monkeypatch.delenv(name, raising=False)


def first_poll_at(base: str, **kwargs) -> float:
    """The virtual time of a client's first poll against a mocked service at `base`."""
    seen: list[float] = []

    def record(_url, **_kwargs) -> None:
        seen.append(anyio.current_time())

    async def main() -> None:
        with aioresponses() as mocked:
            mocked.post(
                base + "/services/aigc/text2image/image-synthesis",
                payload={"output": {"task_id": "t-1", "task_status": "PENDING"}},
            )
            mocked.get(re.compile(re.escape(base) + r"/tasks/.*"), callback=record, payload=DONE)
            async with q.Client(api_key="sk-test", base_url=base, seed=1, **kwargs) as client:
                await client.generate("a fox", model="qwen-image-plus")

    run_virtual(main)
    return seen[0]


async def test_a_client_from_the_environment_runs_in_the_emulators_time(monkeypatch):
    """Client() configured only by the environment generates in the emulator's compressed time."""
    async with FakeDashScope(time_scale=0.001) as fake:
        monkeypatch.setenv("DASHSCOPE_API_KEY", fake.api_key)
        monkeypatch.setenv("DASHSCOPE_HTTP_BASE_URL", fake.base_url)
        monkeypatch.setenv(ENV, "0.001")
        async with q.Client() as client:
            # Uncompressed, the first poll alone would come 5 s after the submission.
            with anyio.fail_after(2):
                result = await client.generate("a fox", model="qwen-image-plus")
    assert 1 == len(result.images)


def test_the_variable_is_ignored_unless_the_api_is_on_loopback(monkeypatch, caplog):
    """Production never runs on compressed time: a remote base URL ignores it, and says so."""
    monkeypatch.setenv(ENV, "0.001")
    with caplog.at_level(logging.WARNING, logger="aioqwenimage"):
        at = first_poll_at("https://api.example/api/v1")
    assert pytest.approx(5.0, abs=1.0) == at
    assert 1 == sum(f"${ENV} is ignored" in r.getMessage() for r in caplog.records)


def test_the_variable_compresses_time_on_loopback(monkeypatch):
    """On a loopback API root the variable scales the client's schedule."""
    monkeypatch.setenv(ENV, "0.001")
    assert 0.01 > first_poll_at("http://127.0.0.1:9/api/v1")


def test_an_explicit_time_scale_wins_over_the_variable(monkeypatch):
    """Client(time_scale=...) is not overridden by the environment."""
    monkeypatch.setenv(ENV, "0.001")
    assert pytest.approx(5.0, abs=1.0) == first_poll_at("http://127.0.0.1:9/api/v1", time_scale=1)


@pytest.mark.parametrize("value", ["fast", "0", "-1", "nan", "inf"])
def test_a_bad_value_is_a_clear_error(monkeypatch, value):
    """A value that is not a positive number is refused, naming the variable."""
    monkeypatch.setenv(ENV, value)
    with pytest.raises(ValueError, match=rf"\${ENV} must be a positive number, not '{value}'"):
        q.Client(api_key="sk-test", base_url="http://127.0.0.1:9/api/v1")
