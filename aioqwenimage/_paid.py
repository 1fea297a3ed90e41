"""
Paid requests: the creates of async tasks and the synchronous calls, each of which orders images.

A paid request is re-sent only when it provably created nothing: the connection was refused, a 429
``Throttling*``, a 503. Any other failure after it may have left raises `SubmissionUncertainError`:
a paid image is never silently ordered twice. A create runs in the client's task group, shielded
once it may be on the wire, so that whatever happens to its caller (a timeout, ``Task.cancel``,
a closing client) its answer is learnt: a task it made is then registered, or cancelled when
nobody will ever hold its handle. A synchronous call is abandoned instead when its caller leaves:
its result exists only in the answer.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

import anyio
import anyio.abc

from aioqwenimage._admission import Admission, ClosedAdmission
from aioqwenimage._answers import Verdict, verdict
from aioqwenimage._errors import (
    ClientClosedError,
    QwenImageError,
    SubmissionUncertainError,
    TaskCanceledError,
    TransportError,
)
from aioqwenimage._events import Recorder
from aioqwenimage._handle import TaskHandle
from aioqwenimage._models import EventKind, TaskStatus
from aioqwenimage._registry import Flight, Registry, closed_error
from aioqwenimage._requests import PreparedRequest
from aioqwenimage._safety import safe_name
from aioqwenimage._snapshot import TaskSnapshot
from aioqwenimage._transport import ConnectFailedError, PoolKind, Response, Transport

__all__ = ["PaidRequests"]

logger = logging.getLogger("aioqwenimage")

TaskGroupGetter = Callable[[], Awaitable[anyio.abc.TaskGroup]]
HandleCanceller = Callable[[TaskHandle], Coroutine[Any, Any, bool]]


class _CallerGone(Exception):  # noqa: N818 - a signal inside this module, never raised out
    """The caller of a create left while nothing had been created: stop quietly."""


class PaidRequests:
    """Starts generations: admission, the paid request, and registering what it made."""

    def __init__(
        self,
        transport: Transport,
        admission: Admission,
        registry: Registry,
        events: Recorder,
        *,
        task_group: TaskGroupGetter,
        cancel: HandleCanceller,
        rng: random.Random,
    ) -> None:
        self._transport = transport
        self._admission = admission
        self._registry = registry
        self._events = events
        self._task_group = task_group
        self._cancel = cancel
        self._rng = rng
        self._jobs: dict[Flight, anyio.Event] = {}  # creates running in the task group
        self._orphans: list[str] = []  # PENDING tasks nobody holds, to cancel while closing
        self._tg: anyio.abc.TaskGroup | None = None

    def __repr__(self) -> str:
        return f"<PaidRequests creates_in_air={len(self._jobs)}>"

    async def start(
        self,
        request: PreparedRequest,
        on_sending: Callable[[], Awaitable[object]] | None = None,
    ) -> TaskHandle:
        """Admit and start one generation; returns once the task exists (or the call started)."""
        _check_open(self._registry)
        flight = self._registry.new_flight(request, self._admission.lane(request), on_sending)
        tg = self._tg = await self._task_group()
        if request.protocol.is_async:
            return await self._create_in_group(tg, flight)
        # Admitted here, so that submit() returns once the limits let the call go.
        await self._admit(flight)
        flight.sync_scope = anyio.CancelScope()
        self._registry.add(flight)
        tg.start_soon(self._run_sync, flight)
        return flight.handle

    # --- closing -----------------------------------------------------------------------------

    def close(self, orphans: list[str]) -> None:
        """
        The client is closing: creates not yet on the wire are stopped; `orphans` (tasks nobody
        holds) and those of the creates still in the air are cancelled by `drain`.
        """
        self._orphans.extend(orphans)
        for flight in self._jobs:
            if not flight.sending and flight.job is not None:
                flight.job.cancel()

    async def drain(self, cancel: Callable[[str], Awaitable[bool]]) -> None:
        """
        Follow creates still on the wire to their answers, and cancel what nobody holds, each
        task as soon as its id is known: one left waiting for a slower create's answer may be
        started by the service meanwhile, and a started task can no longer be cancelled.
        """

        def cancel_known() -> None:
            task_ids, self._orphans = self._orphans, []
            for task_id in task_ids:
                tg.start_soon(cancel_one, task_id)

        async def cancel_one(task_id: str) -> None:
            with anyio.move_on_after(30):
                await cancel(task_id)

        async def after(finished: anyio.Event) -> None:
            await finished.wait()
            cancel_known()

        async with anyio.create_task_group() as tg:
            cancel_known()
            # No create starts once closed, so the jobs in the air now are all there will be.
            for finished in list(self._jobs.values()):
                tg.start_soon(after, finished)

    # --- creating tasks ----------------------------------------------------------------------

    async def _create_in_group(self, tg: anyio.abc.TaskGroup, flight: Flight) -> TaskHandle:
        """
        Run the create in the client's task group and wait for it. A caller cancelled by any
        means (anyio, or asyncio's ``Task.cancel``, which no anyio shield stops) only leaves:
        a create not yet sent is stopped, one on the wire is followed to its answer and the
        task it made is cancelled remotely when ``PENDING``, else tracked to its end.
        """
        finished = anyio.Event()
        errors: list[BaseException] = []
        flight.job = anyio.CancelScope()
        self._jobs[flight] = finished
        tg.start_soon(self._create_job, flight, finished, errors)
        try:
            await finished.wait()
        except BaseException:
            self._caller_left(flight, finished)
            raise
        if errors:
            raise errors[0]
        if flight.handle.task_id is None:  # the job was stopped from outside: the loop is ending
            raise closed_error(None)
        flight.delivered = True
        return flight.handle

    async def _create_job(
        self, flight: Flight, finished: anyio.Event, errors: list[BaseException]
    ) -> None:
        assert flight.job is not None  # noqa: S101
        try:
            with flight.job:
                if not flight.abandoned:  # the caller may have left before this first ran
                    await self._create(flight)
            if flight.job.cancelled_caught and self._registry.closed:
                errors.append(closed_error(None))
            elif self._registry.closed and flight.handle.task_id is not None:
                # Created while the client closed: its caller gets no handle, so nobody could
                # ever wait for the task; it is cancelled (when PENDING) like any orphan.
                self._orphans.append(flight.handle.task_id)
                errors.append(closed_error(flight.handle.task_id))
                if self._registry.get(flight.handle) is not None:
                    self._registry.end(flight, errors[-1])
        except _CallerGone:
            pass
        except Exception as exc:  # noqa: BLE001 - the caller's error, raised in the caller
            errors.append(exc)
            if flight.abandoned and isinstance(exc, SubmissionUncertainError):
                # Nobody will see this error, and the task it may have made has no id to cancel
                # or follow: hand it to whoever listens, so that it can be resolved.
                self._registry.emit(EventKind.LOST_TRACK, flight.handle, error=exc)
        finally:
            flight.sending = False
            flight.job = None
            self._jobs.pop(flight, None)
            finished.set()
        gone = self._registry.get(flight.handle) is None
        if flight.abandoned and not gone and not self._registry.closed:
            await self._cancel(flight.handle)

    def _caller_left(self, flight: Flight, finished: anyio.Event) -> None:
        """The caller of a create is gone: stop what was not sent, follow what was."""
        flight.abandoned = True
        if finished.is_set():
            # Created, but the caller never took the handle. (A closing client cancels it.)
            if self._registry.get(flight.handle) is not None and not self._registry.closed:
                assert self._tg is not None  # noqa: S101 - the create ran in it
                self._tg.start_soon(self._cancel, flight.handle)
        elif not flight.sending and flight.job is not None:
            flight.job.cancel()

    async def _create(self, flight: Flight) -> None:
        """Create the task; returns once it exists remotely and is registered for polling."""
        request = flight.request
        assert request is not None  # noqa: S101
        assert flight.lane is not None  # noqa: S101
        sent_at = time.time()
        response = await self._send(flight)
        task_id = _created_task_id(response)
        if task_id is None:  # a 2xx without a task id: something may exist, we cannot know
            self._admission.release(flight)
            self._events.uncertain += 1
            raise _uncertain_error(request, "the answer carried no task id", sent_at)
        flight.lane.on_success(task=True)
        assert flight.slot is not None  # noqa: S101 - `_send` returns with the slot held
        flight.slot.created = True
        self._registry.created(flight, task_id)

    async def _admit(self, flight: Flight) -> None:
        """Take a slot and a submission token; closing the client interrupts the wait."""
        try:
            await self._admission.admit(flight)
        except ClosedAdmission:
            raise closed_error(None) from None

    async def _send(self, flight: Flight, *, admitted: bool = False) -> Response:
        """
        Send a request that orders (and bills) images until it is answered with success,
        re-sending it only when it provably created nothing: the connection was refused, a 429
        ``Throttling*``, a 503. Returns the 2xx answer, with the flight's slot held.

        Args:
            admitted: The slot and the submission token of the first attempt are already taken.

        Raises:
            SubmissionUncertainError: It was sent, and what it did is unknown.
            QwenImageError: The service refused it, or the retry budget ran out.
        """
        request, lane, handle = flight.request, flight.lane, flight.handle
        assert request is not None  # noqa: S101
        assert lane is not None  # noqa: S101
        is_task = request.protocol.is_async
        retry = self._transport.retry
        attempts = 0
        while True:
            attempts += 1
            if flight.abandoned:  # the caller left, and nothing was created so far
                raise _CallerGone
            if not admitted:
                await self._admit(flight)
            try:
                admitted = False
                if flight.on_sending is not None:
                    await flight.on_sending()
                self._check_may_send(flight)
                sent_at = time.time()
                # A create is shielded and runs in the client's task group: once it may have
                # left, its outcome must be learnt whatever happens to the caller, or a created
                # (billed) task would be lost. A synchronous call is abandoned instead: its
                # result exists only in the answer.
                flight.sending = is_task
                with anyio.CancelScope(shield=is_task):
                    self._events.sent("create" if is_task else "sync")
                    response = await self._transport.send(
                        PoolKind.CONTROL if is_task else PoolKind.LONG,
                        "POST",
                        request.protocol.path,
                        body=request.body,
                        async_task=is_task,
                    )
            except ConnectFailedError as exc:
                flight.sending = False
                self._admission.release(flight)
                if attempts >= retry.attempts:
                    raise
                await self._backoff(handle, attempts, None, exc)
                continue
            except TransportError as exc:
                self._admission.release(flight)
                self._events.uncertain += 1
                why = f"the connection failed after sending: {exc}"
                raise _uncertain_error(request, why, sent_at) from exc
            except BaseException:
                self._admission.release(flight)
                raise
            outcome = verdict(response, paid=True)
            if outcome is Verdict.OK:
                return response
            error = response.error()
            if outcome in (Verdict.THROTTLED, Verdict.RETRY):
                flight.sending = False  # provably nothing was created
            if outcome is Verdict.THROTTLED:
                lane.on_throttled(
                    response.retry_after,
                    accepted=lane.accepted if is_task else None,
                    code=error.code,
                )
            self._admission.release(flight)
            if outcome is Verdict.THROTTLED:
                self._events.throttled += 1
                self._registry.emit(EventKind.THROTTLED, handle, retry_after=response.retry_after)
                if attempts >= max(8, retry.attempts):
                    raise error
                continue  # the lane's pause is the wait
            if outcome is Verdict.RETRY:  # "503 ModelUnavailable": nothing was created
                if attempts >= retry.attempts:
                    raise error
                await self._backoff(handle, attempts, response.retry_after, error)
                continue
            if outcome is Verdict.UNCERTAIN:
                self._events.uncertain += 1
                raise _uncertain_error(request, str(error), sent_at) from error
            raise error

    def _check_may_send(self, flight: Flight) -> None:
        """Nothing leaves once the client closes or the create's caller has left."""
        _check_open(self._registry)
        if flight.abandoned:
            raise _CallerGone

    async def _backoff(
        self, handle: TaskHandle, attempt: int, floor: float | None, error: BaseException
    ) -> None:
        delay = self._transport.retry.backoff(attempt, self._rng, floor)
        self._events.retried()
        self._registry.emit(EventKind.RETRIED, handle, error=type(error).__name__, delay=delay)
        await anyio.sleep(delay)

    # --- synchronous calls -------------------------------------------------------------------

    async def _run_sync(self, flight: Flight) -> None:
        """One synchronous generation, resolving its handle; runs in the client's task group."""
        handle, lane, scope = flight.handle, flight.lane, flight.sync_scope
        assert lane is not None  # noqa: S101
        assert scope is not None  # noqa: S101
        if handle.done():  # cancelled before this coroutine first ran: nothing was sent
            return
        self._events.submitted += 1
        self._registry.emit(EventKind.SUBMITTED, handle)
        handle._set_status(TaskStatus.RUNNING)  # noqa: SLF001
        with scope:
            try:
                response = await self._send(flight, admitted=True)
                assert response.body is not None  # noqa: S101 - _send returns bodies
                lane.on_success()
                snapshot = TaskSnapshot.from_json(
                    response.body, requested=flight.requested, headers=response.headers
                )
                self._registry.finished(flight, snapshot)
            except _CallerGone:  # pragma: no cover - only creates are abandoned this way
                self._registry.end(flight, TaskCanceledError("cancelled", task_id=None))
            except QwenImageError as exc:
                self._registry.end(flight, exc)
            except Exception as exc:  # a bug must fail this handle, not the client's host
                logger.exception("synchronous generation failed unexpectedly")
                self._registry.end(flight, exc)
        if scope.cancelled_caught:
            self._registry.end(
                flight, TaskCanceledError("the synchronous call was cancelled", task_id=None)
            )


def _check_open(registry: Registry) -> None:
    if registry.closed:
        msg = "the client is closed; create a new Client"
        raise ClientClosedError(msg, task_id=None)


def _uncertain_error(
    request: PreparedRequest, why: str, sent_at: float
) -> SubmissionUncertainError:
    # Each kind of call gets the advice that is true for it: only a create leaves a task.
    if request.protocol.is_async:
        message = (
            f"the create request for model {request.model!r} was sent but its outcome is "
            f"unknown ({why}); it was not re-sent, so that no image is ordered twice. "
            "Find the task it may have created with Client.resolve_uncertain(error) "
            "before retrying."
        )
    else:
        message = (
            f"the synchronous call to model {request.model!r} was sent but its outcome is "
            f"unknown ({why}); it was not re-sent, so that no image is ordered twice. "
            "A synchronous call creates no task, so it cannot be looked up: if the service "
            "billed it, its images were lost with the answer."
        )
    return SubmissionUncertainError(
        message,
        model=request.model,
        prompt=request.prompt,
        creates_task=request.protocol.is_async,
        sent_at=sent_at,
        parameters=request.body.get("parameters"),
    )


def _created_task_id(response: Response) -> str | None:
    if not response.ok or response.body is None:
        return None
    output = response.body.get("output")
    task_id = output.get("task_id") if isinstance(output, Mapping) else None
    # The id becomes a path of the poll URL: one that is not a plain name ("../x") would send
    # the polls, with the key, to another endpoint of the API host.
    return (
        task_id if isinstance(task_id, str) and task_id and safe_name(task_id) == task_id else None
    )
