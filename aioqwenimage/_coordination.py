# Copyright (c) 2026 aioqwenimage contributors. Licensed under the MIT License.
"""
The seam between the limits' users and where the limits are kept: the `Coordinator` protocol.

DashScope's limits are per account (``dashscope-api.md`` §7), and several processes may share one
account. Today every client keeps its limits in process (``_limits.LocalCoordinator``); a later
``RedisCoordinator`` shares them account-wide. The submit lanes (``_lane``) and the query budget
(``_query_budget.QueryBudget``) reach their rate windows and in-flight slots only through this
protocol, so that such a coordinator replaces the local one without touching them.

The contract a shared (e.g. Redis) implementation must meet:

- **Shared** between the processes of an account: the events of every named window (a model's
  submit window ``"submit:<model>"``, the account's query budget ``"queries"``), the pause a 429
  puts on a window (`RateWindow.pause_until`: the latest pause wins, a pause never shortens), and
  the in-flight slots of every named pool (held as leases).
- **Local**, per process: the FIFO order of this process's waiters, the adaptive (AIMD) in-flight
  limit a lane learns from 429s (`SlotPool.set_limit`: a local ceiling, below the shared one),
  and every counter kept for statistics.
- **Tokens may come from elsewhere.** Another process may spend tokens of the same window at any
  time: `RateWindow.next_free` is a forecast, not a promise. A `try_acquire` at that time may
  still fail, but then `next_free` must move past it (the caller sleeps until `next_free`, so a
  forecast that never moves would spin); `acquire` may wait longer than forecast. The
  synchronous methods answer from local state (polls call them in a tight loop): a shared
  implementation keeps a local view of the window, for instance by claiming tokens from the
  shared window in small batches ahead of use and giving back the unused ones.
- **Leases expire.** A slot is held as a `Lease`, released exactly once: `release` is idempotent,
  and releasing a lease that has expired is harmless. A shared store keeps each lease with a
  time to live and renews it while the holder lives, so that a crashed process's slots come back
  by themselves; `Lease.expires` says until when it is held (``inf`` in process).
- **Degrade, never stop.** When the shared store is unreachable, an implementation falls back
  to the local limits (today's behaviour) and reconciles when it is back.

Window lengths are real seconds, already scaled (`WindowSpec.from_rate` applies ``time_scale``
once); times are the injected clock's (``anyio.current_time`` in the client).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

import attrs

if TYPE_CHECKING:
    from aioqwenimage._models import EventKind

from aioqwenimage._settings import _check_rate, rate_window

__all__ = [
    "QUERIES",
    "QUERY_MARGIN",
    "RATE_MARGIN",
    "Coordinator",
    "Lease",
    "RateWindow",
    "SharedCoordinator",
    "SlotPool",
    "WindowSpec",
]

# The service counts a window by arrival, we by sending: jitter (the event loop's lateness in
# sending, the network's in delivering) can squeeze `limit` sends spaced exactly one window apart
# into less than a window on arrival, and a 429 costs a pause. Our windows are held this much
# longer: creates, which leave in bursts of up to a whole window and are larger to read, by
# `RATE_MARGIN`; task queries, whose rate bounds how fast results come when many tasks run (each
# needs a query of its own for its result), by `QUERY_MARGIN`. Measured at the emulator in B5 at
# real time (two cores shared by four clients, Redis and the emulator), the worst squeeze of
# 2,000 queries was 16 ms, and every millisecond of margin costs a thousandth of the account's
# query rate; creates held only 30 ms met a 429 there.
RATE_MARGIN: Final = 0.05
QUERY_MARGIN: Final = 0.03
# The name of the account's window of task queries (polls, lists, cancels).
QUERIES: Final = "queries"


@attrs.frozen
class WindowSpec:
    """
    A window's shape: at most `limit` events in any `length` seconds (real, scaled, margined).

    `margin` is the part of `length` held for arrival jitter (`RATE_MARGIN`, `QUERY_MARGIN`), in
    seconds.
    """

    limit: int
    length: float
    margin: float = 0.0

    @classmethod
    def from_rate(
        cls, count: float, per: float = 1.0, *, scale: float = 1.0, margin: float = RATE_MARGIN
    ) -> WindowSpec:
        """
        The window of `count` events per `per` seconds (see `rate_window`), its length times
        `scale` (tests compress time with it) and held `margin` longer.

        Raises:
            ValueError: `count`, `per` or `scale` is not positive and finite.
        """
        limit, length = rate_window(count, per)
        _check_rate("scale", scale)
        return cls(limit, length * scale * (1 + margin), length * scale * margin)


class Lease(Protocol):
    """One in-flight slot, held until `release` (or until it expires, in a shared store)."""

    @property
    def released(self) -> bool:
        """Given back: by `release`, or by expiry."""
        ...  # pragma: no cover

    @property
    def expires(self) -> float:
        """Until when the slot is held without renewal (``inf``: for ever, in process)."""
        ...  # pragma: no cover

    def release(self) -> None:
        """Give the slot back; again, or after expiry, it does nothing."""
        ...  # pragma: no cover


class RateWindow(Protocol):
    """A named sliding window of tokens, with a pause (a 429), perhaps shared."""

    @property
    def limit(self) -> int:
        """Events allowed per window."""
        ...  # pragma: no cover

    @property
    def window(self) -> float:
        """The window's length in seconds."""
        ...  # pragma: no cover

    @property
    def paused_until(self) -> float:
        """No token before this time (``-inf`` when never paused)."""
        ...  # pragma: no cover

    def pause_until(self, until: float) -> None:
        """Report a throttle: no token before `until`; an earlier time never shortens a pause."""
        ...  # pragma: no cover

    def used(self, now: float) -> int:
        """Tokens taken (or reserved) in the window ending at `now`, or later."""
        ...  # pragma: no cover

    def next_free(self, now: float) -> float:
        """The earliest time, not before `now`, a token is expected to be free (a forecast)."""
        ...  # pragma: no cover

    def try_acquire(self, now: float) -> bool:
        """Take a token at `now` when one is free; else take nothing."""
        ...  # pragma: no cover

    async def acquire(self, *, urgent: bool = False) -> None:
        """
        Reserve the next free token, wait for it (FIFO with this process's callers), take it.
        `urgent`: not held by a pause (the rate still holds), for a request whose delay costs
        more than a 429 would (a remote cancel before the task starts and bills).
        """
        ...  # pragma: no cover


class SlotPool(Protocol):
    """A named pool of in-flight slots, perhaps shared, with a local adaptive limit."""

    @property
    def limit(self) -> int | None:
        """The local limit (``None``: none)."""
        ...  # pragma: no cover

    @property
    def in_flight(self) -> int:
        """Slots held by this process."""
        ...  # pragma: no cover

    @property
    def waiting(self) -> int:
        """Callers of this process waiting for a slot."""
        ...  # pragma: no cover

    def set_limit(self, limit: int | None) -> None:
        """Change the local limit; slots held above a lower one stay held."""
        ...  # pragma: no cover

    def try_lease(self) -> Lease | None:
        """A slot when one is free and nobody waits; never waits."""
        ...  # pragma: no cover

    async def acquire(self) -> Lease:
        """Wait, FIFO, for a slot; release it through the lease."""
        ...  # pragma: no cover

    def release(self) -> None:
        """Release the oldest lease held (for callers that keep a count, not the lease)."""
        ...  # pragma: no cover


class Coordinator(Protocol):
    """
    Where the windows and slots are kept; see the module docstring for the contract.

    The same name gives the same window or pool: that is how processes share them.
    """

    def window(self, name: str, spec: WindowSpec) -> RateWindow:
        """The window called `name`, of the shape `spec`."""
        ...  # pragma: no cover

    def slots(self, name: str, limit: int | None) -> SlotPool:
        """The in-flight pool called `name`, with the local limit `limit` (``None``: none)."""
        ...  # pragma: no cover


@runtime_checkable
class SharedCoordinator(Coordinator, Protocol):
    """
    A `Coordinator` shared between processes (``aioqwenimage.redis.RedisCoordinator``).

    The client binds it when built, runs it in its host while open, and shares sweeps through it:
    one process (the leader) sweeps the task list for the live tasks of all and `route` sends
    each finished one to the process that owns it.
    """

    @property
    def leading(self) -> bool:
        """This process sweeps for the account now."""
        ...  # pragma: no cover

    def bind(
        self,
        *,
        account: str,
        report: Callable[[EventKind, Mapping[str, Any]], None],
        clock: Callable[[], float],
    ) -> None:
        """Belong to one client: its account (a hash of the key), its events and its clock."""
        ...  # pragma: no cover

    def bind_sweeps(
        self,
        *,
        live: Callable[[], Iterable[tuple[str, float]]],
        announce: Callable[[str], bool],
        interval: float,
    ) -> None:
        """Share this process's live tasks; `announce` is told of each found finished."""
        ...  # pragma: no cover

    def account_live(self) -> list[tuple[str, float]]:
        """The live tasks of every process (the leader's sweeps look for these)."""
        ...  # pragma: no cover

    def route(self, task_id: str) -> bool:
        """A sweep found `task_id` finished: tell its owner; whether it was a live task."""
        ...  # pragma: no cover

    async def run(self) -> None:
        """Background work (heartbeats, releases, reconnection) until cancelled."""
        ...  # pragma: no cover
