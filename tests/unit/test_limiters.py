"""The in-process limiters: the pause, slot leases, the query budget, the local coordinator."""

from __future__ import annotations

import math

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aioqwenimage._coordination import QUERIES, Coordinator, Lease, RateWindow, SlotPool, WindowSpec
from aioqwenimage._limits import InFlightLimiter, LocalCoordinator, SlidingWindow, SlotLease
from aioqwenimage._query_budget import QueryBudget
from tests.virtual_time import run_virtual

# --- the window's pause --------------------------------------------------------------------------


def test_pause_holds_every_event_and_never_shortens():
    """A paused window admits nothing before the pause ends; an earlier pause changes nothing."""
    window = SlidingWindow(5, 1.0)
    assert -math.inf == window.paused_until
    window.pause_until(3.0)
    window.pause_until(2.0)
    assert 3.0 == window.paused_until
    assert window.try_acquire(2.9) is False
    assert 3.0 == window.next_free(1.0)
    assert 0 == window.used(2.9)  # a refused try takes nothing
    assert window.try_acquire(3.0) is True


def test_reservation_lands_after_the_pause():
    """A reservation made while paused is placed at the pause's end, or later if asked."""
    window = SlidingWindow(1, 1.0)
    window.pause_until(2.0)
    assert 2.0 == window.reserve(0.0)
    assert 3.0 == window.reserve(0.0)  # the next one, a window later
    window.cancel_reservation(3.0)
    assert 5.0 == window.reserve(0.0, after=5.0)


def test_acquire_waits_out_the_window_s_own_pause():
    """An async acquirer sleeps until the pause ends, and past a pause extended meanwhile."""
    served: list[float] = []

    async def main() -> None:
        window = SlidingWindow(5, 1.0)
        window.pause_until(2.0)

        async def extend() -> None:
            await anyio.sleep(1.0)
            window.pause_until(3.5)

        async with anyio.create_task_group() as tg:
            tg.start_soon(extend)
            await window.acquire()
            served.append(anyio.current_time())

    run_virtual(main)
    assert [pytest.approx(3.5)] == served


@settings(max_examples=150, deadline=None)
@given(
    limit=st.integers(min_value=1, max_value=4),
    ops=st.lists(
        st.tuples(
            st.sampled_from(["try", "pause", "reserve", "cancel"]),
            st.floats(min_value=0.0, max_value=1.5, allow_nan=False),
        ),
        max_size=60,
    ),
)
def test_paused_window_never_admits_more_than_limit_nor_during_a_pause(limit, ops):
    """Whatever the tries, pauses and reservations: at most `limit` per window, none paused."""
    window = SlidingWindow(limit, 1.0)
    now, taken, reserved = 0.0, [], []
    for op, step in ops:
        now += step / 2
        if op == "try":
            paused = now < window.paused_until
            if window.try_acquire(now):
                assert not paused
                taken.append(now)
        elif op == "pause":
            window.pause_until(now + step)
        elif op == "reserve":
            at = window.reserve(now)
            assert at >= max(now, window.paused_until)
            reserved.append(at)
        elif reserved:
            window.cancel_reservation(reserved.pop())
        events = sorted(taken + reserved)
        assert all(events[i] + 1.0 <= events[i + limit] for i in range(len(events) - limit))


# --- slots and leases ----------------------------------------------------------------------------


def test_lease_is_released_once_however_often_released():
    """A second release of a lease is harmless: it never frees another holder's slot."""

    async def main() -> None:
        slots = InFlightLimiter(2)
        first = await slots.acquire()
        second = await slots.acquire()
        assert (2, False, math.inf) == (slots.in_flight, first.released, first.expires)
        first.release()
        first.release()
        assert (1, True, False) == (slots.in_flight, first.released, second.released)
        second.release()
        assert 0 == slots.in_flight

    run_virtual(main)


def test_count_release_gives_back_the_oldest_lease():
    """release() without a lease releases the oldest one held, which then stays released."""
    slots = InFlightLimiter(3)
    leases = [slots.try_lease() for _ in range(3)]
    assert None is slots.try_lease()
    slots.release()
    assert [True, False, False] == [lease is not None and lease.released for lease in leases]
    assert leases[0] is not None
    leases[0].release()  # already released through the count: nothing happens
    assert 2 == slots.in_flight


def test_waiter_is_handed_a_lease_in_order():
    """A release hands a lease to the first waiter; a cancelled waiter leaves no trace."""
    got: list[str] = []

    async def main() -> None:
        slots = InFlightLimiter(1)
        held = await slots.acquire()

        async def take(name: str) -> None:
            lease = await slots.acquire()
            got.append(name)
            lease.release()

        doomed = anyio.CancelScope()

        async def take_doomed() -> None:
            with doomed:
                await take("never")

        async with anyio.create_task_group() as tg:
            tg.start_soon(take_doomed)
            await anyio.lowlevel.checkpoint()
            tg.start_soon(take, "second")
            await anyio.lowlevel.checkpoint()
            doomed.cancel()  # gives up its place in the queue...
            await anyio.lowlevel.checkpoint()
            held.release()  # ...so the slot goes to the next in line
        assert 0 == slots.in_flight

    run_virtual(main)
    assert ["second"] == got


@settings(max_examples=100, deadline=None)
@given(ops=st.lists(st.sampled_from(["take", "release", "again", "count", "limit"]), max_size=80))
def test_leases_and_counts_never_exceed_the_limit(ops):
    """However leases are released (twice, by count), in_flight is the leases held, within limit."""
    slots = InFlightLimiter(3)
    held: list[SlotLease] = []
    done: list[SlotLease] = []
    for op in ops:
        if op == "take":
            lease = slots.try_lease()
            assert (lease is None) == (len(held) >= (slots.limit or math.inf))
            if lease is not None:
                held.append(lease)
        elif op == "release" and held:
            done.append(held.pop())
            done[-1].release()
        elif op == "again" and done:
            done[-1].release()
        elif op == "count" and held:
            slots.release()
            done.append(held.pop(0))  # the oldest
            assert done[-1].released
        elif op == "limit":
            slots.set_limit(1 if slots.limit == 3 else 3)
        assert len(held) == slots.in_flight


# --- the query budget ----------------------------------------------------------------------------


def test_budget_is_the_coordinator_s_queries_window():
    """The budget spends the window its coordinator keeps under the name "queries"."""
    coordinator = LocalCoordinator(lambda: 0.0)
    budget = QueryBudget(2, scale=0.5, coordinator=coordinator)
    window = coordinator.window(QUERIES, WindowSpec(99, 99.0))  # the first shape holds
    assert (2, pytest.approx(0.515)) == (window.limit, window.window)
    assert budget.try_acquire(0.0)
    assert 1 == window.used(0.0)
    window.pause_until(4.0)  # a throttle reported on the window pauses the budget
    assert (4.0, 4.0) == (budget.paused_until, budget.next_free(1.0))


def test_budget_acquire_counts_what_it_spends():
    """Tokens taken by acquire and try_acquire are both counted in `spent`."""

    async def main() -> QueryBudget:
        budget = QueryBudget(1)
        assert budget.try_acquire(anyio.current_time())
        await budget.acquire()  # a window (1.03 s) later
        assert pytest.approx(1.03) == anyio.current_time()
        return budget

    assert 2 == run_virtual(main).spent


# --- the local coordinator -----------------------------------------------------------------------


def test_local_coordinator_gives_the_same_window_and_pool_by_name():
    """One name, one window or pool; other names are independent."""
    coordinator = LocalCoordinator()
    spec = WindowSpec(2, 1.0)
    assert coordinator.window("submit:a", spec) is coordinator.window("submit:a", spec)
    assert coordinator.window("submit:a", spec) is not coordinator.window("submit:b", spec)
    assert coordinator.slots("submit:a", 3) is coordinator.slots("submit:a", 7)
    assert 3 == coordinator.slots("submit:a", 7).limit


def test_in_process_limiters_meet_the_protocols():
    """The in-process classes are what the seam's protocols describe."""
    coordinator: Coordinator = LocalCoordinator()
    window: RateWindow = coordinator.window("w", WindowSpec(1, 1.0))
    pool: SlotPool = coordinator.slots("p", None)
    lease: Lease | None = pool.try_lease()
    assert isinstance(window, SlidingWindow)
    assert isinstance(lease, SlotLease)
