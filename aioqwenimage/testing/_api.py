"""
The HTTP handlers of the API host (E1-E6 and the admin endpoints) and of the file host.

Each handler runs inside `Handlers.guard`, the one place that turns `ApiError` into the documented
JSON body, adds ``X-Request-ID``, counts the answer, applies injected faults around the request,
and turns an unexpected exception into a quiet 500 (logged at debug, never printed).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from aioqwenimage._catalog import Protocol
from aioqwenimage.testing import _render, _wire
from aioqwenimage.testing._bodies import parse_generation
from aioqwenimage.testing._faults import (
    Fault,
    FaultKind,
    Fired,
    hostile_answer,
    is_streamed,
    stream_answer,
)
from aioqwenimage.testing._files import FileRequest, OssError, oss_error
from aioqwenimage.testing._png import encode_png
from aioqwenimage.testing._stats import SyncCallReport
from aioqwenimage.testing._wire import JSON_POST, JSON_TASKS, ApiError, Endpoint

if TYPE_CHECKING:
    from aioqwenimage.testing._engine import Engine

__all__ = ["Handlers"]

log = logging.getLogger("aioqwenimage.testing")

Handler = Callable[[web.Request, str], Awaitable[web.StreamResponse]]

_BEFORE: Final = (
    (FaultKind.THROTTLE, 429, "Throttling.RateQuota", _wire.MSG_RATE_QUOTA),
    (FaultKind.WILD_RETRY_AFTER, 429, "Throttling.RateQuota", _wire.MSG_RATE_QUOTA),
    (FaultKind.INTERNAL_ERROR, 500, "InternalError", _wire.MSG_INTERNAL),
    (FaultKind.UNAVAILABLE, 503, "ModelUnavailable", _wire.MSG_UNAVAILABLE),
)


class _Dropped(Exception):  # noqa: N818 - a control-flow signal, not an error
    """The connection was closed on purpose; there is no answer to send."""


class Handlers:
    """
    The request handlers, bound to one engine.

    Args:
        engine: The state and rules.
        api_key: The one key accepted.
        max_body_bytes: The largest request body; beyond it, 413.
    """

    def __init__(self, engine: Engine, *, api_key: str, max_body_bytes: int) -> None:
        self.engine = engine
        self.api_key = api_key
        self.max_body_bytes = max_body_bytes
        self._bearer = f"Bearer {api_key}"

    # --- the envelope ------------------------------------------------------------------------

    def guard(
        self, endpoint: Endpoint, handler: Handler, *, methods: tuple[str, ...] = ("POST",)
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """Wrap `handler` with method checks, error rendering, stats and the request id."""
        stats = self.engine.stats
        content_type = JSON_POST if "POST" in methods else JSON_TASKS

        async def guarded(request: web.Request) -> web.StreamResponse:
            request_id = _wire.new_request_id()
            try:
                _check_method(request, methods)
                response = await handler(request, request_id)
            except ApiError as error:
                response = web.Response(
                    status=error.status,
                    body=_wire.error_body(error.code, error.message, request_id),
                    headers={"Content-Type": content_type, **error.headers},
                )
                if error.status == HTTPStatus.METHOD_NOT_ALLOWED:
                    response.headers["Allow"] = ", ".join(methods)
            except _Dropped:
                stats.requests[endpoint.value][0] += 1
                # Nothing can be written to an aborted transport; aiohttp ignores the attempt.
                return web.Response(status=204)
            except Exception:
                log.debug("emulator handler failed", exc_info=True)
                response = web.Response(
                    status=500,
                    body=_wire.error_body("InternalError", _wire.MSG_INTERNAL, request_id),
                    headers={"Content-Type": content_type},
                )
            status = response.status
            stats.requests[endpoint.value][status] += 1
            if status == HTTPStatus.TOO_MANY_REQUESTS:
                stats.throttled += 1
            response.headers["X-Request-ID"] = request_id
            return response

        return guarded

    def _auth(self, request: web.Request) -> None:
        header = request.headers.get("Authorization")
        if header is None or not header.strip():
            raise ApiError(401, "InvalidApiKey", _wire.MSG_NO_API_KEY)
        if header != self._bearer:
            scheme, _, key = header.partition(" ")
            if scheme.lower() != "bearer" or key.strip() != self.api_key:
                raise ApiError(401, "InvalidApiKey", _wire.MSG_BAD_API_KEY)

    async def _json(self, request: web.Request) -> dict[str, Any]:
        body = await self._json_any(request)
        if not isinstance(body, dict):
            raise ApiError.invalid("The request body must be a JSON object.")  # [I]
        return body

    async def _json_any(self, request: web.Request) -> Any:
        if (request.content_length or 0) > self.max_body_bytes:
            raise ApiError(413, "BadRequest.TooLarge", _wire.MSG_TOO_LARGE)
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise ApiError(413, "BadRequest.TooLarge", _wire.MSG_TOO_LARGE) from None
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
            raise ApiError.invalid("The request body is not valid JSON.") from None  # [I]

    async def _before(self, request: web.Request, fired: Fired) -> None:
        """Faults that strike before the request takes effect."""
        if FaultKind.DROP_BEFORE in fired:
            _drop(request)
        delay = fired.get(FaultKind.DELAY)
        if delay is not None:
            await asyncio.sleep(delay.delay * self.engine.time_scale)
        for kind, status, code, message in _BEFORE:
            fault = fired.get(kind)
            if fault is not None:
                raise _injected(fault, status, code, message, self.engine.time_scale)
        moderation = fired.get(FaultKind.MODERATION)
        if moderation is not None:
            raise ApiError(
                400,
                moderation.code or "DataInspectionFailed",
                moderation.message or _wire.MSG_INPUT_INSPECTION,
            )

    async def _after(
        self, request: web.Request, fired: Fired, body: bytes, content_type: str
    ) -> web.StreamResponse:
        """Faults that strike after the request took effect, then the answer."""
        if FaultKind.DROP_AFTER in fired:
            _drop(request)
        if FaultKind.MALFORMED in fired:
            body = body[: max(len(body) // 2, 1)]
        body, content_type = hostile_answer(fired, body, content_type)
        if is_streamed(fired):
            return await stream_answer(request, fired, body, content_type, self.engine.time_scale)
        return web.Response(body=body, headers={"Content-Type": content_type})

    # --- E1, E3: create a task ---------------------------------------------------------------

    def create(self, protocol: Protocol) -> Handler:
        """The handler of a task-creating endpoint."""

        async def handle(request: web.Request, request_id: str) -> web.StreamResponse:
            self._auth(request)
            if request.headers.get("X-DashScope-Async", "").lower() != "enable":
                raise ApiError(403, "AccessDenied", _wire.MSG_SYNC_UNSUPPORTED)
            parsed = parse_generation(
                await self._json(request),
                protocol,
                oss_resolve=_oss_resolve(request),
                unknown_models=self.engine.unknown_models,
            )
            fired = self.engine.faults.draw(Endpoint.CREATE, parsed.model)
            await self._before(request, fired)
            task = self.engine.create(parsed, fired, request_id)
            return await self._after(
                request, fired, _render.create_body(task, request_id), JSON_POST
            )

        return handle

    # --- E2: synchronous generation ----------------------------------------------------------

    async def sync(self, request: web.Request, request_id: str) -> web.StreamResponse:
        """``POST /services/aigc/multimodal-generation/generation``: hold, then answer."""
        self._auth(request)
        if request.headers.get("X-DashScope-Async", "").lower() == "enable":
            raise ApiError(403, "AccessDenied", _wire.MSG_ASYNC_UNSUPPORTED)
        parsed = parse_generation(
            await self._json(request),
            Protocol.MULTIMODAL,
            oss_resolve=_oss_resolve(request),
            unknown_models=self.engine.unknown_models,
        )
        engine, stats = self.engine, self.engine.stats
        fired = engine.faults.draw(Endpoint.SYNC, parsed.model)
        await self._before(request, fired)
        plan = engine.plan_sync(parsed, fired)
        started = engine.clock()
        status = 200
        stats.sync_in_flight += 1
        stats.peak_sync_in_flight = max(stats.peak_sync_in_flight, stats.sync_in_flight)
        try:
            await asyncio.sleep(plan.hold)
            if plan.failure is not None:
                code, message = plan.failure
                status = _wire.status_for_code(code)
                raise ApiError(status, code, message)
            urls = engine.urls(request_id, parsed.size, parsed.n, engine.clock())
            body = _render.sync_body(parsed, request_id, urls, plan.image_failures)
            return await self._after(request, fired, body, JSON_POST)
        finally:
            stats.sync_in_flight -= 1
            stats.sync_calls.append(
                SyncCallReport(
                    request_id=request_id,
                    model=parsed.model,
                    prompt=parsed.prompt,
                    started=started,
                    ended=engine.clock(),
                    status=status,
                )
            )

    # --- E4, E5, E6: the task API ------------------------------------------------------------

    async def _task_call(self, request: web.Request, endpoint: Endpoint) -> Fired:
        self._auth(request)
        fired = self.engine.faults.draw(endpoint)
        await self._before(request, fired)
        self.engine.check_task_call(self.engine.clock())
        return fired

    async def query(self, request: web.Request, request_id: str) -> web.StreamResponse:
        """``GET /tasks/{id}`` (a trailing slash and stray query parameters are ignored)."""
        fired = await self._task_call(request, Endpoint.QUERY)
        body = self.engine.query(request.match_info["task_id"], request_id)
        return await self._after(request, fired, body, JSON_TASKS)

    async def list_tasks(self, request: web.Request, request_id: str) -> web.StreamResponse:
        """``GET /tasks``."""
        fired = await self._task_call(request, Endpoint.LIST)
        body = self.engine.list_tasks(request.query, request_id)
        return await self._after(request, fired, body, JSON_TASKS)

    async def cancel(self, request: web.Request, request_id: str) -> web.StreamResponse:
        """``POST /tasks/{id}/cancel``."""
        fired = await self._task_call(request, Endpoint.CANCEL)
        self.engine.cancel(request.match_info["task_id"])
        return await self._after(
            request, fired, _wire.dumps({"request_id": request_id}), JSON_TASKS
        )

    # --- everything else ---------------------------------------------------------------------

    @staticmethod
    async def not_found(request: web.Request, request_id: str) -> web.StreamResponse:  # noqa: ARG004
        """Any path the service does not have."""
        raise ApiError(404, "NotFound", "The requested resource was not found.")  # [I]

    async def admin_stats(self, request: web.Request, request_id: str) -> web.StreamResponse:  # noqa: ARG002
        """``GET /__emulator__/stats``."""
        body = _wire.dumps(self.engine.stats.to_dict() | {"request_id": request_id})
        return web.Response(body=body, headers={"Content-Type": JSON_TASKS})

    async def admin_faults(self, request: web.Request, request_id: str) -> web.StreamResponse:
        """``GET``/``POST``/``DELETE /__emulator__/faults``: list, arm or disarm faults."""
        faults = self.engine.faults
        if request.method == "POST":
            body: Any = await self._json_any(request)
            items = body if isinstance(body, list) else [body]
            if not items or not all(isinstance(item, dict) for item in items):
                raise ApiError.invalid("expected a fault object or a list of them")
            try:
                new = [Fault.from_json(item) for item in items]
            except ValueError as exc:
                msg = f"bad fault: {exc}"
                raise ApiError.invalid(msg) from None
            faults.add(*new)
        elif request.method == "DELETE":
            faults.clear()
        armed = [fault.to_json() for fault in faults]
        fired = {kind.value: count for kind, count in sorted(faults.fired.items(), key=str)}
        return web.Response(
            body=_wire.dumps({"request_id": request_id, "faults": armed, "fired": fired}),
            headers={"Content-Type": JSON_TASKS},
        )

    async def admin_reset(self, request: web.Request, request_id: str) -> web.StreamResponse:  # noqa: ARG002
        """``POST /__emulator__/reset``: forget tasks and stats."""
        self.engine.reset()
        return web.Response(
            body=_wire.dumps({"request_id": request_id}), headers={"Content-Type": JSON_TASKS}
        )

    # --- the file host -----------------------------------------------------------------------

    async def file(self, request: web.Request) -> web.StreamResponse:
        """A result image: checked like an OSS signed URL, drawn at the size its key names."""
        engine, stats = self.engine, self.engine.stats
        request_id = _wire.new_request_id().replace("-", "").upper()[:24]
        stats.file_requests += 1
        if "Authorization" in request.headers:
            stats.file_requests_with_authorization += 1
        try:
            _check_method(request, ("GET", "HEAD"), oss=True)
            fired = engine.faults.draw(Endpoint.FILE)
            try:
                await self._before(request, fired)
            except ApiError as error:
                raise OssError(
                    error.status, error.code, error.message, headers=error.headers
                ) from None
            query = request.query
            size = engine.signer.check(
                FileRequest(
                    key=request.match_info["key"],
                    expires=query.get("Expires"),
                    access_key_id=query.get("OSSAccessKeyId"),
                    signature=query.get("Signature"),
                ),
                engine.clock(),
            )
            response = await self._after(request, fired, encode_png(*size), "image/png")
            response.headers["ETag"] = f'"{hash(size) & 0xFFFFFFFF:08X}"'
        except OssError as error:
            response = web.Response(
                status=error.status,
                body=oss_error(error, request_id),
                headers={"Content-Type": "application/xml", **error.headers},
            )
        except _Dropped:
            stats.requests[Endpoint.FILE.value][0] += 1
            return web.Response(status=204)
        except Exception:
            log.debug("emulator file handler failed", exc_info=True)
            internal = OssError(500, "InternalError", "We encountered an internal error.")
            response = web.Response(
                status=500,
                body=oss_error(internal, request_id),
                headers={"Content-Type": "application/xml"},
            )
        stats.requests[Endpoint.FILE.value][response.status] += 1
        if response.status == HTTPStatus.TOO_MANY_REQUESTS:
            stats.throttled += 1
        response.headers["x-oss-request-id"] = request_id
        return response


def _check_method(request: web.Request, methods: tuple[str, ...], *, oss: bool = False) -> None:
    if request.method in methods:
        return
    if oss:
        raise OssError(405, "MethodNotAllowed", "The specified method is not allowed.")
    msg = f"Method {request.method} is not allowed."  # [I]
    raise ApiError(405, "MethodNotAllowed", msg)


def _oss_resolve(request: web.Request) -> bool:
    return request.headers.get("X-DashScope-OssResourceResolve", "").lower() == "enable"


def _drop(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:  # pragma: no branch - None only once the peer has gone already
        transport.abort()
    raise _Dropped


def _injected(fault: Fault, status: int, code: str, message: str, time_scale: float) -> ApiError:
    headers = {}
    if status == HTTPStatus.TOO_MANY_REQUESTS:
        text = fault.retry_after_text
        headers["Retry-After"] = (
            _wire.retry_after(fault.retry_after, time_scale) if text is None else text
        )
    return ApiError(status, fault.code or code, fault.message or message, headers=headers)
