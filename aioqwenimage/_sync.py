"""
`SyncClient`: the blocking face of `Client`, for scripts, notebooks, Django views, Celery tasks.

One `Client` lives on one event loop in a background thread (an anyio blocking portal); every
method hands its coroutine to that loop and blocks the calling thread until it finishes. So any
number of threads share one connection pool, one set of rate limits and one poll scheduler,
exactly as coroutines share an async client, and results are the async client's own records.

A caller interrupted while it waits (Ctrl-C) cancels the coroutine it was waiting for, and waits
for that cancellation to finish: `generate` cancels its task remotely, as when its coroutine is
cancelled, before the interrupt propagates, so a paid task is not left running unwatched.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from aioqwenimage._client import DEFAULT_MODEL, Client
from aioqwenimage._coordination import Coordinator
from aioqwenimage._errors import SubmissionUncertainError
from aioqwenimage._events import EventHook
from aioqwenimage._handle import TaskHandle
from aioqwenimage._loop_thread import LoopThread
from aioqwenimage._models import (
    ClientStats,
    GeneratedImage,
    GenerationResult,
    Outcome,
    TaskInfo,
    TaskStatus,
)
from aioqwenimage._notifications import Notifications
from aioqwenimage._requests import ImageInput
from aioqwenimage._resolver import UncertainResolution
from aioqwenimage._settings import Limits, PollPolicy, PoolLimits, RetryPolicy, Timeouts

__all__ = ["SyncClient", "SyncTaskHandle"]

_SyncClientT = TypeVar("_SyncClientT", bound="SyncClient")


class SyncTaskHandle:
    """
    One generation in flight, for blocking code: `result` waits for its `GenerationResult`.

    Handles come from `SyncClient.submit` and `SyncClient.attach`. Any thread may wait on one.

    Attributes:
        model: The model generating the images (``None`` for an attached task of unknown model).
    """

    __module__ = "aioqwenimage"

    def __init__(self, handle: TaskHandle, loop: LoopThread) -> None:
        self._handle = handle
        self._loop = loop
        self.model: str | None = handle.model

    @property
    def task_id(self) -> str | None:
        """The remote task's id; ``None`` for a synchronous call, which has none."""
        return self._handle.task_id

    @property
    def status(self) -> TaskStatus:
        """The last known status."""
        return self._handle.status

    @property
    def prompt(self) -> str | None:
        """The prompt, when this process submitted it."""
        return self._handle.prompt

    def done(self) -> bool:
        """Whether the outcome is known (a result or an error)."""
        return self._handle.done()

    def wait(self, timeout: float | None = None) -> GenerationResult:
        """
        Block until the result is there, like `TaskHandle.wait`.

        Args:
            timeout: Seconds to wait at most; ``None`` waits as long as it takes.

        Raises:
            TaskTimeoutError: `timeout` passed first. The task goes on; wait again if you like.
            QwenImageError: What ended the generation (see `TaskHandle.wait`).
        """
        return self._loop.run(functools.partial(self._handle.wait, timeout))

    result = wait

    def cancel(self) -> bool:
        """
        Cancel the generation, remotely while still ``PENDING``; see `TaskHandle.cancel`.

        Returns:
            Whether the service cancelled the task, so that it will not be billed.
        """
        return self._loop.run(self._handle.cancel)

    def __repr__(self) -> str:
        return repr(self._handle).replace("<TaskHandle", "<SyncTaskHandle", 1)


class SyncClient:
    """
    A blocking client: `Client`'s methods and results, for code without an event loop.

    Use it as ``with aioqwenimage.SyncClient() as client:``, or call `close` when done. It runs
    one `Client` on an event loop in a background thread; it is safe to share between threads.
    Options are those of `Client` (except `session`: an aiohttp session belongs to the loop that
    made it). Event hooks run on the background thread; a `Notifications` receiver may be
    served from any thread. `submit` has no ``on_sending`` hook: it
    is awaited on the client's loop, so it is an async client's feature.

    Raises:
        ValueError: An option is invalid (see `Client`).
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
        proxy: str | None = None,
        trust_env: bool = True,
        event_hooks: Iterable[EventHook] = (),
        seed: int | None = None,
        time_scale: float | None = None,
        notifications: Notifications | None = None,
        coordinator: Coordinator | None = None,
    ) -> None:
        make = functools.partial(
            Client,
            api_key=api_key,
            region=region,
            base_url=base_url,
            workspace=workspace,
            limits=limits,
            poll=poll,
            timeouts=timeouts,
            pools=pools,
            retry=retry,
            proxy=proxy,
            trust_env=trust_env,
            event_hooks=tuple(event_hooks),
            seed=seed,
            time_scale=time_scale,
            notifications=notifications,
            coordinator=coordinator,
        )
        self.notifications = notifications
        """The receiver of completion notifications, if any: serve it from any thread or loop
        (what it learns is handed to the client's own loop)."""
        self._loop = LoopThread()
        try:
            # Built on the loop's thread: everything the client creates belongs to that loop.
            self._client: Client = self._loop.call(make)
        except BaseException:
            self._loop.stop(_nothing)
            raise

    # --- lifecycle ---------------------------------------------------------------------------

    def __enter__(self: _SyncClientT) -> _SyncClientT:  # noqa: PYI019 - see Client.__aenter__
        self._loop.run(self._client.__aenter__)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """
        Close the client and end its thread; see `Client.aclose`. Idempotent, and thread-safe:
        calls still waiting in other threads, and every later call, get `ClientClosedError`.
        """
        self._loop.stop(self._client.aclose)

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        loop = getattr(self, "_loop", None)
        client = getattr(self, "_client", None)
        if loop is not None and client is not None and loop.stop_soon(client.aclose):
            _warn(
                f"unclosed {self!r}; use 'with SyncClient()' or 'client.close()'",
                ResourceWarning,
                stacklevel=2,
                source=self,
            )

    def __repr__(self) -> str:
        return repr(self._client).replace("<Client", "<SyncClient", 1)

    # --- the public API, as `Client`'s -------------------------------------------------------

    def generate(
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
        Generate images and wait for them; see `Client.generate` for the parameters and errors.

        Interrupting the wait (Ctrl-C) cancels the task remotely while it is still ``PENDING``.
        """
        return self._loop.run(
            functools.partial(
                self._client.generate,
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
                timeout=timeout,
                save_to=save_to,
            )
        )

    def submit(
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
    ) -> SyncTaskHandle:
        """Start a generation and return its handle once the task exists; see `Client.submit`."""
        handle = self._loop.run(
            functools.partial(
                self._client.submit,
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
        )
        return SyncTaskHandle(handle, self._loop)

    def attach(self, task_id: str, *, model: str | None = None) -> SyncTaskHandle:
        """A handle for a task created earlier; see `Client.attach`."""
        handle = self._loop.call(functools.partial(self._client.attach, task_id, model=model))
        return SyncTaskHandle(handle, self._loop)

    def map(
        self,
        prompts: Iterable[str | Mapping[str, Any]],
        *,
        model: str = DEFAULT_MODEL,
        concurrency: int | None = None,
        save_to: str | Path | None = None,
        **parameters: Any,
    ) -> Iterator[Outcome]:
        """
        Generate for many prompts; an iterator of `Outcome`, in completion order.

        See `Client.map`. Leaving the loop early (``break``, an exception) cancels the items
        still running.
        """
        return self._iterate(
            self._client.map(
                prompts, model=model, concurrency=concurrency, save_to=save_to, **parameters
            )
        )

    def cancel(self, task_id: str) -> bool:
        """Cancel a task by id, remotely; see `Client.cancel`."""
        return self._loop.run(functools.partial(self._client.cancel, task_id))

    def list_tasks(
        self,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        model: str | None = None,
        status: TaskStatus | str | None = None,
        page_size: int = 50,
    ) -> Iterator[TaskInfo]:
        """The account's tasks, fetched page by page as you iterate; see `Client.list_tasks`."""
        return self._iterate(
            self._client.list_tasks(
                start=start, end=end, model=model, status=status, page_size=page_size
            )
        )

    def resolve_uncertain(
        self, error: SubmissionUncertainError, *, wait: float | None = None
    ) -> UncertainResolution:
        """
        Find the task an uncertain create made, or show that it made none; see
        `Client.resolve_uncertain`. The resolution's ``handle`` belongs to the client's loop:
        for a blocking handle, `attach` its ``task_id``.
        """
        return self._loop.run(functools.partial(self._client.resolve_uncertain, error, wait=wait))

    def save_images(self, result: GenerationResult, directory: str | Path) -> list[Path]:
        """Save every image of `result` into `directory`; see `Client.save_images`."""
        return self._loop.run(functools.partial(self._client.save_images, result, directory))

    def save_image(self, image: GeneratedImage, destination: str | Path) -> Path:
        """Stream one image of this client's results to disk; see `GeneratedImage.save`."""
        return self._loop.run(functools.partial(image.save, destination))

    def read_image(self, image: GeneratedImage) -> bytes:
        """Download one image of this client's results; see `GeneratedImage.read`."""
        return self._loop.run(image.read)

    def download_image(self, url: str, destination: str | Path | None = None) -> bytes | Path:
        """Fetch any result URL; see `Client.download_image`."""
        return self._loop.run(functools.partial(self._client.download_image, url, destination))

    @property
    def stats(self) -> ClientStats:
        """A snapshot of the client's counters."""
        return self._loop.call(lambda: self._client.stats)

    def _iterate(self, source: Any) -> Iterator[Any]:
        try:
            while True:
                try:
                    item = self._loop.run(source.__anext__)
                except StopAsyncIteration:
                    return
                yield item
        finally:
            # Closing the async generator on its loop runs its cleanup (map cancels what is
            # still running). A client closed meanwhile has already stopped everything.
            with contextlib.suppress(RuntimeError):
                self._loop.run(source.aclose)


async def _nothing() -> None:
    """Nothing to close: the client was never built."""
