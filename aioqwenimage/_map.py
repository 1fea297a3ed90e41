"""
`Client.map`: many generations, one outcome per item, in completion order.

Workers only submit; an outcome is produced when a handle finishes, so a generation in flight
costs its handle, not a coroutine waiting on it. No item may vanish: each yields exactly one
outcome, whether it succeeded, failed, timed out, or the client was closed under it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from collections.abc import AsyncGenerator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from aioqwenimage._errors import (
    ClientClosedError,
    InvalidRequestError,
    QwenImageError,
    TaskTimeoutError,
)
from aioqwenimage._handle import TaskHandle
from aioqwenimage._models import Outcome
from aioqwenimage._requests import prepare
from aioqwenimage._timeouts import wait_timeout

if TYPE_CHECKING:
    from aioqwenimage._admission import Admission
    from aioqwenimage._cancelling import Cancelling
    from aioqwenimage._client import Client

__all__ = ["map_outcomes"]

logger = logging.getLogger("aioqwenimage")


async def map_outcomes(
    client: Client,
    admission: Admission,
    cancelling: Cancelling,
    items: Sequence[str | Mapping[str, Any]],
    *,
    model: str,
    concurrency: int | None,
    save_to: str | Path | None,
    parameters: Mapping[str, Any],
) -> AsyncGenerator[Outcome, None]:
    """The outcomes of `Client.map`; its docstring says what they are."""
    if concurrency is None:
        configured = admission.lane(prepare("concurrency", model=model)).configured
        # Twice the slots, as `batch` has: a finished item gives its slot back at once (when a
        # sweep sees it end) but may wait long for the query that fetches its result, and then
        # saves its images; with only a few more items than slots, slots idled behind them.
        concurrency = max(16, 2 * configured) if configured else 64
    send, receive = anyio.create_memory_object_stream[Outcome](max_buffer_size=math.inf)
    scope = anyio.CancelScope()
    room = anyio.Semaphore(concurrency)
    pending: dict[int, TaskHandle] = {}  # submitted, outcome not reported yet
    next_index = iter(range(len(items)))
    unreported = set(range(len(items)))
    all_reported = anyio.Event()
    if not items:
        all_reported.set()

    def report(outcome: Outcome) -> None:
        # Synchronous (the buffer is unbounded), so that no cancellation can lose one.
        if outcome.index not in unreported:
            return
        unreported.discard(outcome.index)
        pending.pop(outcome.index, None)
        room.release()
        if not unreported:
            all_reported.set()
        # The consumer may have left the loop: then the outcome has nowhere to go.
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            send.send_nowait(outcome)

    def prompt_of(index: int) -> str:
        item = items[index]
        return str(item.get("prompt", "") if isinstance(item, Mapping) else item)

    async def finish(index: int, handle: TaskHandle, where: Any, limit: Any) -> None:
        # Runs once the handle is done (or from the start, to enforce an item's timeout).
        prompt = handle.prompt or ""
        try:
            try:
                result = await handle.wait(limit)
            except TaskTimeoutError:
                raise await cancelling.give_up(handle, limit) from None
            if where is not None:
                await client.save_images(result, where)
        except QwenImageError as exc:
            outcome = Outcome(
                index=index,
                prompt=prompt,
                error=exc,
                # A failed save (now a QwenImageError with no task_id) still names its task.
                task_id=getattr(exc, "task_id", None) or handle.task_id,
            )
        except Exception as exc:  # noqa: BLE001 - e.g. an unwritable save_to: this item's
            # failure, which must not escape into the client's task group
            outcome = Outcome(
                index=index, prompt=prompt, error=_wrapped(exc), task_id=handle.task_id
            )
        else:
            outcome = Outcome(index=index, prompt=prompt, result=result, task_id=result.task_id)
        report(outcome)

    async def worker(tg: anyio.abc.TaskGroup) -> None:
        # Workers only submit: a generation in flight costs its handle, not a coroutine
        # waiting on it (thousands of those would hold megabytes of stack).
        for index in next_index:
            await room.acquire()
            item = items[index]
            params = dict(parameters)
            params.update(item if isinstance(item, Mapping) else {"prompt": item})
            prompt = params.pop("prompt", "")
            params.setdefault("model", model)
            where, timeout = params.pop("save_to", save_to), params.pop("timeout", None)
            try:
                wait_timeout(timeout)
                handle = await client.submit(prompt, **params)
            except QwenImageError as exc:
                report(Outcome(index=index, prompt=str(prompt), error=exc))
                continue
            except TypeError as exc:  # an unknown parameter in an item
                error = InvalidRequestError(f"item {index}: {exc}", parameter="item")
                report(Outcome(index=index, prompt=str(prompt), error=error))
                continue
            except Exception as exc:  # noqa: BLE001 - never into the client's task group
                report(Outcome(index=index, prompt=str(prompt), error=_wrapped(exc)))
                continue
            cancelling.own(handle)
            pending[index] = handle
            if timeout is None:
                handle._when_done(  # noqa: SLF001 - the client's own handle
                    functools.partial(started, tg, index, handle, where)
                )
            else:
                tg.start_soon(finish, index, handle, where, timeout)

    def started(tg: anyio.abc.TaskGroup, index: int, handle: TaskHandle, where: Any) -> None:
        if not scope.cancel_called:  # after the consumer left, nobody wants the outcome
            tg.start_soon(finish, index, handle, where, None)

    async def run() -> None:
        try:
            with scope:
                async with anyio.create_task_group() as tg:
                    async with anyio.create_task_group() as workers:
                        for _ in range(min(concurrency, len(items), 32)):
                            workers.start_soon(worker, tg)
                    # Outcomes come from handles finishing, not from tasks this group
                    # waits for: keep going until every item has been reported.
                    await all_reported.wait()
        finally:
            if not scope.cancel_called:
                # Not the consumer leaving, so the client is closing: what was not
                # reported yet ends now, each item with its own outcome.
                for index in sorted(unreported):
                    handle = pending.get(index)
                    task_id = handle.task_id if handle is not None else None
                    error = ClientClosedError(
                        "the client was closed before this item ended", task_id=task_id
                    )
                    report(Outcome(index=index, prompt=prompt_of(index), error=error))
            send.close()
        # Left early: what was submitted and not reported is cancelled, like generate()'s
        # task when generate() is cancelled (remotely while PENDING), shielded, best effort.
        with anyio.CancelScope(shield=True), anyio.move_on_after(30):
            async with anyio.create_task_group() as cancels:
                for handle in list(pending.values()):
                    cancels.start_soon(cancelling.abandon, handle)

    (await cancelling.task_group()).start_soon(run)
    try:
        async for outcome in receive:
            yield outcome
    finally:
        scope.cancel()
        receive.close()


def _wrapped(exc: Exception) -> QwenImageError:
    """An unexpected error of one `map` item, as that item's outcome."""
    logger.warning("a map item failed unexpectedly: %r", exc)
    error = QwenImageError(f"{type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error
