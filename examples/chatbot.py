"""
A chat-bot handler: ``/imagine <prompt>`` in a chat becomes an image reply.

Bots answer many users at once from one event loop. The handler shares one client, gives each
user at most one generation at a time (so one user cannot take the whole quota), acknowledges at
once, and turns every failure into a message a person can act on.
"""

from __future__ import annotations

from collections import defaultdict

import anyio
import attrs

import aioqwenimage


@attrs.frozen
class Reply:
    text: str
    image_url: str | None = None


class ImagineBot:
    """Answers chat messages; `send` is how replies reach the chat (a coroutine you provide)."""

    def __init__(self, client: aioqwenimage.Client, *, model: str = "qwen-image-plus") -> None:
        self._client = client
        self._model = model
        self._busy: defaultdict[str, anyio.Lock] = defaultdict(anyio.Lock)

    async def handle(self, user: str, text: str, send) -> None:
        if not text.startswith("/imagine"):
            return
        prompt = text.removeprefix("/imagine").strip()
        if not prompt:
            await send(Reply("Usage: /imagine <what to draw>"))
            return
        lock = self._busy[user]
        if lock.locked():
            await send(Reply("Still drawing your last picture, one moment please."))
            return
        async with lock:
            await send(Reply(f"Drawing: {prompt}"))
            await send(await self._draw(prompt))

    async def _draw(self, prompt: str) -> Reply:
        try:
            result = await self._client.generate(prompt, model=self._model, timeout=300)
        except aioqwenimage.InvalidRequestError as exc:
            return Reply(f"I can't draw that: {exc.message}")
        except aioqwenimage.ContentModerationError:
            return Reply("Sorry, that request was declined by content moderation.")
        except aioqwenimage.TaskTimeoutError:
            return Reply("That took too long; please try again.")
        except aioqwenimage.QwenImageError:
            return Reply("Something went wrong on the image service; please try again later.")
        return Reply("Here you go!", image_url=result.images[0].url)
