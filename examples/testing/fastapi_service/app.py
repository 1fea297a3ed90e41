"""An image service on FastAPI: one aioqwenimage.Client, built from the environment."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel

import aioqwenimage


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Client() reads DASHSCOPE_API_KEY (and, in tests, the emulator's URL and time scale).
    async with aioqwenimage.Client() as client:
        app.state.client = client
        yield


app = FastAPI(lifespan=lifespan)


class ImageRequest(BaseModel):
    prompt: str
    size: str | None = None


@app.post("/images")
async def create_image(body: ImageRequest, request: Request) -> dict[str, list[str]]:
    client: aioqwenimage.Client = request.app.state.client
    try:
        result = await client.generate(body.prompt, size=body.size, timeout=120)
    except aioqwenimage.InvalidRequestError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc
    return {"urls": [image.url for image in result.images]}
