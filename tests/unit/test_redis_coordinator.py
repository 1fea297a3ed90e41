"""RedisCoordinator and its scripts, against a real redis-server (tests/redis_server.py)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import secrets
from collections.abc import AsyncIterator

import anyio
import pytest
import redis.asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aioqwenimage import EventKind
from aioqwenimage._coordination import WindowSpec
from aioqwenimage._redis_scripts import Keys, Scripts
from aioqwenimage._redis_slots import QUEUE_TTL
from aioqwenimage.redis import RedisCoordinator

pytestmark = pytest.mark.redis

FAST = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _namespace() -> str:
    return "t" + secrets.token_hex(6)


@contextlib.asynccontextmanager
async def running(
    url: str, namespace: str, **options: float | bool
) -> AsyncIterator[tuple[RedisCoordinator, list[EventKind]]]:
    """A coordinator bound and running as a client would run it."""
    coordinator = RedisCoordinator(url, namespace=namespace, **options)  # type: ignore[arg-type]
    events: list[EventKind] = []
    coordinator.bind(
        account="unused", report=lambda kind, _detail: events.append(kind), clock=anyio.current_time
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(coordinator.run)
        yield coordinator, events
        tg.cancel_scope.cancel()


# --- the scripts, under concurrent schedules ------------------------------------------------------


@FAST
@given(
    limit=st.integers(1, 5),
    batches=st.lists(
        st.tuples(st.integers(0, 3), st.integers(1, 4), st.booleans()), min_size=1, max_size=12
    ),
    give_back=st.sets(st.integers(0, 40), max_size=6),
    paused=st.booleans(),
)
def test_reservations_from_several_clients_never_put_more_than_limit_in_a_window(
    redis_url, limit, batches, give_back, paused
):
    """
    Hypothesis: concurrent reservations (some urgent, some given back, with a pause or not) keep
    every window within its limit.
    """
    length = 0.05

    async def scenario() -> list[float]:
        keys = Keys(_namespace())
        async with redis.asyncio.from_url(redis_url) as client:
            scripts = Scripts(client, keys)
            numbers = itertools.count()
            if paused:
                now, _ = await scripts.pause("w", 0.0)
                await scripts.pause("w", now + 2 * length)

            async def batch(who: int, count: int, urgent: bool) -> list[tuple[str, float]]:
                answer = await scripts.reserve(
                    "w",
                    limit=limit,
                    length=length,
                    count=count,
                    not_before=0.0,
                    prefix=f"c{who}",
                    first=next(numbers) * 10,
                    urgent=urgent,
                )
                return list(answer.events)

            answers = await asyncio.gather(*(batch(*spec) for spec in batches))
            events = [event for answer in answers for event in answer]
            returned = [m for i, (m, _) in enumerate(events) if i in give_back]
            await scripts.give_back("w", returned)
            kept = [at for m, at in events if m not in returned]
            assert len({m for m, _ in events}) == len(events)  # every event named once
            return sorted(kept)

    times = asyncio.run(scenario())
    for earlier, later in zip(times, times[limit:], strict=False):
        assert later - earlier >= length - 2e-6  # times are sent in microseconds


@FAST
@given(
    limit=st.integers(1, 4),
    asks=st.lists(st.tuples(st.integers(0, 3), st.integers(1, 3)), min_size=1, max_size=15),
)
def test_leases_from_several_clients_never_exceed_the_limit(redis_url, limit, asks):
    """Hypothesis: concurrent lease requests and releases never hold more than the limit."""

    async def scenario() -> int:
        async with redis.asyncio.from_url(redis_url) as client:
            scripts = Scripts(client, Keys(_namespace()))
            held: set[str] = set()
            peak = 0
            numbers = itertools.count()

            async def ask(who: int, count: int) -> None:
                nonlocal peak
                _, granted = await scripts.lease(
                    "p",
                    limit=limit,
                    ttl=30.0,
                    count=count,
                    process=f"c{who}",
                    first=next(numbers) * 10,
                    queue_ttl=30.0,
                )
                held.update(granted)
                peak = max(peak, len(held))
                if granted and who % 2:  # odd clients give one back at once
                    held.discard(granted[0])
                    await scripts.release("p", [granted[0]])

            await asyncio.gather(*(ask(who, n) for who, n in asks))
            assert len(held) == await client.zcard(scripts.keys.pool("p"))
            return peak

    assert asyncio.run(scenario()) <= limit


async def test_a_lease_expires_unless_renewed_and_renewal_never_brings_one_back(redis_url):
    """Leases live for their ttl; a heartbeat keeps one; one expired is reported, not re-added."""
    async with redis.asyncio.from_url(redis_url) as client:
        scripts = Scripts(client, Keys(_namespace()))
        _, kept = await scripts.lease(
            "p", limit=2, ttl=0.3, count=1, process="a", first=0, queue_ttl=30.0
        )
        _, lapsed = await scripts.lease(
            "p", limit=2, ttl=0.05, count=1, process="b", first=0, queue_ttl=30.0
        )
        _, full = await scripts.lease(
            "p", limit=2, ttl=0.3, count=1, process="c", first=0, queue_ttl=30.0
        )
        await anyio.sleep(0.1)
        _, lost = await scripts.renew("p", [*kept, *lapsed], 0.3)
        _, after = await scripts.lease(
            "p", limit=2, ttl=0.3, count=2, process="c", first=1, queue_ttl=30.0
        )

        assert [] == full
        assert lapsed == lost
        assert 1 == len(after)  # the lapsed slot came back, the renewed one is still held
        assert 2 == await client.zcard(scripts.keys.pool("p"))


async def test_a_slot_freed_goes_to_the_process_waiting_longest_while_it_keeps_asking(redis_url):
    """
    The pool's queue: the first process to find it full is served first, one served goes to the
    back, and a process that stopped asking (gone, or unqueued) no longer holds the others back.
    """
    async with redis.asyncio.from_url(redis_url) as client:
        scripts = Scripts(client, Keys(_namespace()))
        numbers = itertools.count()

        async def ask(process: str, count: int = 1, queue_ttl: float = 30.0) -> list[str]:
            _, granted = await scripts.lease(
                "p",
                limit=2,
                ttl=30.0,
                count=count,
                process=process,
                first=next(numbers),
                queue_ttl=queue_ttl,
            )
            return granted

        held = await ask("a", count=2)
        assert [] == await ask("b")  # b, then c, queue
        assert [] == await ask("c")
        await scripts.release("p", held[:1])
        assert [] == await ask("a")  # b waited longer (a is queued behind c now)
        assert [] == await ask("c")
        [b_slot] = await ask("b", count=2)  # served one, still wanting: to the back
        await scripts.release("p", held[1:])
        assert [] == await ask("b")
        assert [] == await ask("a")
        [c_slot] = await ask("c")  # served all it asked: out of the queue

        await scripts.release("p", [b_slot])
        assert [] == await ask("b", queue_ttl=0.05)  # a is ahead; b lapses unless it asks
        await scripts.unqueue("p", "a")  # a's callers left
        await scripts.release("p", [c_slot])
        await anyio.sleep(0.1)
        assert 2 == len(await ask("d", count=2))  # nobody waiting holds d back now
        assert 0 == await client.zcard(scripts.keys.queue("p"))


async def test_a_pause_never_shortens(redis_url):
    async with redis.asyncio.from_url(redis_url) as client:
        scripts = Scripts(client, Keys(_namespace()))
        now, _ = await scripts.pause("w", 0.0)
        _, first = await scripts.pause("w", now + 5)
        _, second = await scripts.pause("w", now + 1)

        assert first == pytest.approx(now + 5) == second


# --- the coordinator -----------------------------------------------------------------------------


async def test_a_pause_in_one_process_holds_the_window_in_another(redis_url):
    """A 429's pause applies account-wide: the other process's next event waits for it."""
    namespace = _namespace()
    spec = WindowSpec(limit=10, length=0.1)
    async with running(redis_url, namespace) as (one, _), running(redis_url, namespace) as (two, _):
        paused = one.window("submit:m", spec)
        other = two.window("submit:m", spec)
        until = anyio.current_time() + 0.3
        paused.pause_until(until)
        await anyio.sleep(0.05)  # the pause is shared in the background
        await other.acquire()

        assert anyio.current_time() >= until - 0.01


async def test_an_urgent_event_is_not_held_by_a_shared_pause_but_counts_in_the_window(redis_url):
    """A remote cancel's token: a pause made elsewhere does not hold it; the rate still does."""
    namespace = _namespace()
    spec = WindowSpec(limit=10, length=0.1)
    async with running(redis_url, namespace) as (one, _), running(redis_url, namespace) as (two, _):
        one.window("queries", spec).pause_until(anyio.current_time() + 60)
        other = two.window("queries", spec)
        async with anyio.create_task_group() as tg:
            tg.start_soon(other.acquire)  # an ordinary waiter, sleeping through the pause
            with anyio.fail_after(5):
                while other.paused_until < anyio.current_time() + 30:  # learnt from Redis
                    await other.acquire(urgent=True)
            assert other.used(anyio.current_time()) >= 1
            tg.cancel_scope.cancel()


async def test_slots_are_shared_and_a_release_in_one_process_serves_a_waiter_in_another(
    redis_url,
):
    namespace = _namespace()
    async with running(redis_url, namespace) as (one, _), running(redis_url, namespace) as (two, _):
        mine = one.slots("submit:m", 2)
        theirs = two.slots("submit:m", 2)
        leases = [await mine.acquire(), await mine.acquire()]
        waiting = asyncio.ensure_future(theirs.acquire())
        await anyio.sleep(0.05)
        assert not waiting.done()  # the account's two slots are held elsewhere

        leases[0].release()
        with anyio.fail_after(2):
            lease = await waiting

        assert 1 == theirs.in_flight == mine.in_flight
        lease.release()
        leases[1].release()


async def test_a_process_waiting_for_a_slot_is_served_before_one_that_gives_it_back_and_asks_again(
    redis_url,
):
    """
    Slots go to processes in the order they began waiting: one that releases a slot and wants
    another does not take it back ahead of one already waiting (with four workers on a cap of
    two, one worker waited until the others ran out of work).
    """
    namespace = _namespace()
    async with running(redis_url, namespace) as (one, _), running(redis_url, namespace) as (two, _):
        mine = one.slots("submit:m", 1)
        theirs = two.slots("submit:m", 1)
        held = await mine.acquire()
        waiting = asyncio.ensure_future(theirs.acquire())
        await anyio.sleep(0.05)  # asked in Redis, and found the slot held
        again = asyncio.ensure_future(mine.acquire())
        await anyio.sleep(0.05)

        held.release()
        with anyio.fail_after(2):
            await asyncio.wait({waiting, again}, return_when=asyncio.FIRST_COMPLETED)
        assert waiting.done()
        assert not again.done()
        (await waiting).release()
        with anyio.fail_after(2):
            (await again).release()


async def test_a_process_whose_callers_left_gives_its_place_in_the_queue_up_at_once(redis_url):
    """
    A process queued for a slot whose waiters were cancelled leaves the queue then, so a slot
    freed goes to the next process at once, not after the place lapses (`QUEUE_TTL`).
    """
    namespace = _namespace()
    async with (
        running(redis_url, namespace) as (one, _),
        running(redis_url, namespace) as (two, _),
        running(redis_url, namespace) as (three, _),
    ):
        held = await one.slots("submit:m", 1).acquire()
        leaving = asyncio.ensure_future(two.slots("submit:m", 1).acquire())
        await anyio.sleep(0.05)  # two queued first
        staying = asyncio.ensure_future(three.slots("submit:m", 1).acquire())
        await anyio.sleep(0.05)
        leaving.cancel()
        await anyio.sleep(0.3)  # two asked last at least this long ago: its place has not lapsed

        released = anyio.current_time()
        held.release()
        with anyio.fail_after(2):
            lease = await staying
        assert anyio.current_time() - released < QUEUE_TTL / 4
        assert leaving.cancelled()
        assert 0 == two.slots("submit:m", 1).in_flight
        lease.release()


async def test_an_adaptive_limit_learned_in_one_process_holds_the_others(redis_url):
    """
    A pool's limit lowered in one process (after 429s) is written where every process reads it:
    another process is granted no more than that, though configured for more.
    """
    namespace = _namespace()
    async with (
        running(redis_url, namespace) as (one, _),
        running(redis_url, namespace) as (two, _),
        redis.asyncio.from_url(redis_url) as client,
    ):
        one.slots("submit:m", 3).set_limit(1)
        with anyio.fail_after(2):
            while await client.get(Keys(namespace).shared_limit("submit:m")) != b"1":
                await anyio.sleep(0.01)
        theirs = two.slots("submit:m", 3)
        first = await theirs.acquire()
        second = asyncio.ensure_future(theirs.acquire())
        await anyio.sleep(0.1)
        assert not second.done()  # the account's limit is 1 now

        theirs.release()  # the oldest slot held: the first
        with anyio.fail_after(2):
            lease = await second
        assert first.released
        assert [lease] == theirs.held
        lease.release()
        with pytest.raises(RuntimeError, match="without a slot held"):
            theirs.release()


async def test_a_pool_without_a_limit_grants_at_once_and_shares_nothing(redis_url):
    namespace = _namespace()
    async with (
        running(redis_url, namespace) as (coordinator, _),
        redis.asyncio.from_url(redis_url) as client,
    ):
        pool = coordinator.slots("submit:free", None)
        leases = [pool.try_lease(), await pool.acquire()]
        assert None not in leases
        assert (2, None) == (pool.in_flight, pool.limit)
        pool.release()
        assert 1 == pool.in_flight
        assert 0 == await client.exists(Keys(namespace).pool("submit:free"))


async def test_the_query_budget_is_shared_by_banked_tokens_within_the_account_rate(redis_url):
    """Two processes polling as fast as they can share one window: together within its limit."""
    namespace = _namespace()
    spec = WindowSpec(limit=5, length=0.1)
    taken: list[float] = []
    async with running(redis_url, namespace) as (one, _), running(redis_url, namespace) as (two, _):
        windows = [one.window("queries", spec), two.window("queries", spec)]

        async def poll(window: object) -> None:
            deadline = anyio.current_time() + 0.5
            while (now := anyio.current_time()) < deadline:
                if window.try_acquire(now):  # type: ignore[attr-defined]
                    taken.append(now)
                else:
                    await anyio.sleep(max(0.001, window.next_free(now) - now))  # type: ignore[attr-defined]

        await asyncio.gather(*(poll(window) for window in windows))

    taken.sort()
    assert len(taken) >= 15  # about 5 per 0.1 s over 0.5 s, less the first refills
    for earlier, later in zip(taken, taken[5:], strict=False):
        assert later - earlier >= 0.1 - 0.02  # each process's clock reads the same loop clock


async def test_banked_query_events_spent_late_still_keep_the_window(redis_url):
    """An event spent up to its grace after its time never squeezes the window (the log allows)."""
    spec = WindowSpec(limit=5, length=0.1)
    spent: list[float] = []
    async with running(redis_url, _namespace()) as (coordinator, _):
        window = coordinator.window("queries", spec)
        while len(spent) < 24:
            now = anyio.current_time()
            free = window.next_free(now)
            # Every sixth event is spent 20 ms late (within the grace); the one five later is not.
            late = 0.02 if len(spent) % 6 == 0 else 0.0
            await anyio.sleep(max(0.0, free - now) + late)
            now = anyio.current_time()
            if window.try_acquire(now):
                spent.append(now)

    for earlier, later in zip(spent, spent[5:], strict=False):
        assert later - earlier >= 0.1 - 0.005


@pytest.mark.parametrize(
    ("length", "margin", "spacing"),
    [
        (0.13, 0.03, 0.13),  # a margin longer than the grace (a one-second window's 30 ms)
        (0.105, 0.005, 0.125),  # compressed time: the margin leaves 20 ms of the grace
    ],
)
async def test_the_log_holds_events_a_window_apart_plus_what_the_margin_leaves_of_the_grace(
    redis_url, length, margin, spacing
):
    """
    A banked event spent late is arrival jitter, which the window's margin is held for: the
    shared log adds only the part of the grace the margin does not cover (adding all of it, B5's
    four processes would share 20 queries per 1.055 s where 1.03 s already holds 30 ms of it).
    """
    spec = WindowSpec(limit=1, length=length, margin=margin)
    times: list[float] = []
    async with running(redis_url, _namespace()) as (coordinator, _):
        window = coordinator.window("queries", spec)
        for _ in range(6):
            await window.acquire()
            times.append(anyio.current_time())

    # Each event is reserved a spacing after the last in the log, however late we woke for it.
    assert pytest.approx(spacing, abs=0.006) == (times[-1] - times[0]) / 5


async def test_a_waiting_query_goes_before_the_events_banked_for_polls(redis_url):
    """
    A sweep or a cancel waiting for its token takes the next event this process reserved for
    its polls, not one after all of them: polls can wait, a sweep frees slots.
    """
    spec = WindowSpec(limit=4, length=0.2)
    waits: list[float] = []
    async with running(redis_url, _namespace()) as (coordinator, _):
        window = coordinator.window("queries", spec)

        async def poll_flat_out() -> None:  # the bank grows to a window's worth of events
            while True:
                now = anyio.current_time()
                if not window.try_acquire(now):
                    await anyio.sleep(max(0.001, window.next_free(now) - now))

        async with anyio.create_task_group() as tg:
            tg.start_soon(poll_flat_out)
            await anyio.sleep(4 * spec.length)
            for _ in range(5):
                start = anyio.current_time()
                await window.acquire()
                waits.append(anyio.current_time() - start)
                await anyio.sleep(spec.length / 3)
            tg.cancel_scope.cancel()

    # The next banked event comes within a window; one reserved after the bank, a window later.
    assert max(waits) < spec.length + 0.05, waits


async def test_a_cancelled_reservation_is_given_back_to_the_account(redis_url):
    """A caller cancelled while it sleeps until its reserved time gives that event back."""
    spec = WindowSpec(limit=1, length=0.3)
    namespace = _namespace()
    async with (
        running(redis_url, namespace) as (one, _),
        running(redis_url, namespace) as (two, _),
    ):
        mine = one.window("submit:m", spec)
        await mine.acquire()
        start = anyio.current_time()
        cancelled = asyncio.ensure_future(mine.acquire())  # reserved a window later
        await anyio.sleep(0.05)
        cancelled.cancel()
        await anyio.sleep(0.05)  # the give-back reaches Redis

        with anyio.fail_after(2):
            await two.window("submit:m", spec).acquire()
        # The next window's event was free again: not two windows later.
        assert anyio.current_time() - start < 1.5 * spec.length
        assert cancelled.cancelled()


async def test_a_process_that_vanishes_gives_its_slots_back_within_the_lease(redis_url):
    """A process that stops renewing (killed) loses its slots when the lease expires."""
    namespace = _namespace()
    async with running(redis_url, namespace, lease_ttl=0.3) as (survivor, _):
        async with running(redis_url, namespace, lease_ttl=0.3) as (doomed, _):
            await doomed.slots("submit:m", 1).acquire()
        # `running` cancelled it: like a kill, nothing released the lease.
        started = anyio.current_time()
        with anyio.fail_after(2):
            lease = await survivor.slots("submit:m", 1).acquire()

        assert anyio.current_time() - started <= 0.3 + 0.3  # the lease, plus one retry tick
        lease.release()


async def test_without_redis_it_runs_on_its_share_and_resynchronises_when_back(
    redis_server, redis_url
):
    """Redis stops: local limits (1/N), an event; Redis returns: the slots held are counted."""
    namespace = _namespace()
    options = {"socket_timeout": 0.2, "lease_ttl": 0.3}  # a heartbeat every 0.1 s
    async with (
        running(redis_url, namespace, **options) as (one, events),
        running(redis_url, namespace, **options) as (two, _),
    ):
        with anyio.fail_after(5):  # each heartbeat (every 0.1 s) counts both
            while not one.processes == two.processes == 2:
                await anyio.sleep(0.02)
        one_slots = one.slots("submit:m", 4)
        before = await one_slots.acquire()
        redis_server.stop()
        with anyio.fail_after(2):
            local = await one_slots.acquire()  # the share: 4 // 2 processes = 2

        assert one.degraded
        assert EventKind.COORDINATION_LOST in events
        assert one_slots.try_lease() is None  # its share is used up
        redis_server.start()
        with anyio.fail_after(5):
            while one.degraded:
                await anyio.sleep(0.02)

        assert EventKind.COORDINATION_RESTORED == events[-1]
        async with redis.asyncio.from_url(redis_url) as client:
            keys = Keys(namespace)
            # The restarted Redis kept nothing: both slots held here are counted again.
            held = await client.zrange(keys.pool("submit:m"), 0, -1)
            assert {before.id.encode(), local.id.encode()} == set(held)  # type: ignore[attr-defined]


async def test_failing_closed_admission_waits_for_redis(redis_server, redis_url):
    namespace = _namespace()
    async with running(redis_url, namespace, socket_timeout=0.2, fail_closed=True) as (one, _):
        slots = one.slots("submit:m", 2)
        await slots.acquire()
        redis_server.stop()
        waiting = asyncio.ensure_future(slots.acquire())
        await anyio.sleep(0.3)

        assert not waiting.done()
        redis_server.start()
        with anyio.fail_after(5):
            lease = await waiting
        assert lease.expires < math.inf  # granted in Redis, not locally


def test_its_repr_shows_neither_url_nor_namespace():
    coordinator = RedisCoordinator("redis://:hunter2@redis.internal:6379/0", namespace="acct")

    assert "hunter2" not in repr(coordinator)
    assert "redis.internal" not in repr(coordinator)


async def test_one_coordinator_belongs_to_one_client(redis_url):
    coordinator = RedisCoordinator(redis_url)
    coordinator.bind(account="a", report=lambda kind, detail: None, clock=anyio.current_time)

    with pytest.raises(RuntimeError, match="one per client"):
        coordinator.bind(account="a", report=lambda kind, detail: None, clock=anyio.current_time)
