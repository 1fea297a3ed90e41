"""Admission: lanes by model, the overall cap, slot leases released once, and closing."""

from __future__ import annotations

import random

import anyio
import anyio.lowlevel
import attrs
import pytest

import aioqwenimage as q
from aioqwenimage._admission import Admission, ClosedAdmission, Slot
from aioqwenimage._lane import SubmitLane
from tests.unit.client_parts import MODEL, SYNC_MODEL, request
from tests.virtual_time import run_virtual


@attrs.define(eq=False)
class Holder:
    """A flight as far as admission cares: its lane and the slot it holds."""

    lane: SubmitLane | None
    slot: Slot | None = None


def admission(
    in_flight: int | None = 5, *, max_in_flight: int | None = None, time_scale: float = 0.001
) -> Admission:
    models = {
        name: q.ModelLimits(in_flight=in_flight, submits_per_second=1000)
        for name in (MODEL, SYNC_MODEL)
    }
    limits = q.Limits(models=models, max_in_flight=max_in_flight)
    return Admission(limits, region="singapore", time_scale=time_scale, rng=random.Random(1))


def holder(adm: Admission, model: str = MODEL) -> Holder:
    return Holder(adm.lane(request(model=model)))


async def blocked(adm: Admission, who: Holder, tg: anyio.abc.TaskGroup) -> list[BaseException]:
    """Start `who` waiting for admission in `tg`; returns where its failure will be put."""
    failures: list[BaseException] = []

    async def wait() -> None:
        try:
            await adm.admit(who)
        except ClosedAdmission as exc:
            failures.append(exc)

    tg.start_soon(wait)
    await anyio.wait_all_tasks_blocked()
    return failures


def test_one_lane_per_model_with_the_configured_limits():
    """A model's lane is made once, with the client's override or else the catalog's default."""
    adm = Admission(
        q.Limits(models={MODEL: q.ModelLimits(in_flight=3)}),
        region="singapore",
        time_scale=1.0,
        rng=random.Random(1),
    )
    lane = adm.lane(request())
    assert lane is adm.lane(request("another prompt"))
    assert 3 == lane.configured
    sync = request(model=SYNC_MODEL)
    assert sync.spec.default_limits("singapore").in_flight == adm.lane(sync).configured


async def test_admit_holds_a_slot_of_the_model_until_released():
    """Admitted, the holder has a slot that `in_flight` counts; released, none is counted."""
    adm = admission()
    a, b = holder(adm), holder(adm, SYNC_MODEL)
    with anyio.fail_after(5):
        await adm.admit(a)
        await adm.admit(b)
    assert a.slot is not None
    assert {MODEL: 1, SYNC_MODEL: 1} == adm.in_flight()
    adm.release(a)
    assert a.slot is None
    assert {SYNC_MODEL: 1} == adm.in_flight()


async def test_a_second_release_frees_nobody_elses_slot():
    """Releasing twice gives back one slot: another holder's lane and overall slots stay held."""
    adm = admission(max_in_flight=1)
    a, b, c = holder(adm), holder(adm, SYNC_MODEL), holder(adm)
    async with anyio.create_task_group() as tg:
        await adm.admit(a)
        await blocked(adm, b, tg)  # the overall cap holds B back, though its lane is free
        assert b.slot is None
        adm.release(a)
        with anyio.fail_after(5):
            while b.slot is None:
                await anyio.lowlevel.checkpoint()
        adm.release(a)  # again: must not give back B's overall slot
        with anyio.move_on_after(0.05):
            await adm.admit(c)
        assert c.slot is None  # still capped by B
        assert {SYNC_MODEL: 1} == adm.in_flight()
        adm.release(b)
        with anyio.fail_after(5):
            await adm.admit(c)
        assert {MODEL: 1} == adm.in_flight()


@pytest.mark.parametrize("created", [True, False])
async def test_the_lane_forgets_an_accepted_task_only_if_the_slot_made_one(created):
    """A slot marked `created` tells the lane its accepted task ended; an unused one does not."""
    adm = admission()
    a = holder(adm)
    await adm.admit(a)
    assert a.lane is not None
    assert a.slot is not None
    a.lane.on_success(task=True)
    a.slot.created = created
    adm.release(a)
    assert (0 if created else 1) == a.lane.accepted


async def test_a_waiter_cancelled_by_its_caller_holds_nothing():
    """Cancelled while waiting for a slot, a holder keeps none, and the slot goes to the next."""
    adm = admission(in_flight=1)
    a, b, c = holder(adm), holder(adm), holder(adm)
    await adm.admit(a)
    with anyio.move_on_after(0.01):
        await adm.admit(b)
    assert b.slot is None
    adm.release(a)
    with anyio.fail_after(5):
        await adm.admit(c)
    assert {MODEL: 1} == adm.in_flight()


async def test_close_interrupts_every_waiter_and_refuses_later_admissions():
    """Closing ends each wait with ClosedAdmission, holding nothing; later admits fail at once."""
    adm = admission(in_flight=1)
    a, b, c, d = holder(adm), holder(adm), holder(adm), holder(adm)
    await adm.admit(a)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            failed_b = await blocked(adm, b, tg)
            failed_c = await blocked(adm, c, tg)
            adm.close()
    assert (1, 1) == (len(failed_b), len(failed_c))
    assert (None, None) == (b.slot, c.slot)
    with pytest.raises(ClosedAdmission):
        await adm.admit(d)
    assert d.slot is None
    adm.release(a)
    assert {} == adm.in_flight()


async def test_a_slot_handed_over_by_the_closing_release_is_given_back():
    """A waiter handed a slot just as the client closes still fails and leaks no slot."""
    adm = admission(in_flight=1)
    a, b = holder(adm), holder(adm)
    await adm.admit(a)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            failed = await blocked(adm, b, tg)
            adm.release(a)  # hands the slot to B...
            adm.close()  # ...before B could run
    assert 1 == len(failed)
    assert b.slot is None
    assert {} == adm.in_flight()


def test_each_admission_takes_a_token_of_the_model_rate():
    """Two admissions at 1 per second: the second leaves a window (plus margin) later."""
    times: list[float] = []

    async def main() -> None:
        adm = Admission(
            q.Limits(models={MODEL: q.ModelLimits(in_flight=5, submits_per_second=1)}),
            region="singapore",
            time_scale=1.0,
            rng=random.Random(1),
        )
        for _ in range(2):
            await adm.admit(holder(adm))
            times.append(anyio.current_time())
        assert {MODEL: 2} == adm.in_flight()

    run_virtual(main)
    assert 0.0 == times[0]
    assert 1.0 <= times[1] <= 1.2


def test_repr_names_the_lanes_and_the_state():
    """The repr lists lane models and whether admission is closed."""
    adm = admission()
    adm.lane(request())
    adm.close()
    assert f"<Admission lanes=['{MODEL}'] closed=True>" == repr(adm)
