"""
`Client`: lifecycle and wiring. One client runs thousands of generations in one event loop.

A generation flows: validate and route (``_requests``) -> the model's lane (submission rate and
in-flight slot, ``_limits``) -> create over the control pool (``_transport``) -> the one poll
scheduler (``_scheduler``) -> terminal snapshot -> the handle resolves, the slot is released.
Synchronous-only models take the long-call pool instead and resolve from the response.

Background work (the scheduler, synchronous calls) runs in one anyio task group owned by a host
task that `aclose` stops and awaits, so closing leaves nothing running.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import random
import time
import warnings
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import aiohttp
import anyio
import attrs

from aioqwenimage import _config
from aioqwenimage._download import Downloader
from aioqwenimage._errors import (
    InvalidRequestError,
    QwenImageError,
    SubmissionUncertainError,
    TaskCanceledError,
    TaskExpiredError,
    TaskFailedError,
    TaskModeratedError,
    TransportError,
    is_moderation_code,
)
from aioqwenimage._handle import TaskHandle
from aioqwenimage._limits import Limits, SubmitLane, make_overall_cap
from aioqwenimage._models import (
    EventKind,
    GeneratedImage,
    GenerationResult,
    TaskEvent,
    TaskInfo,
    TaskSnapshot,
    TaskStatus,
)
from aioqwenimage._requests import ImageInput, PreparedRequest, encode_images, prepare
from aioqwenimage._scheduler import (
    DurationModel,
    PollOutcome,
    PollPolicy,
    PollScheduler,
    QueryBudget,
)
from aioqwenimage._transport import (
    ConnectFailedError,
    PoolKind,
    PoolLimits,
    Response,
    RetryPolicy,
    Timeouts,
    Transport,
)

__all__ = ["Client", "ClientStats", "Outcome"]

logger = logging.getLogger("aioqwenimage")

DEFAULT_MODEL: Final = "qwen-image-plus"
EventHook = Callable[[TaskEvent], object]


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPENED = "opened"
    CLOSED = "closed"


@attrs.frozen(kw_only=True)
class ClientStats:
    """
    Counters since the client opened; a snapshot, taken by `Client.stats`.

    Attributes:
        requests: HTTP requests sent, by kind: ``create``, ``sync``, ``poll``, ``list``,
            ``cancel``, ``download``.
        polls: Task queries answered.
        throttled: 429 answers received.
        retries: Requests sent again after a transient failure.
        submitted: Generations started (tasks created, synchronous calls begun).
        finished: Generations that reached an outcome, by terminal status.
        in_flight: Generations holding an in-flight slot, by model.
        uncertain: Creates whose outcome was unknown (raised `SubmissionUncertainError`).
    """

    requests: Mapping[str, int]
    polls: int
    throttled: int
    retries: int
    submitted: int
    finished: Mapping[str, int]
    in_flight: Mapping[str, int]
    uncertain: int


@attrs.frozen(kw_only=True)
class Outcome:
    """
    One item of `Client.map`: its position, its prompt, and a result or an error.

    Attributes:
        index: The item's position in the input.
        prompt: The item's prompt.
        result: The generation's result, when it succeeded.
        error: Why it did not, when it failed.
        task_id: The task's id, when one was created.
    """

    index: int
    prompt: str
    result: GenerationResult | None = None
    error: QwenImageError | None = None
    task_id: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the item succeeded."""
        return self.result is not None


@attrs.define
class _Flight:
    """What the client holds for one generation until it ends."""

    handle: TaskHandle
    request: PreparedRequest | None
    lane: SubmitLane | None
    holds_slot: bool = False
    sync_scope: anyio.CancelScope | None = None
    on_sending: Callable[[], Awaitable[object]] | None = None


class Client:
    """
    The asyncio client for DashScope image generation.

    Use it as ``async with aioqwenimage.Client() as client:``, or call `aclose` when done. All
    options are keyword-only; defaults come from the environment and the model catalog.

    Args:
        api_key: Your DashScope key; default ``$DASHSCOPE_API_KEY``. A missing key is reported
            at the first request.
        region: ``"singapore"``, ``"beijing"`` or ``"virginia"``; default ``$DASHSCOPE_REGION``,
            else Singapore. Decides the host and the documented default limits.
        base_url: The API root including ``/api/v1``; default ``$DASHSCOPE_HTTP_BASE_URL``, else
            the region's host. Plain ``http://`` is refused except to loopback addresses.
        workspace: Sent as ``X-DashScope-WorkSpace`` when given.
        limits: Rate, in-flight and query limits; default: the documented per-model limits.
        poll: How tasks are polled; default `PollPolicy()`.
        timeouts: Network timeouts.
        pools: Connection pool sizes per kind of traffic.
        retry: Retries of idempotent requests (polls retry forever, on their own schedule).
        session: An `aiohttp.ClientSession` to use for API calls; it is not closed by the client.
        event_hooks: Callables invoked with every `TaskEvent` (keep them fast; they run inline).
        seed: Seeds the jitter, for reproducible schedules in tests.
        time_scale: For emulators only: multiplies every delay the client waits for (the poll
            schedule, rate windows, backoffs) to match an emulator's compressed time. Leave it
            at 1 against the real service. Network timeouts are not scaled.
    """

    __module__ = "aioqwenimage"

    def __init__(
        self,
        *,
        api_key: str | None = None,
        region: str | None = None,
        base_url: str | None = None,
        workspace: str | None = None,
        limits: Limits | None = None,
        poll: PollPolicy | None = None,
        timeouts: Timeouts | None = None,
        pools: PoolLimits | None = None,
        retry: RetryPolicy | None = None,
        session: aiohttp.ClientSession | None = None,
        event_hooks: Iterable[EventHook] = (),
        seed: int | None = None,
        time_scale: float = 1.0,
    ) -> None:
        self._region = _config.resolve_region(region)
        self._base_url = _config.resolve_base_url(base_url, self._region)
        self._key = _config.resolve_key(api_key)
        self._workspace = workspace
        if not _positive_number(time_scale):
            msg = f"time_scale must be a positive number, got {time_scale!r}"
            raise ValueError(msg)
        self._time_scale = float(time_scale)
        self._limits = limits or Limits()
        self._poll_policy = (poll or PollPolicy()).scaled(time_scale)
        self._rng = random.Random(seed)  # noqa: S311 - jitter only
        self._hooks = tuple(event_hooks)
        self._transport = Transport(
            base_url=self._base_url,
            api_key=self._key.reveal() if self._key else "",
            workspace=workspace,
            pools=pools,
            timeouts=timeouts,
            retry=(retry or RetryPolicy()).scaled(time_scale),
            session=session,
            rng=self._rng,
        )
        self._downloader = Downloader(
            self._transport,
            concurrency=self._transport.pools.download,
            retry=self._transport.retry,
            rng=self._rng,
        )
        self._state = _State.UNOPENED
        self._lanes: dict[str, SubmitLane] = {}
        self._overall = make_overall_cap(self._limits.max_in_flight)
        self._flights: dict[TaskHandle, _Flight] = {}
        self._requests: Counter[str] = Counter()
        self._finished: Counter[str] = Counter()
        self._polls = self._throttled = self._retries = self._submitted = self._uncertain = 0
        # Created on open, inside the running loop.
        self._budget: QueryBudget | None = None
        self._durations = DurationModel(self._poll_policy)
        self._scheduler: PollScheduler[TaskHandle] | None = None
        self._host: asyncio.Task[None] | None = None
        self._started: anyio.Event | None = None
        self._stop: anyio.Event | None = None
        self._tg: anyio.abc.TaskGroup | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        self._ensure_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _ensure_open(self) -> None:
        """Open on first use: sessions, the query budget, and the host of background work."""
        if self._state is _State.OPENED:
            return
        if self._state is _State.CLOSED:
            msg = "the client is closed; create a new Client"
            raise RuntimeError(msg)
        if self._key is None:
            raise _config.missing_key_error()
        self._state = _State.OPENED
        self._transport.open()
        self._budget = QueryBudget(self._limits.queries_per_second, scale=self._time_scale)
        self._scheduler = PollScheduler(
            self._poll,
            policy=self._poll_policy,
            budget=self._budget,
            durations=self._durations,
            rng=self._rng,
        )
        self._started = anyio.Event()
        self._stop = anyio.Event()
        # The host owns the task group, so `aclose` may run in another task than the opener
        # (FastAPI lifespans, pytest fixtures) without crossing cancel scopes between tasks.
        self._host = asyncio.get_running_loop().create_task(self._run_host())

    async def _run_host(self) -> None:
        assert self._scheduler is not None and self._stop is not None  # noqa: S101
        assert self._started is not None  # noqa: S101
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self._scheduler.run)
            self._started.set()
            await self._stop.wait()
            tg.cancel_scope.cancel()

    async def _task_group(self) -> anyio.abc.TaskGroup:
        assert self._started is not None  # noqa: S101
        await self._started.wait()
        assert self._tg is not None  # noqa: S101
        return self._tg

    async def aclose(self) -> None:
        """
        Stop all background work and close the connections this client opened.

        Generations still running are abandoned locally (their waiters get
        `TaskCanceledError`); tasks already created go on remotely and can be re-attached by a
        new client with `attach`.
        """
        if self._state is not _State.OPENED:
            self._state = _State.CLOSED
            return
        self._state = _State.CLOSED
        for flight in list(self._flights.values()):
            self._end_flight(
                flight,
                TaskCanceledError(
                    "the client was closed before the generation ended",
                    task_id=flight.handle.task_id,
                ),
            )
        assert self._stop is not None and self._host is not None  # noqa: S101
        self._stop.set()
        with anyio.CancelScope(shield=True):
            await self._host
            await self._transport.aclose()

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        # Only warn: touching the loop from a finaliser could run on another loop or thread.
        if getattr(self, "_state", None) is _State.OPENED:
            _warn(
                f"unclosed {self!r}; use 'async with Client()' or 'await client.aclose()'",
                ResourceWarning,
                stacklevel=2,
                source=self,
            )

    def __repr__(self) -> str:
        in_flight = sum(1 for f in self._flights.values() if not f.handle.done())
        return f"<Client state={self._state.value} base_url={self._base_url!r} in_flight={in_flight}>"

    # --- the public API ----------------------------------------------------------------------

    async def generate(  # noqa: PLR0913 - the generation parameters
        self,
        prompt: str,
        *,
        model: str = DEFAULT_MODEL,
        size: str | tuple[int, int] | None = None,
        n: int | None = None,
        seed: int | None = None,
        negative_prompt: str | None = None,
        prompt_extend: bool | None = None,
        watermark: bool | None = None,
        images: Sequence[ImageInput] | None = None,
        extra_parameters: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        save_to: str | Path | None = None,
    ) -> GenerationResult:
        """
        Generate images and wait for them: `submit` plus ``await handle``.

        Cancelling this coroutine cancels the task remotely (shielded, best effort: only a
        ``PENDING`` task can be cancelled) and stops polling it. So does `timeout`, after which
        `TaskTimeoutError` is raised.

        Args:
            prompt: What to draw.
            model: Any model of the catalog (or a new snapshot of a known family).
            size: ``"W*H"``, ``"WxH"`` or ``(w, h)``; must satisfy the model's size rule.
            n: Images to generate, within the model's range.
            seed: In [0, 2147483647].
            negative_prompt: What to avoid (at most 500 characters).
            prompt_extend: Let the service rewrite the prompt (default on, server-side).
            watermark: Add the model's watermark.
            images: Input images for editing models: URLs, ``data:`` URIs, paths or bytes.
            extra_parameters: Parameters this library does not know yet, sent as given.
            timeout: Seconds to wait for the result at most.
            save_to: A directory to save every image into before returning.

        Raises:
            InvalidRequestError: Rejected by the catalog (before any I/O) or by the service.
            SubmissionUncertainError: The create's outcome is unknown; it was not re-sent.
            TaskFailedError: The task failed (`TaskModeratedError` if moderation failed it).
            QwenImageError: Any other failure (see the error tree).
        """
        handle = await self.submit(
            prompt,
            model=model,
            size=size,
            n=n,
            seed=seed,
            negative_prompt=negative_prompt,
            prompt_extend=prompt_extend,
            watermark=watermark,
            images=images,
            extra_parameters=extra_parameters,
        )
        try:
            result = await handle.wait(timeout)
        except BaseException as exc:
            if not handle.done() or isinstance(exc, TimeoutError):
                with anyio.CancelScope(shield=True), anyio.move_on_after(30):
                    await handle.cancel()
            raise
        if save_to is not None:
            await self.save_images(result, save_to)
        return result

    async def submit(  # noqa: PLR0913 - the generation parameters
        self,
        prompt: str,
        *,
        model: str = DEFAULT_MODEL,
        size: str | tuple[int, int] | None = None,
        n: int | None = None,
        seed: int | None = None,
        negative_prompt: str | None = None,
        prompt_extend: bool | None = None,
        watermark: bool | None = None,
        images: Sequence[ImageInput] | None = None,
        extra_parameters: Mapping[str, Any] | None = None,
        on_sending: Callable[[], Awaitable[object]] | None = None,
    ) -> TaskHandle:
        """
        Start a generation and return its handle once the task exists remotely.

        Waits, as needed, for the model's submission rate and in-flight limit. For a
        synchronous-only model the handle wraps the in-flight request (``task_id`` is ``None``)
        and this returns once the request is admitted by the limits.
        Parameters are those of `generate`, plus:

        Args:
            on_sending: Awaited after the limits admit the request and right before each
                create request is sent (again before a re-send). Durable journals use it to
                record "this may now exist remotely"; if it raises, nothing is sent.

        Raises:
            InvalidRequestError: Rejected by the catalog (before any I/O) or by the service.
            SubmissionUncertainError: The create's outcome is unknown; it was not re-sent.
            RateLimitError: Throttling outlasted the retry budget.
        """
        encoded = await encode_images(images)
        request = prepare(
            prompt,
            model=model,
            size=size,
            n=n,
            seed=seed,
            negative_prompt=negative_prompt,
            prompt_extend=prompt_extend,
            watermark=watermark,
            images=encoded,
            extra_parameters=extra_parameters,
        )
        self._ensure_open()
        lane = self._lane(request)
        handle = TaskHandle(
            model=request.model, task_id=None, canceller=self._cancel, prompt=request.prompt
        )
        flight = _Flight(handle=handle, request=request, lane=lane, on_sending=on_sending)
        if request.protocol.is_async:
            await self._create(flight)
            assert self._scheduler is not None  # noqa: S101
            self._scheduler.add(handle, request.model, submitted_at=anyio.current_time())
        else:
            await self._acquire_slot(flight)
            try:
                await lane.acquire_submit()
                if on_sending is not None:
                    await on_sending()
            except BaseException:
                self._release_slot(flight)
                raise
            flight.sync_scope = anyio.CancelScope()
            self._flights[handle] = flight
            (await self._task_group()).start_soon(self._run_sync, flight)
        return handle

    def attach(self, task_id: str, *, model: str | None = None) -> TaskHandle:
        """
        A handle for a task created earlier (by this process or another), polled from now on.

        A plain method, not a coroutine. Give `model` when you know it: it lets the scheduler
        use what it learned about that model's durations.

        Raises:
            RuntimeError: The client is closed.
            ValueError: `task_id` is empty.
        """
        if not _nonempty_str(task_id):
            msg = "task_id must be a non-empty string"
            raise ValueError(msg)
        self._ensure_open()
        handle = TaskHandle(model=model, task_id=task_id, canceller=self._cancel)
        self._flights[handle] = _Flight(handle=handle, request=None, lane=None)
        assert self._scheduler is not None  # noqa: S101
        # An attached task may be long done: poll it at once.
        self._scheduler.add(handle, model, submitted_at=anyio.current_time(), first_due=0.0)
        return handle

    async def map(  # noqa: PLR0913 - the generation parameters
        self,
        prompts: Iterable[str | Mapping[str, Any]],
        *,
        model: str = DEFAULT_MODEL,
        concurrency: int | None = None,
        save_to: str | Path | None = None,
        **parameters: Any,
    ) -> AsyncIterator[Outcome]:
        """
        Generate for many prompts and yield an `Outcome` per item, in completion order.

        An item is a prompt, or a mapping with ``prompt`` and any parameter of `generate`
        (its own ``model`` included); `parameters` are the defaults for every item. A failed
        item yields an outcome with its error; it never stops the others. Leaving the loop
        early cancels the items still running.

        Args:
            prompts: The items.
            model: The default model.
            concurrency: Items in progress at once (waiting for limits included); default:
                twice the model's in-flight limit, at least 16.
            save_to: A directory to save every image into.
            parameters: Default generation parameters, as for `generate`.
        """
        items = list(prompts)
        self._ensure_open()
        if concurrency is None:
            configured = self._lane_for_model(model).configured
            concurrency = max(16, 2 * configured) if configured else 64
        send, receive = anyio.create_memory_object_stream[Outcome](max_buffer_size=math.inf)
        scope = anyio.CancelScope()
        next_index = iter(range(len(items)))

        async def worker() -> None:
            for index in next_index:
                outcome = await self._one(index, items[index], model, save_to, parameters)
                try:
                    await send.send(outcome)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return  # the consumer left the loop

        async def run_workers() -> None:
            with scope:
                async with send, anyio.create_task_group() as tg:
                    for _ in range(min(concurrency, len(items))):
                        tg.start_soon(worker)

        (await self._task_group()).start_soon(run_workers)
        try:
            async for outcome in receive:
                yield outcome
        finally:
            scope.cancel()
            receive.close()

    async def _one(
        self,
        index: int,
        item: str | Mapping[str, Any],
        model: str,
        save_to: str | Path | None,
        defaults: Mapping[str, Any],
    ) -> Outcome:
        params = dict(defaults)
        if isinstance(item, Mapping):
            params.update(item)
            prompt = params.pop("prompt", "")
        else:
            prompt = item
        params.setdefault("model", model)
        params.setdefault("save_to", save_to)
        try:
            result = await self.generate(prompt, **params)
        except QwenImageError as exc:
            return Outcome(
                index=index, prompt=str(prompt), error=exc, task_id=getattr(exc, "task_id", None)
            )
        except TypeError as exc:  # an unknown parameter in an item
            error = InvalidRequestError(f"item {index}: {exc}", parameter="item")
            return Outcome(index=index, prompt=str(prompt), error=error)
        return Outcome(index=index, prompt=prompt, result=result, task_id=result.task_id)

    async def cancel(self, task_id: str) -> bool:
        """
        Cancel a task by id, remotely. Only a ``PENDING`` task can be cancelled.

        Returns:
            Whether the service cancelled it (``False``: it was no longer pending).
        """
        for flight in list(self._flights.values()):
            if flight.handle.task_id == task_id:
                await flight.handle.cancel()
                return flight.handle.status is TaskStatus.CANCELED
        self._ensure_open()
        return await self._remote_cancel(task_id)

    async def list_tasks(
        self,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        model: str | None = None,
        status: TaskStatus | None = None,
        page_size: int = 50,
    ) -> AsyncIterator[TaskInfo]:
        """
        The account's tasks (of any key), page by page; the service keeps 24 hours.

        Args:
            start: The window's start (timezone-aware; naive means UTC).
            end: The window's end; the window may span at most 24 hours.
            model: Only tasks of this model.
            status: Only tasks in this status.
            page_size: Rows fetched per request.
        """
        self._ensure_open()
        params: dict[str, str] = {"page_size": str(page_size)}
        if start is not None:
            params["start_time"] = _list_time(start)
        if end is not None:
            params["end_time"] = _list_time(end)
        if model is not None:
            params["model_name"] = model
        if status is not None:
            params["status"] = status.value
        page = 1
        while True:
            params["page_no"] = str(page)
            await self._spend_query()
            self._requests["list"] += 1
            response = await self._transport.call(
                "GET", "/tasks", params=params, on_retry=self._count_retry
            )
            body = response.body or {}
            rows = body.get("data")
            for row in rows if isinstance(rows, list) else []:
                if isinstance(row, Mapping):
                    yield TaskInfo.from_json(row)
            total_pages = body.get("total_page")
            if not rows or not isinstance(total_pages, int) or page >= total_pages:
                return
            page += 1

    async def save_images(self, result: GenerationResult, directory: str | Path) -> list[Path]:
        """Save every image of `result` into `directory`, concurrently; returns the paths."""
        paths: list[Path] = [Path()] * len(result.images)

        async def save(position: int, image: GeneratedImage) -> None:
            paths[position] = await image.save(Path(directory) / image.name)

        async with anyio.create_task_group() as tg:
            for position, image in enumerate(result.images):
                tg.start_soon(save, position, image)
        return paths

    async def download_image(self, url: str, destination: str | Path | None = None) -> bytes | Path:
        """Fetch any result URL: its bytes, or the saved path when `destination` is given."""
        self._ensure_open()
        if destination is None:
            return await self._downloader.read(url)
        return await self._downloader.save(url, destination, default_name=_name_from_url(url))

    @property
    def stats(self) -> ClientStats:
        """A snapshot of the client's counters."""
        in_flight = {model: lane.in_flight for model, lane in self._lanes.items() if lane.in_flight}
        requests = dict(self._requests)
        requests["download"] = self._downloader.downloads
        return ClientStats(
            requests=requests,
            polls=self._polls,
            throttled=self._throttled,
            retries=self._retries + self._downloader.retries,
            submitted=self._submitted,
            finished=dict(self._finished),
            in_flight=in_flight,
            uncertain=self._uncertain,
        )

    # --- lanes and slots ---------------------------------------------------------------------

    def _lane(self, request: PreparedRequest) -> SubmitLane:
        lane = self._lanes.get(request.model)
        if lane is None:
            documented = request.spec.default_limits(self._region)
            lane = SubmitLane.from_limits(
                self._limits.for_model(request.model, documented),
                scale=self._time_scale,
                rng=self._rng,
            )
            self._lanes[request.model] = lane
        return lane

    def _lane_for_model(self, model: str) -> SubmitLane:
        return self._lane(prepare("x", model=model))

    async def _acquire_slot(self, flight: _Flight) -> None:
        assert flight.lane is not None  # noqa: S101
        await self._overall.acquire()
        try:
            await flight.lane.acquire_slot()
        except BaseException:
            self._overall.release()
            raise
        flight.holds_slot = True

    def _release_slot(self, flight: _Flight) -> None:
        if flight.holds_slot and flight.lane is not None:
            flight.holds_slot = False
            flight.lane.release_slot()
            self._overall.release()

    # --- creating tasks ----------------------------------------------------------------------

    async def _create(self, flight: _Flight) -> None:
        """POST the create until the task exists, re-sending only when nothing was created."""
        request, lane, handle = flight.request, flight.lane, flight.handle
        assert request is not None and lane is not None  # noqa: S101
        attempts = 0
        while True:
            attempts += 1
            await self._acquire_slot(flight)
            try:
                await lane.acquire_submit()
                if flight.on_sending is not None:
                    await flight.on_sending()
                # Shielded: once the request may have left, we must learn its outcome even if
                # our caller is cancelled, or a created (billed) task would be lost.
                with anyio.CancelScope(shield=True):
                    self._requests["create"] += 1
                    response = await self._transport.send(
                        PoolKind.CONTROL,
                        "POST",
                        request.protocol.path,
                        body=request.body,
                        async_task=True,
                    )
            except ConnectFailedError as exc:
                self._release_slot(flight)
                if attempts >= self._transport.retry.attempts:
                    raise
                await self._backoff(handle, attempts, None, exc)
                continue
            except TransportError as exc:
                self._release_slot(flight)
                self._uncertain += 1
                raise self._uncertain_error(request, f"the connection failed after sending: {exc}") from exc
            except BaseException:
                self._release_slot(flight)
                raise
            task_id = _created_task_id(response)
            if task_id is not None:
                lane.on_success()
                handle._set_task_id(task_id)  # noqa: SLF001 - the client owns its handles
                self._flights[handle] = flight
                self._submitted += 1
                self._emit(EventKind.SUBMITTED, handle)
                await self._cancel_if_cancelled(handle)
                return
            error = response.error()
            if response.status == 429 and response.retryable:  # noqa: PLR2004
                # Told while the slot is still held: the lane learns how many the server took.
                lane.on_throttled(response.retry_after)
            self._release_slot(flight)
            if response.status == 429 and response.retryable:  # noqa: PLR2004
                self._throttled += 1
                self._emit(EventKind.THROTTLED, handle, retry_after=response.retry_after)
                if attempts >= max(8, self._transport.retry.attempts):
                    raise error
                continue
            if response.status == 503:  # noqa: PLR2004 - "ModelUnavailable": nothing was created
                if attempts >= self._transport.retry.attempts:
                    raise error
                await self._backoff(handle, attempts, response.retry_after, error)
                continue
            if response.ok or response.status >= 500:  # noqa: PLR2004
                self._uncertain += 1
                raise self._uncertain_error(request, str(error)) from error
            raise error

    async def _cancel_if_cancelled(self, handle: TaskHandle) -> None:
        """After a shielded create: if our caller was cancelled meanwhile, cancel the new task."""
        try:
            await anyio.lowlevel.checkpoint()
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True), anyio.move_on_after(30):
                await self._cancel(handle)
            raise

    def _uncertain_error(self, request: PreparedRequest, why: str) -> SubmissionUncertainError:
        return SubmissionUncertainError(
            f"the create request for model {request.model!r} was sent but its outcome is unknown "
            f"({why}); it was not re-sent, so that no image is ordered twice. "
            "Check Client.list_tasks before retrying.",
            model=request.model,
            prompt=request.prompt,
        )

    async def _backoff(
        self, handle: TaskHandle, attempt: int, floor: float | None, error: BaseException
    ) -> None:
        delay = self._transport.retry.backoff(attempt, self._rng, floor)
        self._retries += 1
        self._emit(EventKind.RETRIED, handle, error=type(error).__name__, delay=delay)
        await anyio.sleep(delay)

    # --- synchronous calls -------------------------------------------------------------------

    async def _run_sync(self, flight: _Flight) -> None:
        """One synchronous generation, resolving its handle; runs in the client's task group."""
        request, handle, lane = flight.request, flight.handle, flight.lane
        assert request is not None and lane is not None and flight.sync_scope is not None  # noqa: S101
        if handle.done():  # cancelled before this coroutine first ran: nothing was sent
            return
        self._submitted += 1
        self._emit(EventKind.SUBMITTED, handle)
        handle._set_status(TaskStatus.RUNNING)  # noqa: SLF001
        attempts = 0
        with flight.sync_scope:
            try:
                while True:
                    attempts += 1
                    try:
                        self._requests["sync"] += 1
                        response = await self._transport.send(
                            PoolKind.LONG, "POST", request.protocol.path, body=request.body
                        )
                    except ConnectFailedError as exc:
                        if attempts >= self._transport.retry.attempts:
                            raise
                        await self._backoff(handle, attempts, None, exc)
                        continue
                    except TransportError as exc:
                        self._uncertain += 1
                        raise self._uncertain_error(request, str(exc)) from exc
                    if response.ok and response.body is not None:
                        lane.on_success()
                        snapshot = TaskSnapshot.from_json(response.body)
                        self._finish(flight, snapshot)
                        return
                    error = response.error()
                    if response.status == 429 and response.retryable:  # noqa: PLR2004
                        self._throttled += 1
                        lane.on_throttled(response.retry_after)
                        self._emit(EventKind.THROTTLED, handle, retry_after=response.retry_after)
                        if attempts >= max(8, self._transport.retry.attempts):
                            raise error
                        await lane.acquire_submit()
                        continue
                    if response.status == 503:  # noqa: PLR2004
                        if attempts >= self._transport.retry.attempts:
                            raise error
                        await self._backoff(handle, attempts, response.retry_after, error)
                        continue
                    if response.ok or response.status >= 500:  # noqa: PLR2004
                        self._uncertain += 1
                        raise self._uncertain_error(request, str(error)) from error
                    raise error
            except QwenImageError as exc:
                self._end_flight(flight, exc)
            except Exception as exc:  # a bug must fail this handle, not the client's host
                logger.exception("synchronous generation failed unexpectedly")
                self._end_flight(flight, exc)
        if flight.sync_scope.cancelled_caught:
            self._end_flight(
                flight, TaskCanceledError("the synchronous call was cancelled", task_id=None)
            )

    # --- polling -----------------------------------------------------------------------------

    async def _poll(self, handle: TaskHandle) -> PollOutcome:
        """One query of one task, for the scheduler; never raises."""
        flight = self._flights.get(handle)
        task_id = handle.task_id
        if flight is None or task_id is None:
            return PollOutcome.FINISHED
        self._requests["poll"] += 1
        try:
            response = await self._transport.send(PoolKind.CONTROL, "GET", f"/tasks/{task_id}")
        except TransportError as exc:
            self._retries += 1
            self._emit(EventKind.RETRIED, handle, error=type(exc).__name__)
            return PollOutcome.RETRY
        if response.status == 429:  # noqa: PLR2004
            self._throttled += 1
            self._emit(EventKind.THROTTLED, handle, retry_after=response.retry_after)
            return PollOutcome.throttled(response.retry_after)
        if response.status >= 500 or (response.ok and response.body is None):  # noqa: PLR2004
            self._retries += 1
            self._emit(EventKind.RETRIED, handle, status=response.status)
            return PollOutcome.RETRY
        if not response.ok:
            self._end_flight(flight, response.error())
            return PollOutcome.FINISHED
        assert response.body is not None  # noqa: S101
        self._polls += 1
        handle.polls += 1
        snapshot = TaskSnapshot.from_json(response.body, task_id=task_id)
        self._emit(EventKind.POLLED, handle, status=snapshot.status.value)
        if not snapshot.status.is_terminal:
            if snapshot.status is TaskStatus.RUNNING and handle.status is not TaskStatus.RUNNING:
                handle._set_status(TaskStatus.RUNNING)  # noqa: SLF001
                self._emit(EventKind.RUNNING, handle)
            return PollOutcome.PENDING
        if snapshot.duration is not None and handle.model is not None:
            self._durations.observe(handle.model, snapshot.duration)
        self._finish(flight, snapshot)
        return PollOutcome.FINISHED

    def _finish(self, flight: _Flight, snapshot: TaskSnapshot) -> None:
        """Resolve a flight from its terminal snapshot."""
        handle = flight.handle
        task_id = snapshot.task_id
        status = snapshot.status
        if status is TaskStatus.SUCCEEDED and snapshot.urls:
            result = self._result(handle, snapshot)
            self._end_flight(flight, None, result=result)
            return
        error: QwenImageError
        if status is TaskStatus.CANCELED:
            error = TaskCanceledError("the task was cancelled", task_id=task_id)
        elif status is TaskStatus.UNKNOWN:
            error = TaskExpiredError(
                "the service does not know this task: it never existed, or it is older than "
                "the 24-hour retention",
                task_id=task_id,
            )
        else:
            failure = snapshot.failures[0] if snapshot.failures else None
            code = snapshot.code or (failure.code if failure else None)
            message = snapshot.message or (failure.message if failure else None) or "no image"
            kind = TaskModeratedError if is_moderation_code(code) else TaskFailedError
            error = kind(message, task_id=task_id, code=code)
            status = TaskStatus.FAILED
        self._end_flight(flight, error, status=status)

    def _result(self, handle: TaskHandle, snapshot: TaskSnapshot) -> GenerationResult:
        stem = snapshot.task_id or snapshot.request_id or "image"
        fetcher = _EventfulFetcher(self._downloader, lambda path: self._emit(
            EventKind.DOWNLOADED, handle, path=str(path)
        ))
        images = tuple(
            GeneratedImage(
                url=url,
                actual_prompt=actual,
                index=index,
                name=f"{stem}-{index}.png",
                fetcher=fetcher,
            )
            for index, url, actual in snapshot.urls
        )
        return GenerationResult(
            images=images,
            failures=snapshot.failures,
            task_id=snapshot.task_id,
            request_id=snapshot.request_id,
            model=handle.model or "",
            prompt=snapshot.prompt or handle.prompt,
            usage=snapshot.usage,
            submitted_at=snapshot.submitted_at,
            scheduled_at=snapshot.scheduled_at,
            finished_at=snapshot.finished_at,
        )

    def _end_flight(
        self,
        flight: _Flight,
        error: BaseException | None,
        *,
        result: GenerationResult | None = None,
        status: TaskStatus | None = None,
    ) -> None:
        """The one place a generation ends: slot released, polling stopped, handle resolved."""
        handle = flight.handle
        self._flights.pop(handle, None)
        self._release_slot(flight)
        if self._scheduler is not None:
            self._scheduler.remove(handle)
        if flight.sync_scope is not None:
            flight.sync_scope.cancel()
        if handle.done():
            return
        if result is not None:
            handle._resolve(result)  # noqa: SLF001
        else:
            assert error is not None  # noqa: S101
            handle._fail(error, status)  # noqa: SLF001
        final = handle.status
        self._finished[final.value if result is not None or status else "ERROR"] += 1
        self._emit(EventKind.FINISHED, handle, error=type(error).__name__ if error else None)

    # --- cancelling --------------------------------------------------------------------------

    async def _cancel(self, handle: TaskHandle) -> None:
        flight = self._flights.get(handle)
        if flight is None:
            return
        cancelled = False
        if handle.task_id is not None:
            cancelled = await self._remote_cancel(handle.task_id)
        self._end_flight(
            flight,
            TaskCanceledError(
                "cancelled" + ("" if cancelled or handle.task_id is None else " locally; the "
                "service could not cancel it (no longer PENDING), so it may still finish and bill"),
                task_id=handle.task_id,
            ),
            status=TaskStatus.CANCELED if cancelled or handle.task_id is None else None,
        )

    async def _remote_cancel(self, task_id: str) -> bool:
        await self._spend_query()
        self._requests["cancel"] += 1
        try:
            await self._transport.call(
                "POST", f"/tasks/{task_id}/cancel", on_retry=self._count_retry
            )
        except QwenImageError as exc:
            # 400 UnsupportedOperation: the task is not PENDING any more. Anything else that
            # outlasted the retries leaves it running too; the caller learns it from the status.
            logger.debug("remote cancel of task %s failed: %s", task_id, exc)
            return False
        return True

    # --- helpers -----------------------------------------------------------------------------

    async def _spend_query(self) -> None:
        """Take one query from the global budget shared with the scheduler's polls."""
        assert self._budget is not None  # noqa: S101
        await self._budget.acquire()

    async def _count_retry(self, response: Response | None, delay: float) -> None:
        self._retries += 1
        if response is not None and response.status == 429:  # noqa: PLR2004
            self._throttled += 1

    def _emit(self, kind: EventKind, handle: TaskHandle, **detail: Any) -> None:
        event = TaskEvent(
            kind=kind,
            model=handle.model,
            task_id=handle.task_id,
            status=handle.status,
            at=time.time(),
            detail=detail,
        )
        logger.debug("%s task=%s model=%s %s", kind.value, handle.task_id, handle.model, detail)
        for hook in self._hooks:
            try:
                hook(event)
            except Exception:
                logger.exception("an event hook raised; ignoring it")


@attrs.frozen
class _EventfulFetcher:
    """The downloader, reporting each saved image as a `DOWNLOADED` event of its task."""

    downloader: Downloader
    on_saved: Callable[[Path], object]

    async def read(self, url: str) -> bytes:
        return await self.downloader.read(url)

    async def save(self, url: str, destination: str | Path, *, default_name: str) -> Path:
        path = await self.downloader.save(url, destination, default_name=default_name)
        self.on_saved(path)
        return path


def _positive_number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _nonempty_str(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _created_task_id(response: Response) -> str | None:
    if not response.ok or response.body is None:
        return None
    output = response.body.get("output")
    task_id = output.get("task_id") if isinstance(output, Mapping) else None
    return task_id if isinstance(task_id, str) and task_id else None


def _list_time(value: datetime) -> str:
    # The list endpoint takes Beijing time as YYYYMMDDhhmmss (dashscope-api.md §5.4).
    aware = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return aware.astimezone(timezone(timedelta(hours=8))).strftime("%Y%m%d%H%M%S")


def _name_from_url(url: str) -> str:
    name = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return name or "image.png"

