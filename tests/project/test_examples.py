"""The examples in examples/ run against the emulator."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from fastapi.testclient import TestClient

from aioqwenimage.testing import Fault, FaultKind
from tests.conftest import make_client

EXAMPLES = Path(__file__).parents[2] / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def test_fastapi_endpoint_generates_and_maps_errors(fake):
    """POST /images answers the image URLs, 422 for a bad size, 400 for moderation."""
    app = load("fastapi_app").create_app(lambda: make_client(fake))

    def exercise() -> list[tuple[int, dict]]:
        # TestClient runs the app (and its lifespan) on its own loop, in this worker thread.
        with TestClient(app) as http:
            ok = http.post("/images", json={"prompt": "a fox", "model": "wan2.2-t2i-flash", "n": 2})
            bad = http.post("/images", json={"prompt": "a fox", "size": "10*10"})
            fake.faults.add(Fault(kind=FaultKind.MODERATION, times=1))
            moderated = http.post("/images", json={"prompt": "a fox"})
        return [(r.status_code, r.json()) for r in (ok, bad, moderated)]

    (ok_status, ok), (bad_status, bad), (mod_status, _) = await asyncio.to_thread(exercise)

    assert 200 == ok_status
    assert 2 == len(ok["urls"])
    assert ok["task_id"]
    assert (422, "size") == (bad_status, bad["detail"].split(":")[0])
    assert 400 == mod_status


async def test_batch_script_saves_every_prompt(fake, tmp_path, capsys):
    """The batch script saves one image per prompt and reports each outcome."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a fox\n\na lighthouse\na cat\n", encoding="utf-8")

    failures = await load("batch").run(
        prompts, tmp_path / "out", client_factory=lambda: make_client(fake)
    )

    assert 0 == failures
    assert 3 == len(list((tmp_path / "out").glob("*.png")))
    assert "3 done, 0 failed" in capsys.readouterr().out


async def test_chatbot_answers_and_declines_politely(client, fake):
    """The bot acknowledges, replies with an image, refuses a second concurrent job per user."""
    bot = load("chatbot").ImagineBot(client)
    replies: list = []

    async def send(reply) -> None:
        replies.append(reply)

    await bot.handle("ann", "hello", send)
    await bot.handle("ann", "/imagine", send)
    await asyncio.gather(
        bot.handle("ann", "/imagine a fox", send), bot.handle("ann", "/imagine a cat", send)
    )
    fake.faults.add(Fault(kind=FaultKind.MODERATION, times=1))
    await bot.handle("bob", "/imagine something", send)

    texts = [r.text for r in replies]
    assert "Usage: /imagine <what to draw>" == texts[0]
    assert "Drawing: a fox" in texts
    assert "Still drawing your last picture, one moment please." in texts
    assert 1 == sum(1 for r in replies if r.image_url)
    assert "declined by content moderation" in texts[-1]
