"""
PaidRequests: creates and synchronous calls re-sent only when provably nothing was created,
never creating a task twice, learning the answer of a create whatever happens to its caller.

Each test reads the emulator's own count of what was created (`fake.stats.tasks_created`) next to
what the client sent.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import anyio
import pytest
from aiohttp import web

import aioqwenimage as q
from aioqwenimage import _wiring
from aioqwenimage._handle import TaskHandle
from aioqwenimage._transport import ConnectFailedError
from aioqwenimage.testing import FakeDashScope, Fault
from tests.unit.client_parts import (
    LONG,
    MODEL,
    SYNC_MODEL,
    build,
    close,
    emulator,
    remote_status,
    request,
    running,
    until,
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDashScope]:
    async with emulator(duration=20) as emulated:
        yield emulated


@pytest.fixture
async def parts(fake) -> AsyncIterator[_wiring.Parts]:
    built = build(fake, retry=q.RetryPolicy(attempts=3))
    async with running(built):
        yield built


def created(fake: FakeDashScope) -> int:
    return fake.stats.tasks_created[MODEL]


async def start(parts: _wiring.Parts, **kwargs: object) -> TaskHandle:
    with anyio.fail_after(5):
        return await parts.paid.start(request(), **kwargs)  # type: ignore[arg-type]


async def test_a_create_registers_its_task_and_holds_its_slot(fake, parts):
    """One create, one task: the handle has its id, is tracked by it, and holds a slot."""
    handle = await start(parts)
    assert handle.task_id is not None
    assert 1 == created(fake)
    flight = parts.registry.by_id(handle.task_id)
    assert flight is not None
    assert flight.delivered
    assert {MODEL: 1} == parts.admission.in_flight()
    assert (1, 1) == (parts.events.requests["create"], parts.events.submitted)


@pytest.mark.parametrize(
    ("fault", "status"),
    [(Fault(kind="throttle", endpoints="create", times=2), 429), ("unavailable", 503)],
    ids=["429 Throttling", "503"],
)
async def test_refusals_that_created_nothing_are_sent_again(fake, parts, fault, status):
    """After a 429 Throttling or a 503 the create goes again, and one task is made in all."""
    if isinstance(fault, str):
        fault = Fault(kind=fault, endpoints="create", times=2)
    fake.faults.add(fault)
    handle = await start(parts)
    assert handle.task_id is not None
    assert 1 == created(fake)
    assert 2 == fake.stats.count("create", status)
    assert 3 == parts.events.requests["create"]
    if status == 429:
        assert 2 == parts.events.throttled
    else:
        assert 2 == parts.events.retries
    assert {MODEL: 1} == parts.admission.in_flight()


async def test_throttling_that_never_ends_raises_rate_limit_error(fake, parts):
    """A create throttled on every attempt gives up after 8 tries with RateLimitError."""
    fake.faults.add(Fault(kind="throttle", endpoints="create", retry_after=0))
    with pytest.raises(q.RateLimitError):
        await start(parts)
    assert (8, 0) == (fake.stats.count("create", 429), created(fake))
    assert {} == parts.admission.in_flight()


@pytest.mark.parametrize(
    ("kind", "made"),
    [("internal_error", 0), ("drop_before", 0), ("drop_after", 1), ("malformed", 1)],
)
async def test_a_create_whose_outcome_is_unknown_is_never_sent_again(fake, parts, kind, made):
    """After a 500, a dropped connection or an unreadable 2xx: SubmissionUncertainError, once."""
    fake.faults.add(Fault(kind=kind, endpoints="create", times=1))
    with pytest.raises(q.SubmissionUncertainError) as caught:
        await start(parts)
    assert caught.value.creates_task
    assert "not re-sent" in str(caught.value)
    assert "resolve_uncertain" in str(caught.value)
    assert (MODEL, "a fox") == (caught.value.model, caught.value.prompt)
    assert (made, 1, 1) == (
        created(fake),
        parts.events.requests["create"],
        parts.events.uncertain,
    )
    assert {} == parts.admission.in_flight()
    assert 0 == parts.registry.live


async def test_a_refusal_of_the_service_is_raised_as_is(fake, parts):
    """A 400 (moderation) is the caller's error: not re-sent, not uncertain, no slot kept."""
    fake.faults.add(Fault(kind="moderation", endpoints="create", times=1))
    with pytest.raises(q.APIError) as caught:
        await start(parts)
    assert 400 == caught.value.status
    assert (0, 1, 0) == (created(fake), parts.events.requests["create"], parts.events.uncertain)
    assert {} == parts.admission.in_flight()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_refused_connection_is_tried_again_until_the_service_answers():
    """Refused, the create is re-sent (nothing left); once the service listens, one task exists."""
    port = free_port()
    fake = emulator(port=port)
    parts = build(fake, base_url=f"http://127.0.0.1:{port}/api/v1", retry=q.RetryPolicy(attempts=3))
    sends = 0

    async def on_sending() -> None:
        nonlocal sends
        sends += 1
        if sends == 2:  # the first attempt was refused: now start listening
            await fake.start()

    try:
        async with running(parts):
            handle = await start(parts, on_sending=on_sending)
            assert handle.task_id is not None
            assert (1, 2, 1) == (created(fake), parts.events.requests["create"], sends - 1)
            assert 1 == parts.events.retries
    finally:
        await fake.close()


async def test_a_connection_refused_every_time_fails_after_the_attempts():
    """With nothing listening, the create is tried `attempts` times, then ConnectFailedError."""
    fake = emulator()
    parts = build(
        fake, base_url=f"http://127.0.0.1:{free_port()}/api/v1", retry=q.RetryPolicy(attempts=3)
    )
    async with running(parts):
        with pytest.raises(ConnectFailedError):
            await start(parts)
        assert (3, 2) == (parts.events.requests["create"], parts.events.retries)
        assert {} == parts.admission.in_flight()


async def test_on_sending_that_raises_sends_nothing(fake, parts):
    """A failing `on_sending` (a journal that cannot write) stops the create before it leaves."""

    async def refuse() -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        await start(parts, on_sending=refuse)
    assert (0, 0) == (created(fake), parts.events.requests.get("create", 0))
    assert {} == parts.admission.in_flight()


async def test_nothing_starts_once_closed(fake, parts):
    """A closed client refuses a start with ClientClosedError before admission or I/O."""
    await close(parts)
    with pytest.raises(q.ClientClosedError):
        await start(parts)
    assert 0 == fake.stats.count("create")


async def test_a_synchronous_call_returns_once_admitted_and_resolves_its_handle(fake, parts):
    """A sync call's handle has no task id; its answer resolves it; it is counted as `sync`."""
    with anyio.fail_after(5):
        handle = await parts.paid.start(request(model=SYNC_MODEL))
        assert handle.task_id is None
        assert 1 == parts.registry.live
        result = await handle
    assert 1 == len(result.images)
    assert (1, 0) == (parts.events.requests["sync"], fake.stats.tasks_created[SYNC_MODEL])
    assert {"SUCCEEDED": 1} == dict(parts.events.finished)
    assert {} == parts.admission.in_flight()


async def test_a_synchronous_call_of_unknown_outcome_says_no_task_exists(fake, parts):
    """A sync call answered 500 fails uncertain, saying that there is no task to look up."""
    fake.faults.add(Fault(kind="internal_error", endpoints="sync", times=1))
    with anyio.fail_after(5):
        handle = await parts.paid.start(request(model=SYNC_MODEL))
        with pytest.raises(q.SubmissionUncertainError) as caught:
            await handle
    assert not caught.value.creates_task
    assert "creates no task" in str(caught.value)
    assert (1, 1) == (parts.events.requests["sync"], parts.events.uncertain)


# --- creates whose callers leave, and closing ---------------------------------------------------


@pytest.fixture
async def one_slot() -> AsyncIterator[FakeDashScope]:
    """One server slot, taken by a long task: every task created later stays PENDING."""
    async with emulator(one_slot=True, duration=LONG) as emulated:
        yield emulated


async def blocked_parts(fake: FakeDashScope, in_flight: int = 50) -> _wiring.Parts:
    return build(fake, limits=q.Limits(models={MODEL: q.ModelLimits(in_flight=in_flight)}))


async def test_a_caller_leaving_mid_create_gets_its_pending_task_cancelled(one_slot):
    """Cancelled while its create is on the wire, the caller leaves; the task made is cancelled."""
    fake = one_slot
    parts = await blocked_parts(fake)
    async with running(parts):
        await start(parts)  # the long task in the server's one slot
        fake.faults.add(Fault(kind="delay", endpoints="create", times=1, delay=50))
        sending = anyio.Event()

        async def on_sending() -> None:
            sending.set()

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: parts.paid.start(request(), on_sending))
                await sending.wait()
                tg.cancel_scope.cancel()
            await until(lambda: len(parts.registry.created_task_ids) == 2)
            late = parts.registry.created_task_ids[1]
            await until(lambda: remote_status(fake, late) == "CANCELED")
            await until(lambda: parts.registry.by_id(late) is None)
        assert 2 == created(fake)
        assert 2 == parts.events.requests["create"]
        assert {MODEL: 1} == parts.admission.in_flight()


async def test_a_caller_leaving_before_its_create_is_sent_sends_nothing(one_slot):
    """Cancelled while waiting for a slot, a create never leaves and leaves no slot held."""
    fake = one_slot
    parts = await blocked_parts(fake, in_flight=1)
    async with running(parts):
        blocker = await start(parts)
        with anyio.move_on_after(0.05):
            await parts.paid.start(request())
        assert (1, 1) == (parts.events.requests["create"], created(fake))
        assert {MODEL: 1} == parts.admission.in_flight()
        parts.registry.end(parts.registry.get(blocker), q.ServerError("ended"))  # type: ignore[arg-type]
        await anyio.sleep(0.05)  # the slot is free now: the left create must not take it
        assert (1, 1) == (parts.events.requests["create"], created(fake))
        assert {} == parts.admission.in_flight()


async def test_closing_follows_creates_on_the_wire_and_cancels_their_tasks(one_slot):
    """Closing: a create on the wire is followed and its task cancelled; one not sent never is."""
    fake = one_slot
    parts = await blocked_parts(fake, in_flight=2)
    async with running(parts):
        blocker = await start(parts)
        fake.faults.add(Fault(kind="delay", endpoints="create", times=1, delay=50))
        sending = anyio.Event()
        errors: list[q.ClientClosedError] = []

        async def on_sending() -> None:
            sending.set()

        async def caller(hook: object = None) -> None:
            try:
                await parts.paid.start(request(), hook)  # type: ignore[arg-type]
            except q.ClientClosedError as exc:
                errors.append(exc)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(caller, on_sending)
                await sending.wait()
                tg.start_soon(caller)  # waits for admission: the client's two slots are held
                await until(lambda: parts.admission.lane(request()).waiting == 1)
                await close(parts)
        late = next(t for t in fake.stats.tasks if t != blocker.task_id)
        assert "CANCELED" == remote_status(fake, late)
        assert "RUNNING" == remote_status(fake, blocker.task_id)  # its handle was given out
        assert 2 == len(errors)
        assert {late, None} == {e.task_id for e in errors}
        assert (2, 2) == (created(fake), parts.events.requests["create"])
        assert {} == parts.admission.in_flight()


async def test_closing_stops_a_create_not_yet_on_the_wire(fake, parts):
    """A create held before sending (a slow `on_sending`) is stopped by closing: nothing leaves."""
    entered = anyio.Event()
    errors: list[q.ClientClosedError] = []

    async def stuck() -> None:
        entered.set()
        await anyio.sleep_forever()

    async def caller() -> None:
        try:
            await parts.paid.start(request(), stuck)
        except q.ClientClosedError as exc:
            errors.append(exc)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(caller)
            await entered.wait()
            await close(parts)
    assert [None] == [e.task_id for e in errors]
    assert (0, 0) == (parts.events.requests.get("create", 0), created(fake))
    assert {} == parts.admission.in_flight()


async def test_a_503_that_never_ends_is_raised_after_the_attempts(fake, parts):
    """503 on every attempt: the service's error after `attempts` sends; nothing was created."""
    fake.faults.add(Fault(kind="unavailable", endpoints="create"))
    with pytest.raises(q.APIError) as caught:
        await start(parts)
    assert not isinstance(caught.value, q.SubmissionUncertainError)
    assert 503 == caught.value.status
    assert (3, 2, 0) == (fake.stats.count("create", 503), parts.events.retries, created(fake))
    assert {} == parts.admission.in_flight()


async def test_a_success_without_a_task_id_is_uncertain():
    """A 2xx that names no task may still have made one: uncertain, not re-sent, slot freed."""
    answered: list[str] = []

    async def no_task_id(req: web.Request) -> web.StreamResponse:
        answered.append(req.method)
        return web.json_response({"request_id": "r-1", "output": {"task_status": "PENDING"}})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", no_task_id)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        fake = emulator()  # never started: only its key is used
        parts = build(fake, base_url=f"http://127.0.0.1:{runner.addresses[0][1]}/api/v1")
        async with running(parts):
            with pytest.raises(q.SubmissionUncertainError, match="carried no task id"):
                await start(parts)
            assert (["POST"], 1) == (answered, parts.events.uncertain)
            assert (0, {}) == (parts.registry.live, parts.admission.in_flight())
    finally:
        await runner.cleanup()


async def test_a_synchronous_call_cancelled_before_it_ran_sends_nothing(fake, parts):
    """Cancelled right after `start` returned, a sync call never leaves."""
    handle = await parts.paid.start(request(model=SYNC_MODEL))
    assert not await parts.cancelling.cancel(handle)
    with pytest.raises(q.TaskCanceledError):
        await handle
    await anyio.wait_all_tasks_blocked()
    assert (0, 0) == (parts.events.requests.get("sync", 0), len(fake.stats.sync_calls))
    assert (0, 0) == (parts.events.submitted, parts.registry.live)
