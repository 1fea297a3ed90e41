"""The aiohttp service against the emulator, through aiohttp's own test client."""

import pytest
from aiohttp.test_utils import TestClient, TestServer
from app import create_app


@pytest.mark.asyncio
async def test_generate(fake_dashscope_env):
    """The app's Client() talks to the emulator, in its compressed time."""
    async with TestClient(TestServer(create_app())) as http:
        answer = await http.post("/images", json={"prompt": "a red fox in snow"})
        body = await answer.json()
    assert 200 == answer.status
    assert body["urls"][0].startswith(fake_dashscope_env.files_base_url)


@pytest.mark.asyncio
async def test_a_bad_size_is_422(fake_dashscope_env):
    """The model's size rule is checked before anything is ordered."""
    async with TestClient(TestServer(create_app())) as http:
        answer = await http.post("/images", json={"prompt": "a fox", "size": "10*10"})
    assert 422 == answer.status
    assert 0 == sum(fake_dashscope_env.stats.tasks_created.values())
