"""
Cancellation against the emulator: whatever ends a caller, no paid task is orphaned.

Creates are held in the air with the emulator's DELAY fault (it strikes before the task exists), so
each scenario cancels its callers while their create requests are provably unanswered, then reads
the emulator's own records: every created task was cancelled remotely or observed to its end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

import aioqwenimage as q
from aioqwenimage.testing import EmulatorLimits, FakeDashScope, Fault, ModelQuota
from tests.conftest import SCALE, make_client

MODEL = "qwen-image-plus"
HELD = 10
HOLD = 2000  # simulated seconds a held create waits for its answer (2 s of real time)
# One server slot, held by a long first task: everything created after it stays PENDING.
ONE_SLOT = EmulatorLimits(models={MODEL: ModelQuota(in_flight=1, submits=1000)})
ROOMY_CLIENT = q.Limits(models={MODEL: q.ModelLimits(in_flight=50, submits_per_second=1000)})


def held_creates(times: int = HELD, delay: float = 40.0) -> Fault:
    """The next `times` creates are answered `delay` simulated seconds late, created on answer."""
    return Fault(kind="delay", endpoints="create", times=times, delay=delay)


async def until(condition: Callable[[], bool], limit: float = 10.0) -> None:
    """Wait (in small steps, a bounded real time) until `condition` holds."""
    with anyio.fail_after(limit):
        while not condition():
            await anyio.sleep(SCALE)


def statuses(fake: FakeDashScope, *, skip: str | None = None) -> list[str]:
    """The emulator's own status of every task it created, but `skip`."""
    return [r.status for r in fake.stats.tasks.values() if r.task_id != skip]


async def _in_air(client: q.Client, count: int) -> None:
    await until(lambda: client.stats.requests.get("create", 0) >= count)


async def _asyncio_cancel(client: q.Client, prompt: str, in_air: int) -> None:
    task = asyncio.ensure_future(client.generate(prompt, model=MODEL))
    await _in_air(client, in_air)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def _wait_for(client: q.Client, prompt: str, in_air: int) -> None:
    # wait_for's deadline cannot be moved: it expires well inside the creates' long hold.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client.generate(prompt, model=MODEL), timeout=HOLD * SCALE / 2)


async def _asyncio_timeout(client: q.Client, prompt: str, in_air: int) -> None:
    async def expire(scope: Any) -> None:
        await _in_air(client, in_air)
        scope.reschedule(asyncio.get_running_loop().time())

    async def call() -> None:
        async with asyncio.timeout(None) as scope:  # type: ignore[attr-defined]
            expiry = asyncio.ensure_future(expire(scope))
            try:
                await client.generate(prompt, model=MODEL)
            finally:
                await expiry

    with pytest.raises(TimeoutError):
        await call()


async def _fail_after(client: q.Client, prompt: str, in_air: int) -> None:
    async def expire(scope: anyio.CancelScope) -> None:
        await _in_air(client, in_air)
        scope.deadline = anyio.current_time()

    async def call() -> None:
        with anyio.fail_after(None) as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(expire, scope)
                await client.submit(prompt, model=MODEL)

    with pytest.raises(TimeoutError):
        await call()


async def _task_group_torn_down(client: q.Client, prompt: str, in_air: int) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: client.submit(prompt, model=MODEL))
        await _in_air(client, in_air)
        tg.cancel_scope.cancel()


CANCELLERS: dict[str, Callable[[q.Client, str, int], Awaitable[None]]] = {
    "asyncio Task.cancel": _asyncio_cancel,
    "asyncio.wait_for": _wait_for,
    "asyncio.timeout": _asyncio_timeout,
    "anyio.fail_after": _fail_after,
    "task group torn down": _task_group_torn_down,
}
if not hasattr(asyncio, "timeout"):  # Python < 3.11
    del CANCELLERS["asyncio.timeout"]


@pytest.mark.parametrize("how", list(CANCELLERS))
async def test_a_caller_cancelled_during_its_create_leaves_no_task_pending(how):
    """Cancelled mid-create, each caller's PENDING task is cancelled remotely once it exists."""
    cancel = CANCELLERS[how]
    async with (
        FakeDashScope(time_scale=SCALE, limits=ONE_SLOT, durations={MODEL: (9000, 9000)}) as fake,
        make_client(fake, limits=ROOMY_CLIENT) as client,
    ):
        first = await client.submit("first", model=MODEL)
        fake.faults.add(held_creates(delay=HOLD if how == "asyncio.wait_for" else 300))
        async with anyio.create_task_group() as tg:
            for i in range(HELD):
                tg.start_soon(cancel, client, f"p{i}", HELD + 1)
        sent = client.stats.requests["create"]
        await until(lambda: sent == fake.stats.count("create"))
        assert HELD + 1 == sent  # every create was in the air when its caller was cancelled
        await until(lambda: "PENDING" not in statuses(fake, skip=first.task_id))
        assert ["CANCELED"] * HELD == statuses(fake, skip=first.task_id)
        await until(lambda: 1 == client.stats.in_flight.get(MODEL, 0))


async def test_a_running_task_whose_caller_left_is_tracked_to_its_end():
    """A task already RUNNING when its create answers is polled to its end, reported unobserved."""
    events: list[q.TaskEvent] = []
    async with (
        FakeDashScope(time_scale=SCALE, durations={MODEL: (30, 30)}, limits=None) as fake,
        make_client(fake, limits=ROOMY_CLIENT, event_hooks=[events.append]) as client,
    ):
        fake.faults.add(held_creates(times=3))
        async with anyio.create_task_group() as tg:
            for i in range(3):
                tg.start_soon(_asyncio_cancel, client, f"p{i}", 3)
        await until(lambda: 3 == len(fake.stats.tasks))
        await until(lambda: not client.stats.in_flight)
        reports = fake.stats.tasks.values()
        # Each was either cancelled while PENDING or seen terminal by a poll of this client.
        assert all(r.status == "CANCELED" or r.first_terminal_query for r in reports)
        ran = {r.task_id for r in reports if r.status == "SUCCEEDED"}
        unobserved = {e.task_id for e in events if e.kind is q.EventKind.UNOBSERVED}
        assert ran == unobserved
        assert ran  # the tasks start at once: at least one was RUNNING when its answer came


async def test_a_create_lost_after_its_caller_left_is_reported_for_resolving(caplog):
    """A create whose answer is lost once its caller left: an event hands over its error."""
    events: list[q.TaskEvent] = []
    async with (
        FakeDashScope(time_scale=SCALE, durations={MODEL: (30, 30)}, limits=None) as fake,
        make_client(fake, limits=ROOMY_CLIENT, event_hooks=[events.append]) as client,
    ):
        # Held in the air, then created, then its connection dropped: nobody learns its id.
        fake.faults.add(held_creates(times=1))
        fake.faults.add(Fault(kind="drop_after", endpoints="create", times=1))
        await _asyncio_cancel(client, "lost", 1)
        await until(lambda: any(e.kind is q.EventKind.LOST_TRACK for e in events))
        (event,) = [e for e in events if e.kind is q.EventKind.LOST_TRACK]
        error = event.detail["error"]
        assert isinstance(error, q.SubmissionUncertainError)
        assert ("lost", MODEL, None) == (error.prompt, event.model, event.task_id)
        warned = [r for r in caplog.records if r.levelname == "WARNING"]
        assert any(r.getMessage().startswith("lost_track ") for r in warned)
        assert not client.stats.in_flight  # the slot went with the caller
        # What the event is for: the task it may have made is found, and followed.
        resolution = await client.resolve_uncertain(error)
        (made,) = fake.stats.tasks
        assert (q.UncertainOutcome.CREATED, made) == (resolution.outcome, resolution.task_id)


async def test_a_remote_cancel_is_not_held_by_a_throttled_poll_s_pause():
    """A 429 on a poll pauses the queries; a cancel still goes at once, before the task bills."""
    async with (
        FakeDashScope(time_scale=SCALE, limits=ONE_SLOT, durations={MODEL: (9000, 9000)}) as fake,
        make_client(
            fake,
            limits=ROOMY_CLIENT,
            retry=q.RetryPolicy(max_retry_after=3600),
        ) as client,
    ):
        await client.submit("first", model=MODEL)  # holds the server's one slot
        waiting = await client.submit("second", model=MODEL)  # PENDING behind it
        # The next poll is answered 429 with a Retry-After of 3,000 s (3 s of real time).
        fake.faults.add(Fault(kind="throttle", endpoints="query", retry_after=3000, times=1))
        await until(lambda: client.stats.throttled >= 1)
        with anyio.fail_after(1000 * SCALE):  # a third of the pause
            assert await waiting.cancel()
        assert "CANCELED" == fake.stats.tasks[waiting.task_id].status


async def test_closing_the_client_during_creates_leaves_no_task_pending():
    """aclose() with creates in the air: their answers are awaited, their tasks cancelled."""
    async with FakeDashScope(
        time_scale=SCALE, limits=ONE_SLOT, durations={MODEL: (9000, 9000)}
    ) as fake:
        client = make_client(fake, limits=ROOMY_CLIENT)
        first = await client.submit("first", model=MODEL)
        fake.faults.add(held_creates(delay=300))
        errors: list[BaseException] = []

        async def call(i: int) -> None:
            try:
                await client.generate(f"p{i}", model=MODEL)
            except q.QwenImageError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            for i in range(HELD):
                tg.start_soon(call, i)
            await until(lambda: client.stats.requests.get("create", 0) == HELD + 1)
            await client.aclose()
        assert [q.ClientClosedError] * HELD == [type(e) for e in errors]
        assert HELD + 1 == len(fake.stats.tasks)
        assert ["CANCELED"] * HELD == statuses(fake, skip=first.task_id)


async def test_closing_cancels_each_orphan_as_soon_as_its_create_is_answered():
    """aclose(): an orphan whose create was answered is cancelled at once, not after slower ones."""
    # The first task holds the one server slot for 1,000 simulated s (1 s real, a margin for a
    # busy machine); the orphan waits PENDING behind it and would start (and be billed) then,
    # long before the slow create's answer.
    async with FakeDashScope(
        time_scale=SCALE, limits=ONE_SLOT, durations={MODEL: (1000, 1000)}
    ) as fake:
        submitted: list[str] = []

        def hook(event: q.TaskEvent) -> None:
            if event.kind is q.EventKind.SUBMITTED and event.task_id:
                submitted.append(event.task_id)

        client = make_client(fake, limits=ROOMY_CLIENT, event_hooks=[hook])
        first = await client.submit("first", model=MODEL)
        fake.faults.add(held_creates(times=1, delay=HOLD))

        async def call(prompt: str) -> None:
            with pytest.raises(q.ClientClosedError):
                await client.generate(prompt, model=MODEL)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "slow")
            await _in_air(client, 2)
            tg.start_soon(call, "quick")
            await until(lambda: len(submitted) == 2)
            await client.aclose()
        quick = submitted[1]
        assert "CANCELED" == fake.stats.tasks[quick].status
        assert first.task_id != quick


async def test_close_while_submissions_wait_for_a_slot_sends_nothing_more():
    """aclose(): waiters for a slot get ClientClosedError and no create leaves after it."""
    async with FakeDashScope(time_scale=SCALE, durations={MODEL: (400, 400)}) as fake:
        client = make_client(fake, limits=q.Limits(models={MODEL: q.ModelLimits(in_flight=1)}))
        first = await client.submit("first", model=MODEL)
        outcomes: list[BaseException | q.TaskHandle] = []

        async def call(i: int) -> None:
            try:
                outcomes.append(await client.submit(f"p{i}", model=MODEL))
            except Exception as exc:  # the test checks what came out
                outcomes.append(exc)

        async with anyio.create_task_group() as tg:
            for i in range(HELD):
                tg.start_soon(call, i)
            await anyio.sleep(10 * SCALE)
            await client.aclose()
        await anyio.sleep(50 * SCALE)  # let anything still on the wire reach the emulator
        assert [q.ClientClosedError] * HELD == [type(o) for o in outcomes]
        assert all("closed" in str(o) for o in outcomes)
        assert 1 == sum(fake.stats.tasks_created.values())
        with pytest.raises(q.ClientClosedError) as info:
            await first
        assert first.task_id == info.value.task_id
        # A handle submit() gave out is the caller's: its task goes on, to be attached again.
        assert "RUNNING" == fake.stats.tasks[first.task_id].status  # type: ignore[index]
        with pytest.raises(q.ClientClosedError, match="closed"):
            await client.submit("late", model=MODEL)


async def test_close_while_synchronous_calls_wait_sends_nothing_more():
    """aclose(): synchronous calls waiting for a slot get ClientClosedError, none is sent."""
    sync_model = "qwen-image-2.0"
    async with FakeDashScope(time_scale=SCALE, durations={sync_model: (400, 400)}) as fake:
        client = make_client(fake, limits=q.Limits(models={sync_model: q.ModelLimits(in_flight=1)}))
        first = await client.submit("first", model=sync_model)
        errors: list[BaseException] = []

        async def call(i: int) -> None:
            try:
                await client.generate(f"p{i}", model=sync_model)
            except q.QwenImageError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            for i in range(5):
                tg.start_soon(call, i)
            await until(lambda: 1 == fake.stats.sync_in_flight)
            await client.aclose()
        await anyio.sleep(50 * SCALE)  # let anything still on the wire reach the emulator
        assert [q.ClientClosedError] * 5 == [type(e) for e in errors]
        assert 1 == fake.stats.count("sync") + fake.stats.sync_in_flight
        with pytest.raises(q.ClientClosedError):
            await first


async def test_cancelling_a_synchronous_generate_frees_its_slot():
    """asyncio cancellation of generate() on a synchronous model abandons the call."""
    sync_model = "qwen-image-2.0"
    async with (
        FakeDashScope(time_scale=SCALE, durations={sync_model: (400, 400)}) as fake,
        make_client(fake) as client,
    ):
        task = asyncio.ensure_future(client.generate("a fox", model=sync_model))
        await until(lambda: 1 == fake.stats.sync_in_flight)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert {} == client.stats.in_flight


async def test_map_gives_every_item_an_outcome_when_the_client_closes():
    """Closing the client under map(): each item yields an outcome; none vanish."""
    items = [f"p{i}" for i in range(40)]
    # No submission window at the emulator: at SCALE its second lasts a millisecond, loop jitter
    # squeezed a third create into one now and then, and the 429 held the fourth create back
    # until the first tasks had ended (the close then found two generations done).
    unlimited = EmulatorLimits(models={MODEL: ModelQuota(submits=None)})
    async with FakeDashScope(
        time_scale=SCALE, durations={MODEL: (4000, 4000)}, limits=unlimited
    ) as fake:
        client = make_client(fake, limits=q.Limits(models={MODEL: q.ModelLimits(in_flight=4)}))
        seen: list[q.Outcome] = []

        async def close_soon() -> None:
            await until(lambda: client.stats.submitted >= 4)
            await client.aclose()

        async with anyio.create_task_group() as tg:
            tg.start_soon(close_soon)
            seen.extend([outcome async for outcome in client.map(items, model=MODEL)])
        assert list(range(len(items))) == sorted(o.index for o in seen)
        assert all(isinstance(o.error, q.ClientClosedError) for o in seen)
        assert 4 == sum(fake.stats.tasks_created.values())
        assert {o.task_id for o in seen if o.task_id} == set(fake.stats.tasks)


async def test_a_locally_cancelled_running_task_reports_its_remote_end():
    """After cancel() of a RUNNING task, handle.status follows the task to its real end."""
    events: list[q.TaskEvent] = []
    async with (
        FakeDashScope(time_scale=SCALE, durations={MODEL: (300, 300)}, limits=None) as fake,
        make_client(fake, limits=ROOMY_CLIENT, event_hooks=[events.append]) as client,
    ):
        handle = await client.submit("a fox", model=MODEL)
        await until(lambda: handle.status is q.TaskStatus.RUNNING)
        assert not await handle.cancel()
        assert q.TaskStatus.RUNNING == handle.status
        await until(lambda: not client.stats.in_flight)
        assert q.TaskStatus.SUCCEEDED == handle.status
        with pytest.raises(q.TaskCanceledError, match="still finish"):
            await handle
        unobserved = [e for e in events if e.kind is q.EventKind.UNOBSERVED]
        assert [(handle.task_id, q.TaskStatus.SUCCEEDED)] == [
            (e.task_id, e.status) for e in unobserved
        ]


async def test_generate_timeout_says_the_pending_task_was_cancelled():
    """generate(timeout=) on a PENDING task: cancelled remotely, and the message says so."""
    async with (
        FakeDashScope(time_scale=SCALE, limits=ONE_SLOT, durations={MODEL: (400, 400)}) as fake,
        make_client(fake, limits=ROOMY_CLIENT) as client,
    ):
        first = await client.submit("first", model=MODEL)
        with pytest.raises(q.TaskTimeoutError) as info:
            await client.generate("second", model=MODEL, timeout=5 * SCALE)
        assert "cancelled" in str(info.value)
        assert "goes on" not in str(info.value)
        assert "CANCELED" == fake.stats.tasks[info.value.task_id].status  # type: ignore[index]
        await first.cancel()


async def test_generate_timeout_says_a_running_task_goes_on():
    """generate(timeout=) on a RUNNING task: the message says it still runs and will bill."""
    async with (
        FakeDashScope(time_scale=SCALE, durations={MODEL: (300, 300)}, limits=None) as fake,
        make_client(fake, limits=ROOMY_CLIENT) as client,
    ):
        with pytest.raises(q.TaskTimeoutError) as info:
            await client.generate("a fox", model=MODEL, timeout=10 * SCALE)
        assert "RUNNING" in str(info.value)
        assert "bill" in str(info.value)
        await until(lambda: not client.stats.in_flight)
        assert "SUCCEEDED" == fake.stats.tasks[info.value.task_id].status  # type: ignore[index]


async def test_a_map_items_timeout_gives_up_its_task_like_generate():
    """An item's own timeout: its outcome is a TaskTimeoutError saying the task was cancelled."""
    async with (
        FakeDashScope(time_scale=SCALE, limits=ONE_SLOT, durations={MODEL: (400, 400)}) as fake,
        make_client(fake, limits=ROOMY_CLIENT) as client,
    ):
        first = await client.submit("first", model=MODEL)
        items = [{"prompt": "late", "timeout": 5 * SCALE}]
        [outcome] = [o async for o in client.map(items, model=MODEL)]
        assert isinstance(outcome.error, q.TaskTimeoutError)
        assert "cancelled remotely" in str(outcome.error)
        assert "CANCELED" == fake.stats.tasks[outcome.task_id].status  # type: ignore[index]
        await first.cancel()


async def test_wait_timeout_says_the_task_goes_on(client):
    """handle.wait(timeout=) only stops waiting: the message says the task goes on."""
    handle = await client.submit("a fox", model=MODEL)
    with pytest.raises(q.TaskTimeoutError, match="goes on"):
        await handle.wait(timeout=0)
    assert (await handle).images


BAD_TIMEOUTS: list[Any] = [float("nan"), -1, -0.5, "5", True]


@pytest.mark.parametrize("bad", BAD_TIMEOUTS)
async def test_bad_timeouts_are_refused_with_a_typed_error(client, fake, bad):
    """NaN, negative and non-numbers are refused by wait(), generate() and map() items."""
    handle = await client.submit("a fox", model=MODEL)
    with pytest.raises(q.InvalidRequestError, match="timeout"):
        await handle.wait(timeout=bad)
    created = sum(fake.stats.tasks_created.values())
    with pytest.raises(q.InvalidRequestError, match="timeout"):
        await client.generate("a fox", model=MODEL, timeout=bad)
    outcomes = [o async for o in client.map([{"prompt": "a", "timeout": bad}], model=MODEL)]
    assert isinstance(outcomes[0].error, q.InvalidRequestError)
    assert created == sum(fake.stats.tasks_created.values())  # refused before any create
    await handle


async def test_an_infinite_wait_timeout_means_no_limit(client):
    """timeout=inf waits as long as it takes, like None."""
    handle = await client.submit("a fox", model=MODEL)
    assert (await handle.wait(timeout=float("inf"))).images


@pytest.mark.parametrize("field", ["connect", "control", "generation", "download"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 0, -1])
def test_bad_network_timeouts_are_refused(field, bad):
    """A network timeout must be a finite positive number of seconds."""
    with pytest.raises(q.InvalidRequestError, match=field):
        q.Timeouts(**{field: bad})


def test_a_client_belongs_to_the_loop_it_was_opened_in():
    """Using a client in a second event loop raises a typed error naming the rule."""
    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        fake = first.run_until_complete(FakeDashScope(time_scale=SCALE).__aenter__())
        client = make_client(fake)
        result = first.run_until_complete(client.generate("a fox", model="qwen-image"))
        assert result.images
        with pytest.raises(q.WrongEventLoopError, match="event loop it was opened in"):
            second.run_until_complete(client.generate("a fox", model="qwen-image"))
        with pytest.raises(q.WrongEventLoopError):
            second.run_until_complete(client.aclose())
        first.run_until_complete(client.aclose())
        first.run_until_complete(fake.close())
    finally:
        first.close()
        second.close()
