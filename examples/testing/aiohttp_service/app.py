"""An image service on aiohttp.web: one aioqwenimage.Client, built from the environment."""

from collections.abc import AsyncIterator

from aiohttp import web

import aioqwenimage

CLIENT = web.AppKey("client", aioqwenimage.Client)


async def client_context(app: web.Application) -> AsyncIterator[None]:
    # Client() reads DASHSCOPE_API_KEY (and, in tests, the emulator's URL and time scale).
    async with aioqwenimage.Client() as client:
        app[CLIENT] = client
        yield


async def create_image(request: web.Request) -> web.Response:
    body = await request.json()
    try:
        result = await request.app[CLIENT].generate(
            body["prompt"], size=body.get("size"), timeout=120
        )
    except aioqwenimage.InvalidRequestError as exc:
        raise web.HTTPUnprocessableEntity(text=str(exc)) from exc
    return web.json_response({"urls": [image.url for image in result.images]})


def create_app() -> web.Application:
    app = web.Application()
    app.cleanup_ctx.append(client_context)
    app.router.add_post("/images", create_image)
    return app
