"""The FastAPI service against the emulator, with a synchronous and an asynchronous client."""

import httpx2
import pytest
from app import app
from fastapi.testclient import TestClient


def test_generate_with_the_synchronous_test_client(fake_dashscope_env):
    """TestClient runs the app, lifespan included; its Client() talks to the emulator."""
    with TestClient(app) as http:
        answer = http.post("/images", json={"prompt": "a red fox in snow"})
    assert 200 == answer.status_code
    assert answer.json()["urls"][0].startswith(fake_dashscope_env.files_base_url)


def test_a_bad_size_is_422(fake_dashscope_env):
    """The model's size rule is checked before anything is ordered."""
    with TestClient(app) as http:
        answer = http.post("/images", json={"prompt": "a fox", "size": "10*10"})
    assert 422 == answer.status_code
    assert 0 == sum(fake_dashscope_env.stats.tasks_created.values())


@pytest.mark.asyncio
async def test_generate_with_an_async_client(fake_dashscope_env):
    """In an async test, run the lifespan yourself and call the app through ASGI."""
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://app") as http:
            answer = await http.post("/images", json={"prompt": "a lighthouse at dusk"})
    assert 200 == answer.status_code
    assert 1 == len(answer.json()["urls"])
