"""
A FastAPI service that generates images: one aioqwenimage.Client for the whole app.

Run it with ``uvicorn examples.fastapi_app:app`` (``DASHSCOPE_API_KEY`` set). The client lives in
the app's lifespan, so every request shares one connection pool, one set of rate limits and one
poll scheduler, however many requests are waiting at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, Field

import aioqwenimage


class ImageRequest(BaseModel):
    prompt: str = Field(min_length=1)
    model: str = "qwen-image-plus"
    size: str | None = None
    n: int | None = None


class ImageResponse(BaseModel):
    task_id: str | None
    urls: list[str]
    actual_prompts: list[str | None]


def create_app(client_factory: Callable[[], aioqwenimage.Client] = aioqwenimage.Client) -> FastAPI:
    """The app; tests pass a factory that points the client at the emulator."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with client_factory() as client:
            app.state.client = client
            yield

    app = FastAPI(lifespan=lifespan)

    @app.post("/images")
    async def create_image(body: ImageRequest, request: Request) -> ImageResponse:
        client: aioqwenimage.Client = request.app.state.client
        try:
            # If the HTTP client disconnects, FastAPI cancels this coroutine, and generate()
            # cancels the task remotely while it is still pending: nobody pays for it.
            result = await client.generate(
                body.prompt, model=body.model, size=body.size, n=body.n, timeout=120
            )
        except aioqwenimage.InvalidRequestError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        except aioqwenimage.ContentModerationError as exc:
            raise HTTPException(
                status_code=400, detail="the prompt or image was rejected by moderation"
            ) from exc
        except (aioqwenimage.RateLimitError, aioqwenimage.TaskTimeoutError) as exc:
            raise HTTPException(status_code=503, detail="busy, try again later") from exc
        except aioqwenimage.QwenImageError as exc:
            raise HTTPException(
                status_code=502, detail=f"generation failed: {type(exc).__name__}"
            ) from exc
        return ImageResponse(
            task_id=result.task_id,
            urls=[image.url for image in result.images],
            actual_prompts=[image.actual_prompt for image in result.images],
        )

    return app


app = create_app()
