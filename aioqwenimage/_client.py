"""
`Client`: lifecycle, wiring and the generation methods. One client runs thousands of generations
in one event loop.

A generation's path, one module per step (``docs/architecture.md`` draws it): validate and route
(``_requests``) -> a slot and a submission token (``_admission``, ``_lane``, ``_limits``) -> the
create, re-sent only when provably nothing was created (``_paid``) -> the live registry
(``_registry``), polled by the one scheduler (``_scheduler``, ``_polling``) and swept
(``_sweep``) -> the registry ends it: slot released, handle resolved. ``_wiring`` builds these
parts; the task-list, recovery and file methods come from ``_account``.

Background work (the scheduler, the sweeper, creates, synchronous calls) runs in one anyio task
group owned by a host task (``_host``) that `aclose` stops and awaits, so closing leaves nothing
running.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import random
import warnings
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar

import aiohttp
import anyio

from aioqwenimage import _config, _wiring
from aioqwenimage._account import AccountMethods
from aioqwenimage._coordination import Coordinator
from aioqwenimage._errors import (
    ClientClosedError,
    TaskTimeoutError,
)
from aioqwenimage._events import EventHook
from aioqwenimage._handle import TaskHandle
from aioqwenimage._map import map_outcomes
from aioqwenimage._models import (
    ClientStats,
    GenerationResult,
    Outcome,
)
from aioqwenimage._notifications import Notifications
from aioqwenimage._requests import ImageInput, encode_images, prepare
from aioqwenimage._settings import Limits, PollPolicy, PoolLimits, RetryPolicy, Timeouts
from aioqwenimage._timeouts import wait_timeout
from aioqwenimage._transport import Transport

__all__ = ["Client"]

logger = logging.getLogger("aioqwenimage")

DEFAULT_MODEL: Final = "qwen-image-plus"
_ClientT = TypeVar("_ClientT", bound="Client")


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPENED = "opened"
    CLOSED = "closed"


class Client(AccountMethods):
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
            It keeps its own proxy settings unless `proxy` is given.
        proxy: An ``http://`` or ``https://`` proxy URL (credentials may be in it) for API
            calls and downloads alike; it overrides the environment.
        trust_env: Read ``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY`` and ``NO_PROXY`` (as
            httpx does) when `proxy` is not given. ``False`` connects directly.
        event_hooks: Callables invoked with every `TaskEvent` (keep them fast; they run inline).
        seed: Seeds the jitter, for reproducible schedules in tests.
        time_scale: For emulators only: multiplies every delay the client waits for (the poll
            schedule, rate windows, backoffs) to match an emulator's compressed time. Leave it
            at 1 against the real service. Network timeouts are not scaled. Default
            ``$AIOQWENIMAGE_TIME_SCALE`` when `base_url` is a loopback address, else 1.
        notifications: Learn task completions from EventBridge's events (`Notifications`),
            polling only as the fallback; expose `notifications` at the event target's URL.
        coordinator: Where the account's limits are kept: by default in this process; a
            `aioqwenimage.redis.RedisCoordinator` shares them (and the sweeps) with every
            process on the same key. One coordinator per client.
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
        time_scale: float | None = None,
        proxy: str | None = None,
        trust_env: bool = True,
        notifications: Notifications | None = None,
        coordinator: Coordinator | None = None,
    ) -> None:
        self._region = _config.resolve_region(region)
        self._base_url = _config.resolve_base_url(base_url, self._region)
        time_scale = _config.resolve_time_scale(time_scale, self._base_url)
        self._key = _config.resolve_key(api_key)
        rng = random.Random(seed)
        transport = Transport(
            base_url=self._base_url,
            api_key=self._key.reveal() if self._key else "",
            workspace=workspace,
            pools=pools,
            timeouts=timeouts,
            retry=(retry or RetryPolicy()).scaled(time_scale),
            session=session,
            rng=rng,
            proxy=proxy,
            trust_env=trust_env,
        )
        self._parts = _wiring.build(
            transport,
            limits=limits or Limits(),
            poll_policy=(poll or PollPolicy()).scaled(time_scale),
            region=self._region,
            time_scale=time_scale,
            rng=rng,
            hooks=tuple(event_hooks),
            # An emulator on this machine serves its files over plain HTTP on loopback.
            strict_results=not _config.is_loopback_url(self._base_url),
            notifications=notifications,
            coordinator=coordinator,
            account=_config.account_name(self._key),
        )
        self.notifications = notifications
        """The receiver of completion notifications given to this client, if any."""
        self._state = _State.UNOPENED

    # --- lifecycle ---------------------------------------------------------------------------

    # A TypeVar, not typing.Self: that needs Python 3.11 or a typing_extensions dependency.
    async def __aenter__(self: _ClientT) -> _ClientT:  # noqa: PYI019
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
        """Open on first use: sessions, the poll scheduler, the host of background work."""
        if self._state is _State.OPENED:
            self._parts.host.check_loop()
            return
        if self._state is _State.CLOSED:
            msg = "the client is closed; create a new Client"
            raise ClientClosedError(msg, task_id=None)
        if self._key is None:
            raise _config.missing_key_error()
        self._state = _State.OPENED
        _wiring.start(self._parts)

    async def aclose(self) -> None:
        """
        Stop all background work and close the connections this client opened.

        From the moment it is called no generation request leaves, and every call waiting for
        the limits, every handle not yet finished, and every later call ends with
        `ClientClosedError`. Creates already on the wire are followed to their answers; the
        tasks of `generate` and `map` (and of those creates) are cancelled remotely when
        ``PENDING``. Tasks whose handles `submit` or `attach` gave out go on remotely; a new
        client can `attach` them (the error carries ``task_id``).

        Raises:
            WrongEventLoopError: Called in another event loop than the client's.
        """
        if self._state is not _State.OPENED:
            self._state = _State.CLOSED
            return
        self._parts.host.check_loop()
        self._state = _State.CLOSED
        # In this order, with no await between: no waiter is handed a slot the close frees.
        parts = self._parts
        parts.admission.close()
        parts.paid.close(parts.registry.close())
        with anyio.CancelScope(shield=True):
            await parts.paid.drain(parts.queries.cancel)
            await parts.host.stop()
            await parts.transport.aclose()

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
        return (
            f"<Client state={self._state.value} base_url={self._base_url!r} "
            f"in_flight={self._parts.registry.live}>"
        )

    # --- the public API ----------------------------------------------------------------------

    async def generate(
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
        timeout: float | None = None,  # noqa: ASYNC109 - DESIGN.md's API, like handle.wait()
        save_to: str | Path | None = None,
    ) -> GenerationResult:
        """
        Generate images and wait for them: `submit` plus ``await handle``.

        This call owns its task: if it ends without a result (its `timeout` passed, the
        coroutine was cancelled by anyio or asyncio, the client closed), the task is cancelled
        remotely while ``PENDING``; a ``RUNNING`` task cannot be (the service finishes and bills
        it), so the client polls it to its end to free its slot and reports
        `EventKind.UNOBSERVED`. A create already sent when that happens is followed to its
        answer first, in the client's own task group.

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
            timeout: Seconds to wait for the result at most (``None`` or ``inf``: no limit).
            save_to: A directory to save every image into before returning.

        Raises:
            InvalidRequestError: Rejected by the catalog or a bad `timeout` (before any I/O),
                or by the service.
            TaskTimeoutError: `timeout` passed; its message says whether the task was
                cancelled remotely or still runs (and bills).
            ClientClosedError: The client was closed first.
            SubmissionUncertainError: The create's outcome is unknown; it was not re-sent.
            TaskFailedError: The task failed (`TaskModeratedError` if moderation failed it).
            QwenImageError: Any other failure (see the error tree).
        """
        wait_timeout(timeout)
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
        self._parts.cancelling.own(handle)
        try:
            result = await handle.wait(timeout)
        except TaskTimeoutError:
            raise await self._parts.cancelling.give_up(handle, timeout) from None
        except BaseException:
            if not handle.done():
                await self._parts.cancelling.abandon(handle)
            raise
        if save_to is not None:
            await self.save_images(result, save_to)
        return result

    async def submit(
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
        encoded = await encode_images(images, model=model)
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
        return await self._parts.paid.start(request, on_sending)

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
        return self._parts.registry.attach(task_id, model)

    async def map(
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
        (its own ``model`` and ``timeout`` included); `parameters` are the defaults for every
        item. A failed item yields an outcome with its error; it never stops the others.
        Leaving the loop early cancels the items still running. If the client is closed
        meanwhile, every item not yet reported yields an outcome with `ClientClosedError`.

        Args:
            prompts: The items.
            model: The default model.
            concurrency: Items in progress at once (waiting for limits included); default:
                twice the model's in-flight limit (at least 16), as for ``batch``; 64 for
                models without one.
            save_to: A directory to save every image into.
            parameters: Default generation parameters, as for `generate`.
        """
        self._ensure_open()
        outcomes = map_outcomes(
            self,
            self._parts.admission,
            self._parts.cancelling,
            list(prompts),
            model=model,
            concurrency=concurrency,
            save_to=save_to,
            parameters=parameters,
        )
        # Closed explicitly: leaving the loop early must cancel the items now, not whenever
        # the inner generator happens to be collected.
        async with contextlib.aclosing(outcomes):
            async for outcome in outcomes:
                yield outcome

    async def cancel(self, task_id: str) -> bool:
        """
        Cancel a task by id, remotely. Only a ``PENDING`` task can be cancelled.

        Returns:
            Whether the service cancelled it (``False``: it was no longer pending).
        """
        self._ensure_open()
        return await self._parts.cancelling.cancel_id(task_id)

    @property
    def stats(self) -> ClientStats:
        """A snapshot of the client's counters."""
        return self._parts.events.snapshot(self._parts.admission.in_flight())


def _nonempty_str(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())
