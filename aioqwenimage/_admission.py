"""
Admission: who may send a paid request now. A slot of the model's lane and of the client's overall
cap, then a submission token of the model's rate window.

A slot is held from admission until the service stops counting the task (its terminal poll), so
the lanes count what the service holds; it is a `Slot` lease that the flight keeps and that is
released exactly once, whoever ends the generation. Closing the client interrupts every wait here
and refuses new admissions, so nothing leaves once `Client.aclose` began.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Protocol

import anyio
import attrs

from aioqwenimage._coordination import Coordinator, Lease
from aioqwenimage._lane import SubmitLane
from aioqwenimage._limits import make_overall_cap
from aioqwenimage._settings import Limits

if TYPE_CHECKING:
    from aioqwenimage._requests import PreparedRequest

__all__ = ["Admission", "Holder", "Slot"]


@attrs.define(eq=False)
class Slot:
    """An in-flight slot held in one lane and in the overall cap; `created`: a task exists."""

    lane: SubmitLane
    lease: Lease  # the lane's
    overall: Lease  # the overall cap's
    created: bool = False


class Holder(Protocol):
    """What holds a slot: a generation's flight."""

    lane: SubmitLane | None
    slot: Slot | None


class Admission:
    """The lanes of one client, by model, and its overall in-flight cap."""

    def __init__(
        self,
        limits: Limits,
        *,
        region: str,
        time_scale: float,
        rng: random.Random,
        coordinator: Coordinator | None = None,
    ) -> None:
        self._limits = limits
        self._coordinator = coordinator
        self._region = region
        self._time_scale = time_scale
        self._rng = rng
        self._lanes: dict[str, SubmitLane] = {}
        self._overall = make_overall_cap(limits.max_in_flight)
        self._waiting: set[anyio.CancelScope] = set()
        self._closed = False

    def __repr__(self) -> str:
        return f"<Admission lanes={sorted(self._lanes)} closed={self._closed}>"

    def lane(self, request: PreparedRequest) -> SubmitLane:
        """The lane of `request`'s model, created with its limits on first use."""
        lane = self._lanes.get(request.model)
        if lane is None:
            documented = request.spec.default_limits(self._region)
            lane = SubmitLane.from_limits(
                self._limits.for_model(request.model, documented),
                scale=self._time_scale,
                rng=self._rng,
                # The same name in every process: a shared coordinator shares the lane by it.
                name=f"submit:{request.model}",
                coordinator=self._coordinator,
            )
            self._lanes[request.model] = lane
        return lane

    def in_flight(self) -> dict[str, int]:
        """Slots held now, by model (models holding none left out)."""
        return {model: lane.in_flight for model, lane in self._lanes.items() if lane.in_flight}

    async def admit(self, holder: Holder) -> None:
        """
        Take a slot and a submission token for `holder`; closing the client interrupts the wait.

        Raises:
            ClosedAdmission: The client closed first (no slot is held then).
        """
        scope = anyio.CancelScope()
        self._waiting.add(scope)
        try:
            with scope:
                await self._acquire_slot(holder)
                assert holder.lane is not None  # noqa: S101
                await holder.lane.acquire_submit()
        except BaseException:
            self.release(holder)
            raise
        finally:
            self._waiting.discard(scope)
        if self._closed:  # the slot may have been handed over by the close itself
            self.release(holder)
            raise ClosedAdmission

    async def _acquire_slot(self, holder: Holder) -> None:
        assert holder.lane is not None  # noqa: S101
        if self._closed:
            raise ClosedAdmission
        overall = await self._overall.acquire()
        try:
            lease = await holder.lane.acquire_slot()
        except BaseException:
            overall.release()
            raise
        holder.slot = Slot(holder.lane, lease, overall)

    def release(self, holder: Holder) -> None:
        """Give back `holder`'s slot, if it holds one (a second release is harmless)."""
        slot, holder.slot = holder.slot, None
        if slot is not None:
            slot.lane.release_slot(slot.lease, task=slot.created)
            slot.overall.release()

    def close(self) -> None:
        """Refuse admissions from now on and interrupt every wait for one."""
        self._closed = True
        for scope in self._waiting:
            scope.cancel()


class ClosedAdmission(Exception):  # noqa: N818 - a signal between the client's parts
    """The client closed while (or before) a generation waited for admission."""
