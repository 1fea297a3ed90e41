"""
The Host of a client's background work, and the wiring (`_wiring.build`/`start`) that runs the
parts in it: built once, started in the loop, polling and resolving tasks with no test driving.
"""

from __future__ import annotations

import asyncio

import anyio
import pytest

import aioqwenimage as q
from aioqwenimage._host import Host
from tests.unit.client_parts import MODEL, build, emulator, request, running


async def test_runners_run_until_stop_and_are_cancelled_by_it():
    """Each runner runs in the host's group from `start`; `stop` cancels them and ends the host."""
    started: list[str] = []
    ended: list[str] = []

    def runner(name: str):
        async def run() -> None:
            started.append(name)
            try:
                await anyio.sleep_forever()
            finally:
                ended.append(name)

        return run

    host = Host()
    host.start([runner("scheduler"), runner("sweeper")])
    with anyio.fail_after(5):
        await host.task_group()
        await anyio.wait_all_tasks_blocked()
        assert ["scheduler", "sweeper"] == started
        assert "<Host running=True>" == repr(host)
        await host.stop()
    assert ["scheduler", "sweeper"] == sorted(ended)
    assert "<Host running=False>" == repr(host)


async def test_work_started_in_the_group_is_cancelled_by_stop():
    """What parts start in the task group (creates, sync calls) ends with the host."""
    host = Host()
    host.start([])
    cancelled = anyio.Event()

    async def work() -> None:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise

    with anyio.fail_after(5):
        (await host.task_group()).start_soon(work)
        await anyio.wait_all_tasks_blocked()
        await host.stop()
    assert cancelled.is_set()


async def test_the_group_is_handed_over_without_a_checkpoint_once_running():
    """A caller being cancelled still gets the group (to hand its clean-up to it)."""
    host = Host()
    host.start([])
    with anyio.fail_after(5):
        first = await host.task_group()
    with anyio.CancelScope() as scope:
        scope.cancel()
        assert first is await host.task_group()
    await host.stop()


async def test_the_host_may_be_stopped_from_another_task_than_the_opener():
    """Opened in one task, stopped in another (a lifespan, a fixture): no cancel scope crosses."""
    host = Host()

    async def opener() -> None:
        host.start([anyio.sleep_forever])

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(opener)
        await host.task_group()
        await host.stop()
    assert "<Host running=False>" == repr(host)


async def test_check_loop_refuses_another_event_loop():
    """In its loop `check_loop` passes; in another it raises WrongEventLoopError."""
    host = Host()
    host.start([])
    host.check_loop()

    async def elsewhere() -> None:
        host.check_loop()

    with anyio.fail_after(5), pytest.raises(q.WrongEventLoopError, match="one per loop"):
        await anyio.to_thread.run_sync(asyncio.run, elsewhere())
    await host.stop()


def test_check_loop_before_start_refuses_any_loop():
    """A host never started belongs to no loop."""

    async def main() -> None:
        Host().check_loop()

    with pytest.raises(q.WrongEventLoopError):
        asyncio.run(main())


# --- the wiring ---------------------------------------------------------------------------------


async def test_started_parts_poll_a_task_to_its_end_on_their_own():
    """`start` runs the scheduler: a created task is polled, within the shared budget, resolved."""
    async with emulator(duration=0) as fake:
        parts = build(fake)
        async with running(parts, polling=True) as scheduler:
            assert scheduler is None
            with anyio.fail_after(5):
                handle = await parts.paid.start(request())
                result = await handle
            assert handle.task_id == result.task_id
            assert parts.events.polls >= 1
            assert parts.queries.budget.spent >= parts.events.requests["poll"] >= 1
            assert {} == parts.admission.in_flight()
            assert {"SUCCEEDED": 1} == parts.events.snapshot({}).finished


async def test_started_parts_poll_an_attached_task_at_once():
    """An attached task is polled by the running scheduler without waiting a first delay."""
    async with emulator(duration=0) as fake:
        first = build(fake)
        async with running(first):
            with anyio.fail_after(5):
                task_id = (await first.paid.start(request())).task_id
        assert task_id is not None
        parts = build(fake, poll=q.PollPolicy(first_poll=10_000, sweep=False))
        async with running(parts, polling=True):
            with anyio.fail_after(5):
                result = await parts.registry.attach(task_id, MODEL)
            assert task_id == result.task_id


@pytest.mark.parametrize("sweep", [True, False])
async def test_start_binds_a_sweeper_only_when_sweeps_are_on(sweep):
    """The poller confirms sweeps only when the policy has them."""
    async with emulator() as fake:
        parts = build(fake, poll=q.PollPolicy(sweep=sweep))
        assert "<Poller sweeps=False>" == repr(parts.poller)
        async with running(parts, polling=True):
            assert f"<Poller sweeps={sweep}>" == repr(parts.poller)


async def test_build_shares_one_recorder_and_one_budget():
    """Every part counts into the one Recorder; the wired parts share the one query budget."""
    async with emulator() as fake:
        parts = build(fake)
        async with running(parts):
            with anyio.fail_after(5):
                handle = await parts.paid.start(request())
                assert handle.task_id is not None
                await parts.cancelling.cancel_id(handle.task_id)
            assert {"create": 1, "cancel": 1} == {
                kind: n for kind, n in parts.events.requests.items() if n
            }
            assert 1 == parts.queries.budget.spent
            assert 1 == sum(parts.events.finished.values())  # the cancel settled the handle
