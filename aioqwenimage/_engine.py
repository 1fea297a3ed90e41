"""
The engine of a client: it runs generations from admission to outcome.

A generation flows: the model's lane (in-flight slot, submission rate; ``_limits``) -> the create
request over the control pool (``_transport``), re-sent only when it provably created nothing ->
the one poll scheduler (``_scheduler``) -> a terminal snapshot -> the handle resolves and the slot
is released. Synchronous-only models take the long-call pool and resolve from the response.
`Client` owns one engine and the task group its background work runs in.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from typing import Any

import anyio
import anyio.abc
import attrs

from aioqwenimage._download import Downloader
from aioqwenimage._errors import (
    ClientClosedError,
    QwenImageError,
    ServerError,
    SubmissionUncertainError,
    TaskCanceledError,
    TaskTimeoutError,
    TransportError,
)
from aioqwenimage._events import Recorder
from aioqwenimage._handle import TaskHandle
from aioqwenimage._lane import SubmitLane
from aioqwenimage._limits import Limits, make_overall_cap
from aioqwenimage._models import (
    ClientStats,
    EventKind,
    GenerationResult,
    TaskStatus,
)
from aioqwenimage._outcomes import EventfulFetcher, error_of, result_of
from aioqwenimage._requests import PreparedRequest
from aioqwenimage._safety import safe_name
from aioqwenimage._scheduler import (
    DurationModel,
    PollOutcome,
    PollPolicy,
    PollScheduler,
    QueryBudget,
)
from aioqwenimage._snapshot import TaskSnapshot
from aioqwenimage._sweep import Sweeper
from aioqwenimage._transport import ConnectFailedError, PoolKind, Response, Transport

__all__ = ["Engine"]

logger = logging.getLogger("aioqwenimage")

# Polls of one task answered in a row with bodies that cannot be read (not JSON, cut off at the
# size cap) before the task ends with `ServerError`: a service answering garbage will not heal
# by being asked again every few seconds for ever.
GARBLED_POLLS = 5


@attrs.define(eq=False)  # identity: flights are keys of the engine's job table
class _Flight:
    """What the engine holds for one generation until it ends."""

    handle: TaskHandle
    request: PreparedRequest | None
    lane: SubmitLane | None
    holds_slot: bool = False
    created: bool = False  # its task exists remotely: the lane counts it as accepted
    sync_scope: anyio.CancelScope | None = None
    on_sending: Callable[[], Awaitable[object]] | None = None
    created_at: float | None = None  # epoch seconds, for the sweeps' list window
    announced: bool = False  # a sweep found it finished; its poll is on the way
    owned: bool = False  # nobody but the library holds the handle (generate, map)
    delivered: bool = False  # the create's caller has the handle (until then, nobody has)
    abandoned: bool = False  # nobody waits for it any more; tracked only to free its slot
    sending: bool = False  # a create may be on the wire: it must be followed to its answer
    job: anyio.CancelScope | None = None  # the create's own task, while it admits or sends
    garbled: int = 0  # unreadable poll answers in a row


class _CallerGone(Exception):  # noqa: N818 - a signal inside the engine, never raised out
    """The caller of a create left while nothing had been created: stop quietly."""


class Engine:
    """
    Lanes, flights, the poll scheduler and the counters of one client.

    Build it anywhere; `open` it inside the event loop, which creates the query budget and the
    scheduler (whose `run` the client starts in its task group).
    """

    def __init__(
        self,
        transport: Transport,
        downloader: Downloader,
        *,
        limits: Limits,
        region: str,
        time_scale: float,
        poll_policy: PollPolicy,
        rng: random.Random,
        events: Recorder,
    ) -> None:
        self._transport = transport
        self._downloader = downloader
        self._limits = limits
        self._region = region
        self._time_scale = time_scale
        self._poll_policy = poll_policy
        self._rng = rng
        self._events = events
        self._lanes: dict[str, SubmitLane] = {}
        self._overall = make_overall_cap(limits.max_in_flight)
        self._flights: dict[TaskHandle, _Flight] = {}
        self._durations = DurationModel(poll_policy)
        self._budget: QueryBudget | None = None
        self._scheduler: PollScheduler[TaskHandle] | None = None
        self._sweeper: Sweeper | None = None
        self._by_id: dict[str, _Flight] = {}
        # Tasks this client created: never the unknown outcome of one of its uncertain creates.
        self._created: deque[str] = deque(maxlen=100_000)
        self._task_group: Callable[[], Awaitable[anyio.abc.TaskGroup]] | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._closed = False
        self._jobs: dict[_Flight, anyio.Event] = {}  # creates running in the task group
        self._admitting: set[anyio.CancelScope] = set()  # synchronous calls waiting for limits
        self._cancel_at_close: list[str] = []

    def open(
        self, task_group: Callable[[], Awaitable[anyio.abc.TaskGroup]]
    ) -> list[Callable[[], Coroutine[Any, Any, None]]]:
        """Create the query budget, the scheduler and the sweeper; returns what to run."""
        self._task_group = task_group
        self._budget = QueryBudget(self._limits.queries_per_second, scale=self._time_scale)
        self._scheduler = PollScheduler(
            self._poll,
            policy=self._poll_policy,
            budget=self._budget,
            durations=self._durations,
            rng=self._rng,
            # No more polls in the air than query connections: a poll never waits for one.
            max_in_air=self._transport.pools.query,
        )
        runners: list[Callable[[], Coroutine[Any, Any, None]]] = [self._scheduler.run]
        policy = self._poll_policy
        if policy.sweep:
            self._sweeper = Sweeper(
                list_page=self.list_page,
                live=self._sweepable,
                announce=self._announce,
                interval=policy.sweep_interval,
                min_live=policy.sweep_min_live,
                share=self._limits.queries_per_second * policy.sweep_share / self._time_scale,
            )
            runners.append(self._sweeper.run)
        return runners

    @property
    def created_task_ids(self) -> tuple[str, ...]:
        """The tasks this client created (the latest 100,000)."""
        return tuple(self._created)

    @property
    def live(self) -> int:
        """Generations not yet resolved."""
        return sum(1 for flight in self._flights.values() if not flight.handle.done())

    # --- what the client asks of it ----------------------------------------------------------

    async def start(
        self,
        request: PreparedRequest,
        on_sending: Callable[[], Awaitable[object]] | None = None,
    ) -> TaskHandle:
        """Admit and start one generation; returns once the task exists (or the call started)."""
        self._check_open()
        lane = self.lane(request)
        handle = TaskHandle(
            model=request.model, task_id=None, canceller=self._cancel, prompt=request.prompt
        )
        flight = _Flight(handle=handle, request=request, lane=lane, on_sending=on_sending)
        tg = await self.task_group()
        if request.protocol.is_async:
            return await self._create_in_group(tg, flight)
        # Admitted here, so that submit() returns once the limits let the call go.
        await self._admit(flight)
        flight.sync_scope = anyio.CancelScope()
        self._flights[handle] = flight
        tg.start_soon(self._run_sync, flight)
        return handle

    def attach(self, task_id: str, model: str | None) -> TaskHandle:
        """A handle for an existing task, polled at once."""
        handle = TaskHandle(model=model, task_id=task_id, canceller=self._cancel)
        self._flights[handle] = _Flight(handle=handle, request=None, lane=None)
        assert self._scheduler is not None  # noqa: S101
        # An attached task may be long done: poll it at once.
        self._scheduler.add(handle, model, submitted_at=anyio.current_time(), first_due=0.0)
        return handle

    async def cancel(self, task_id: str) -> bool:
        """Cancel a task by id (tracked or not); whether the service cancelled it."""
        flight = self._by_id.get(task_id)
        if flight is not None:
            return await flight.handle.cancel()
        return await self._remote_cancel(task_id)

    def own(self, handle: TaskHandle) -> None:
        """Mark a handle as the library's own (generate, map): closing cancels its task."""
        flight = self._flights.get(handle)
        if flight is not None:
            flight.owned = True

    async def abandon(self, handle: TaskHandle) -> bool | None:
        """
        Give up on a generation nobody will wait for: cancel it remotely if ``PENDING``, else
        track it to its end. The work runs in the client's task group, so a second cancellation
        of the caller cannot cut it short; this waits for its verdict (bounded, shielded).

        Returns:
            Whether the service cancelled the task; ``None`` if that is not known in time.
        """
        if self._closed:  # closing gave up every generation already
            return None
        verdict: list[bool] = []
        decided = anyio.Event()

        async def run() -> None:
            try:
                verdict.append(await handle.cancel())
            finally:
                decided.set()

        (await self.task_group()).start_soon(run)
        with anyio.CancelScope(shield=True), anyio.move_on_after(30):
            await decided.wait()
        return verdict[0] if verdict else None

    async def give_up(self, handle: TaskHandle, limit: float | None) -> TaskTimeoutError:
        """Cancel a generation whose time ran out; the error says what became of the task."""
        cancelled = await self.abandon(handle)
        waited = f"no result after {limit} s"
        if cancelled:
            what = "the task was cancelled remotely while PENDING, so it will not be billed"
        elif cancelled is None:
            what = "cancelling the task did not complete in time: it may still run and bill"
        elif handle.status.is_terminal:
            what = f"the task ended {handle.status.value} meanwhile"
        else:
            what = (
                f"the task is {handle.status.value} and the service cancels only PENDING "
                "tasks: it will finish and bill; the client tracks it to its end"
            )
        return TaskTimeoutError(f"{waited}; {what}", task_id=handle.task_id)

    def close(self) -> None:
        """
        The client is closing: nothing more is sent, every waiter and handle ends with
        `ClientClosedError`. Tasks only the library knew of are cancelled by `drain`; tasks
        whose handles were given out go on remotely (`Client.attach` picks them up).
        """
        self._closed = True
        for scope in self._admitting:
            scope.cancel()
        for flight in self._jobs:
            if not flight.sending and flight.job is not None:
                flight.job.cancel()
        for flight in list(self._flights.values()):
            handle = flight.handle
            # A task whose create was answered but whose handle has not reached its caller yet
            # is held by nobody: left running, it would be paid for and never seen.
            undelivered = flight.request is not None and not flight.delivered
            gone = flight.owned or flight.abandoned or undelivered
            if handle.task_id and gone and handle.status is TaskStatus.PENDING:
                self._cancel_at_close.append(handle.task_id)
            self._end_flight(flight, self._closed_error(handle.task_id))

    async def drain(self) -> None:
        """
        Follow creates still on the wire to their answers, and cancel what nobody holds, each
        task as soon as its id is known: one left waiting for a slower create's answer may be
        started by the service meanwhile, and a started task can no longer be cancelled.
        """

        def cancel_known() -> None:
            task_ids, self._cancel_at_close = self._cancel_at_close, []
            for task_id in task_ids:
                tg.start_soon(cancel, task_id)

        async def cancel(task_id: str) -> None:
            with anyio.move_on_after(30):
                await self._remote_cancel(task_id)

        async def after(finished: anyio.Event) -> None:
            await finished.wait()
            cancel_known()

        async with anyio.create_task_group() as tg:
            cancel_known()
            # No create starts once closed, so the jobs in the air now are all there will be.
            for finished in list(self._jobs.values()):
                tg.start_soon(after, finished)

    @staticmethod
    def _closed_error(task_id: str | None) -> ClientClosedError:
        what = f"task {task_id} goes on remotely unless it was cancelled" if task_id else None
        return ClientClosedError(
            "the client was closed before the generation ended" + (f"; {what}" if what else ""),
            task_id=task_id,
        )

    def _check_may_send(self, flight: _Flight) -> None:
        """Nothing leaves once the client closes or the create's caller has left."""
        self._check_open()
        if flight.abandoned:
            raise _CallerGone

    def _check_open(self) -> None:
        if self._closed:
            msg = "the client is closed; create a new Client"
            raise ClientClosedError(msg, task_id=None)

    async def task_group(self) -> anyio.abc.TaskGroup:
        """The client's task group, where background work runs."""
        if self._tg is None:
            assert self._task_group is not None  # noqa: S101
            self._tg = await self._task_group()
        return self._tg

    def stats(self) -> ClientStats:
        """A snapshot of the counters."""
        in_flight = {model: lane.in_flight for model, lane in self._lanes.items() if lane.in_flight}
        return self._events.snapshot(in_flight)

    # --- lanes and slots ---------------------------------------------------------------------

    def lane(self, request: PreparedRequest) -> SubmitLane:
        """The lane of `request`'s model, created with its limits on first use."""
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

    async def _admit(self, flight: _Flight) -> None:
        """Take a slot and a submission token; closing the client interrupts the wait."""
        assert flight.lane is not None  # noqa: S101
        scope = anyio.CancelScope()
        self._admitting.add(scope)
        try:
            with scope:
                await self._acquire_slot(flight)
                await flight.lane.acquire_submit()
        except BaseException:
            self._release_slot(flight)
            raise
        finally:
            self._admitting.discard(scope)
        if self._closed:  # the slot may have been handed over by the close itself
            self._release_slot(flight)
            raise self._closed_error(None)

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
            flight.lane.release_slot(task=flight.created)
            self._overall.release()

    # --- creating tasks ----------------------------------------------------------------------

    async def _send_paid(self, flight: _Flight, *, admitted: bool = False) -> Response:
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
                self._release_slot(flight)
                if attempts >= self._transport.retry.attempts:
                    raise
                await self._backoff(handle, attempts, None, exc)
                continue
            except TransportError as exc:
                self._release_slot(flight)
                self._events.uncertain += 1
                why = f"the connection failed after sending: {exc}"
                raise self._uncertain_error(request, why, sent_at) from exc
            except BaseException:
                self._release_slot(flight)
                raise
            if response.ok and response.body is not None:
                return response
            error = response.error()
            throttled = response.status == 429 and response.retryable  # noqa: PLR2004
            if throttled or response.status == 503:  # noqa: PLR2004 - provably nothing created
                flight.sending = False
            if throttled:
                lane.on_throttled(
                    response.retry_after,
                    accepted=lane.accepted if is_task else None,
                    code=error.code,
                )
            self._release_slot(flight)
            if throttled:
                self._events.throttled += 1
                self._emit(EventKind.THROTTLED, handle, retry_after=response.retry_after)
                if attempts >= max(8, self._transport.retry.attempts):
                    raise error
                continue  # the lane's pause is the wait
            if response.status == 503:  # noqa: PLR2004 - "ModelUnavailable": nothing was created
                if attempts >= self._transport.retry.attempts:
                    raise error
                await self._backoff(handle, attempts, response.retry_after, error)
                continue
            if response.ok or response.status >= 500:  # noqa: PLR2004
                self._events.uncertain += 1
                raise self._uncertain_error(request, str(error), sent_at) from error
            raise error

    async def _create(self, flight: _Flight) -> None:
        """Create the task; returns once it exists remotely and is registered for polling."""
        request, lane, handle = flight.request, flight.lane, flight.handle
        assert request is not None  # noqa: S101
        assert lane is not None  # noqa: S101
        sent_at = time.time()
        response = await self._send_paid(flight)
        task_id = _created_task_id(response)
        if task_id is None:  # a 2xx without a task id: something may exist, we cannot know
            self._release_slot(flight)
            self._events.uncertain += 1
            raise self._uncertain_error(request, "the answer carried no task id", sent_at)
        lane.on_success(task=True)
        flight.created = True
        handle._set_task_id(task_id)  # noqa: SLF001 - the client owns its handles
        self._created.append(task_id)
        flight.created_at = time.time()
        self._flights[handle] = flight
        self._by_id[task_id] = flight
        # Registered before anything can raise: a task that exists is always polled until it
        # ends, which is what releases its slot.
        assert self._scheduler is not None  # noqa: S101
        self._scheduler.add(handle, request.model, submitted_at=anyio.current_time())
        self._events.submitted += 1
        self._emit(EventKind.SUBMITTED, handle)

    async def _create_in_group(self, tg: anyio.abc.TaskGroup, flight: _Flight) -> TaskHandle:
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
            raise self._closed_error(None)
        flight.delivered = True
        return flight.handle

    async def _create_job(
        self, flight: _Flight, finished: anyio.Event, errors: list[BaseException]
    ) -> None:
        assert flight.job is not None  # noqa: S101
        try:
            with flight.job:
                if not flight.abandoned:  # the caller may have left before this first ran
                    await self._create(flight)
            if flight.job.cancelled_caught and self._closed:
                errors.append(self._closed_error(None))
            elif self._closed and flight.handle.task_id is not None:
                # Created while the client closed: its caller gets no handle, so nobody could
                # ever wait for the task; it is cancelled (when PENDING) like any orphan.
                self._cancel_at_close.append(flight.handle.task_id)
                errors.append(self._closed_error(flight.handle.task_id))
                if flight.handle in self._flights:
                    self._end_flight(flight, errors[-1])
        except _CallerGone:
            pass
        except Exception as exc:  # noqa: BLE001 - the caller's error, raised in the caller
            errors.append(exc)
        finally:
            flight.sending = False
            flight.job = None
            self._jobs.pop(flight, None)
            finished.set()
        if flight.abandoned and flight.handle in self._flights and not self._closed:
            await self._cancel(flight.handle)

    def _caller_left(self, flight: _Flight, finished: anyio.Event) -> None:
        """The caller of a create is gone: stop what was not sent, follow what was."""
        flight.abandoned = True
        if finished.is_set():
            # Created, but the caller never took the handle. (A closing client cancels it.)
            if flight.handle in self._flights and self._tg is not None and not self._closed:
                self._tg.start_soon(self._cancel, flight.handle)
        elif not flight.sending and flight.job is not None:
            flight.job.cancel()

    def _uncertain_error(
        self, request: PreparedRequest, why: str, sent_at: float
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

    async def _backoff(
        self, handle: TaskHandle, attempt: int, floor: float | None, error: BaseException
    ) -> None:
        delay = self._transport.retry.backoff(attempt, self._rng, floor)
        self._events.retried()
        self._emit(EventKind.RETRIED, handle, error=type(error).__name__, delay=delay)
        await anyio.sleep(delay)

    # --- synchronous calls -------------------------------------------------------------------

    async def _run_sync(self, flight: _Flight) -> None:
        """One synchronous generation, resolving its handle; runs in the client's task group."""
        handle, lane, scope = flight.handle, flight.lane, flight.sync_scope
        assert lane is not None  # noqa: S101
        assert scope is not None  # noqa: S101
        if handle.done():  # cancelled before this coroutine first ran: nothing was sent
            return
        self._events.submitted += 1
        self._emit(EventKind.SUBMITTED, handle)
        handle._set_status(TaskStatus.RUNNING)  # noqa: SLF001
        with scope:
            try:
                response = await self._send_paid(flight, admitted=True)
                assert response.body is not None  # noqa: S101 - _send_paid returns bodies
                lane.on_success()
                requested = flight.request.body["parameters"].get("n") if flight.request else None
                snapshot = TaskSnapshot.from_json(
                    response.body, requested=requested, headers=response.headers
                )
                self._finish(flight, snapshot)
            except _CallerGone:  # pragma: no cover - only creates are abandoned this way
                self._end_flight(flight, TaskCanceledError("cancelled", task_id=None))
            except QwenImageError as exc:
                self._end_flight(flight, exc)
            except Exception as exc:  # a bug must fail this handle, not the client's host
                logger.exception("synchronous generation failed unexpectedly")
                self._end_flight(flight, exc)
        if scope.cancelled_caught:
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
        self._events.sent("poll")
        try:
            response = await self._transport.send(PoolKind.QUERY, "GET", f"/tasks/{task_id}")
        except TransportError as exc:
            self._events.retried()
            self._emit(EventKind.RETRIED, handle, error=type(exc).__name__)
            return PollOutcome.RETRY
        if response.status == 429:  # noqa: PLR2004
            self._events.throttled += 1
            self._emit(EventKind.THROTTLED, handle, retry_after=response.retry_after)
            return PollOutcome.throttled(response.retry_after)
        if response.ok and response.body is None:
            return await self._garbled(flight, response.error())
        if response.status >= 500:  # noqa: PLR2004
            self._events.retried()
            self._emit(EventKind.RETRIED, handle, status=response.status)
            return PollOutcome.RETRY
        if not response.ok:
            self._end_flight(flight, response.error())
            return PollOutcome.FINISHED
        assert response.body is not None  # noqa: S101
        self._events.polls += 1
        handle.polls += 1
        requested = flight.request.body["parameters"].get("n") if flight.request else None
        try:
            snapshot = TaskSnapshot.from_json(
                response.body, task_id=task_id, requested=requested, headers=response.headers
            )
        except Exception as exc:  # noqa: BLE001 - parsing is total; if not, never spin on it
            why = f"the answer could not be parsed ({type(exc).__name__})"
            return await self._garbled(flight, ServerError(why, status=response.status))
        flight.garbled = 0
        if handle.model is None and snapshot.status is TaskStatus.SUCCEEDED:
            # Attached without a model: the list knows it. Asked before the poll is reported,
            # so that whoever hears of the poll finds the handle resolved.
            handle.model = await self._model_of(task_id)
        self._emit(EventKind.POLLED, handle, status=snapshot.status.value)
        if not snapshot.status.is_terminal:
            if snapshot.status is TaskStatus.RUNNING and handle.status is not TaskStatus.RUNNING:
                handle._observe(TaskStatus.RUNNING)  # noqa: SLF001
                self._emit(EventKind.RUNNING, handle)
            flight.announced = False  # the list was ahead of the task itself: sweep it again
            return PollOutcome.PENDING
        if snapshot.duration is not None and handle.model is not None:
            seen = None if flight.created_at is None else time.time() - flight.created_at
            self._durations.observe(handle.model, snapshot.duration, elapsed=seen)
        if flight.announced and self._scheduler is not None and self._sweeper is not None:
            # A sweep saw this completion first and the task's own answer agrees: sweeps work
            # on this service, so per-task polls become the slow fallback they are meant to be.
            self._sweeper.trusted = True
            if self._scheduler.stretch != self._poll_policy.stretch:
                self._scheduler.set_stretch(self._poll_policy.stretch)
        self._finish(flight, snapshot)
        return PollOutcome.FINISHED

    async def _garbled(self, flight: _Flight, error: QwenImageError) -> PollOutcome:
        """
        A poll answered with an unreadable body: retried, a few times in a row at most; then
        the task is cancelled remotely (if still PENDING: nobody will wait for it) and ended.
        """
        flight.garbled += 1
        self._events.retried()
        self._emit(EventKind.RETRIED, flight.handle, error="MalformedResponse")
        if flight.garbled < GARBLED_POLLS:
            return PollOutcome.RETRY
        task_id = flight.handle.task_id
        assert task_id is not None  # noqa: S101 - only tasks are polled
        with anyio.CancelScope(shield=True), anyio.move_on_after(30 * self._time_scale):
            cancelled = await self._remote_cancel(task_id)
        fate = (
            "it was cancelled remotely"
            if cancelled
            else f"it could not be cancelled, so it may still run and bill: "
            f"Client.attach({task_id!r}) follows it again"
        )
        self._end_flight(
            flight,
            ServerError(
                f"{flight.garbled} polls of task {task_id} in a row were answered with bodies "
                f"that cannot be read (last: {error}); stopped polling it, and {fate}",
                code="MalformedResponse",
                status=getattr(error, "status", None),
                request_id=getattr(error, "request_id", None),
            ),
        )
        return PollOutcome.FINISHED

    # --- sweeps ------------------------------------------------------------------------------

    async def list_page(self, params: Mapping[str, str]) -> Mapping[str, Any]:
        """One page of the task list, within the query budget and retried (lists, sweeps)."""
        self._events.sent("list")
        response = await self._transport.call(
            "GET", "/tasks", params=params, acquire=self.spend_query, on_retry=self.count_retry
        )
        return response.body or {}

    async def _model_of(self, task_id: str) -> str | None:
        """The model the service recorded for a task (attached without one), or ``None``."""
        try:
            body = await self.list_page({"task_id": task_id, "page_no": "1", "page_size": "1"})
        except QwenImageError as exc:
            logger.info("the model of task %s could not be listed: %s", task_id, exc)
            return None
        rows = body.get("data")
        for row in rows if isinstance(rows, list) else []:
            name = row.get("model_name") if isinstance(row, Mapping) else None
            if isinstance(name, str) and name and row.get("task_id") == task_id:
                return name
        return None

    def _sweepable(self) -> Iterator[tuple[str, float]]:
        for task_id, flight in self._by_id.items():
            if flight.created_at is not None and not flight.announced:
                yield task_id, flight.created_at

    def _announce(self, task_id: str) -> bool:
        flight = self._by_id.get(task_id)
        if flight is None or flight.announced:
            return False
        flight.announced = True
        assert self._scheduler is not None  # noqa: S101
        self._scheduler.poll_now(flight.handle)  # False: a poll is in the air already
        return True

    def _finish(self, flight: _Flight, snapshot: TaskSnapshot) -> None:
        """Resolve a flight from its terminal snapshot."""
        handle = flight.handle
        if snapshot.status is TaskStatus.SUCCEEDED and snapshot.urls:
            model, task_id = handle.model, handle.task_id
            # The callback names the task by value, never the handle: the handle holds the
            # result, the result its images, and a cycle back would keep every finished
            # generation alive until the cyclic garbage collector happened to run.
            fetcher = EventfulFetcher(
                self._downloader,
                lambda path: self._report(
                    EventKind.DOWNLOADED, model, task_id, TaskStatus.SUCCEEDED, {"path": str(path)}
                ),
            )
            result = result_of(snapshot, model=handle.model, prompt=handle.prompt, fetcher=fetcher)
            self._end_flight(flight, None, result=result)
            return
        error, status = error_of(snapshot)
        self._end_flight(flight, error, status=status)

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
        if handle.task_id is not None:
            self._by_id.pop(handle.task_id, None)
        self._release_slot(flight)
        if self._scheduler is not None:
            self._scheduler.remove(handle)
        if flight.sync_scope is not None:
            flight.sync_scope.cancel()
        final = TaskStatus.SUCCEEDED if result is not None else status
        if handle.done() and final is not None and not isinstance(error, ClientClosedError):
            # Told earlier that nobody waits (a local cancel of a RUNNING task, or a caller
            # that left): the handle still reports the last state known of the remote task.
            handle._observe(final)  # noqa: SLF001
            self._emit(EventKind.UNOBSERVED, handle)
        self._settle(handle, error, result=result, status=status)

    def _settle(
        self,
        handle: TaskHandle,
        error: BaseException | None,
        *,
        result: GenerationResult | None = None,
        status: TaskStatus | None = None,
    ) -> None:
        """Resolve the handle (once), count the outcome and report it."""
        if handle.done():
            return
        if result is not None:
            handle._resolve(result)  # noqa: SLF001
        else:
            assert error is not None  # noqa: S101
            handle._fail(error, status)  # noqa: SLF001
        self._events.finished[handle.status.value if result is not None or status else "ERROR"] += 1
        self._emit(EventKind.FINISHED, handle, error=type(error).__name__ if error else None)

    # --- cancelling --------------------------------------------------------------------------

    async def _cancel(self, handle: TaskHandle) -> bool:
        flight = self._flights.get(handle)
        if flight is None:
            return False
        if handle.task_id is None:  # a synchronous call: abandon it (it may have been billed)
            error = TaskCanceledError("cancelled", task_id=None)
            self._end_flight(flight, error, status=TaskStatus.CANCELED)
            return False
        if await self._remote_cancel(handle.task_id):
            error = TaskCanceledError("cancelled", task_id=handle.task_id)
            self._end_flight(flight, error, status=TaskStatus.CANCELED)
            return True
        # Not PENDING any more: the service finishes (and bills) it. The waiters are told now,
        # but the task keeps its slot and is still polled, quietly, until it really ends, so
        # the lane never counts fewer tasks in flight than the service does.
        if flight is not self._flights.get(handle):  # it ended while the cancel was asked
            return False
        flight.abandoned = True
        if handle.status is TaskStatus.PENDING:
            handle._observe(TaskStatus.RUNNING)  # noqa: SLF001 - the service said: not pending
        error = TaskCanceledError(
            "cancelled locally; the service could not cancel it (no longer PENDING), so it may "
            "still finish and bill",
            task_id=handle.task_id,
        )
        self._settle(handle, error)
        return False

    async def _remote_cancel(self, task_id: str) -> bool:
        self._events.sent("cancel")
        try:
            await self._transport.call(
                "POST",
                f"/tasks/{task_id}/cancel",
                acquire=self.spend_query,
                on_retry=self.count_retry,
            )
        except QwenImageError as exc:
            # 400 UnsupportedOperation: the task is not PENDING any more. Anything else that
            # outlasted the retries leaves it running too; the caller learns it from the status.
            logger.debug("remote cancel of task %s failed: %s", task_id, exc)
            return False
        return True

    # --- helpers -----------------------------------------------------------------------------

    async def spend_query(self) -> None:
        """Take one query from the global budget shared with the scheduler's polls."""
        assert self._budget is not None  # noqa: S101
        await self._budget.acquire()

    async def count_retry(self, response: Response | None, _delay: float) -> None:
        self._events.retried(throttled=response is not None and response.status == 429)  # noqa: PLR2004

    def _emit(self, kind: EventKind, handle: TaskHandle, **detail: Any) -> None:
        self._report(kind, handle.model, handle.task_id, handle.status, detail)

    def _report(
        self,
        kind: EventKind,
        model: str | None,
        task_id: str | None,
        status: TaskStatus | None,
        detail: Mapping[str, Any],
    ) -> None:
        self._events.report(kind, model, task_id, status, detail)


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
