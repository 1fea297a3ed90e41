# Copyright (c) 2026 aioqwenimage contributors. Licensed under the MIT License.
"""
The link between `aioqwenimage.redis.RedisCoordinator`'s shared windows and pools and Redis.

They meet the ``_coordination`` contract with state kept in Redis (``_redis_scripts``):
`_redis_window.SharedWindow` and `_redis_slots.SharedSlots`. Both go through one `Link`: the
connection's state, the offset between the server's clock and ours, and the work their
synchronous methods leave for the coordinator's worker (they cannot await Redis). When Redis
fails, the `Link` is degraded and every window and pool falls back to local limits sized at the
account's limit divided by the live processes last counted (or, in fail-closed mode, waits for
Redis), until the coordinator reconnects and resynchronises.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, TypeVar

import anyio
import anyio.lowlevel

from aioqwenimage._limits import Clock

if TYPE_CHECKING:
    from aioqwenimage._redis_scripts import Scripts
    from aioqwenimage._redis_slots import SharedSlots
    from aioqwenimage._redis_window import SharedWindow

__all__ = ["Link", "Unavailable"]

logger = logging.getLogger("aioqwenimage")

_T = TypeVar("_T")

# While a window's bank is empty, the forecast of the next event: about one Redis round trip.
BANK_ETA: Final = 0.005
# A banked event unused this long after its time is given back (it would only hold the window).
BANK_GRACE: Final = 0.02
# How long a pool's adaptive limit stays written without being learned again.
SHARED_LIMIT_TTL: Final = 60.0


class Unavailable(Exception):  # noqa: N818 - a state, not an error shown to users
    """Redis did not answer (in time); the caller goes on with local limits."""


class Link:
    """
    The connection to Redis as the windows and pools see it, with the work they leave to it.

    Args:
        scripts: The account's scripts on one Redis client.
        process: This process's unique name.
        clock: The local clock (``anyio.current_time`` in the client).
        fail_closed: While Redis is away, admission waits for it instead of using local limits.
        on_lost: Called once when Redis stops answering (with the error).
    """

    def __init__(
        self,
        scripts: Scripts,
        *,
        process: str,
        clock: Clock,
        fail_closed: bool,
        on_lost: Callable[[BaseException], None],
    ) -> None:
        self.scripts: Scripts = scripts
        self.process: str = process
        self.clock: Clock = clock
        self.fail_closed: bool = fail_closed
        self._on_lost = on_lost
        self.offset: float = 0.0  # server time minus local time
        # Bounds on the offset, from every answer: the server read its clock after we sent and
        # before we received. Their intersection narrows and stays put, where a per-call
        # estimate would jump with each round trip (a busy loop reads answers late) and so
        # squeeze events converted with different offsets closer than the window allows.
        self._low = -math.inf
        self._high = math.inf
        self.processes: int = 1  # live processes last counted
        self.degraded: bool = False
        self._restored = anyio.Event()
        self._restored.set()
        # Set when Redis goes away: the heartbeat starts reconnecting at once, not at its next beat.
        self.went_away: anyio.Event = anyio.Event()
        # Work the synchronous methods leave for the coordinator's worker, in order.
        self.pending: deque[Callable[[], Awaitable[object]]] = deque()
        self.wanting: dict[SharedWindow | SharedSlots, None] = {}
        self.work: anyio.Event = anyio.Event()
        self._sequence = 0

    def __repr__(self) -> str:
        return f"<Link process={self.process} degraded={self.degraded}>"

    def sequence(self, count: int) -> int:
        """The first of `count` fresh numbers, for names of events and leases."""
        first = self._sequence
        self._sequence += count
        return first

    def to_local(self, server_time: float) -> float:
        """A server time on the local clock."""
        return server_time - self.offset

    def to_server(self, local_time: float) -> float:
        """A local time on the server's clock (0: none)."""
        return max(0.0, local_time + self.offset) if math.isfinite(local_time) else 0.0

    async def call(
        self,
        call: Callable[[], Awaitable[_T]],
        *,
        now_of: Callable[[_T], float] | None = None,
    ) -> _T:
        """
        Run one call; learn the clock offset from the server time it returns (`now_of`).

        Raises:
            Unavailable: Redis is away (the link is degraded now), or it failed the call.
        """
        if self.degraded:
            raise Unavailable
        try:
            if self._high == math.inf:  # calls convert times with the offset: learn it first
                sent = self.clock()
                self._learn(await self.scripts.now(), sent)
            sent = self.clock()
            result = await call()
        except Exception as exc:
            self.lost(exc)
            raise Unavailable from exc
        if now_of is not None:
            self._learn(now_of(result), sent)
        return result

    def _learn(self, server_now: float, sent: float) -> None:
        low, high = server_now - self.clock(), server_now - sent
        if low > self._high or high < self._low:  # a clock jumped: start again
            self._low, self._high = low, high
        else:
            self._low, self._high = max(self._low, low), min(self._high, high)
        self.offset = (self._low + self._high) / 2

    def lost(self, exc: BaseException) -> None:
        """Redis failed: fall back to local limits until `restored`."""
        if self.degraded:
            return
        self.degraded = True
        self._restored = anyio.Event()
        self.went_away.set()
        self._on_lost(exc)

    def restored(self) -> None:
        """Redis answers again (and was resynchronised)."""
        self.degraded = False
        self.went_away = anyio.Event()
        self._restored.set()
        self.wake()

    @property
    def away(self) -> bool:
        """
        Lost and not yet `restored`: unlike `degraded`, which the reconnection lifts before it
        resynchronises (to let its own calls through), this holds until that is done.
        """
        return not self._restored.is_set()

    async def wait_restored(self) -> None:
        """Wait until Redis answers again."""
        await self._restored.wait()

    def later(self, call: Callable[[], Awaitable[object]]) -> None:
        """Leave `call` to the coordinator's worker (a synchronous caller cannot await Redis)."""
        self.pending.append(call)
        self.work.set()

    async def send_pending(self) -> None:
        """Send the work left by `later`, in order, until done or Redis goes away."""
        while self.pending and not self.degraded:
            try:
                await self.pending[0]()
            except Unavailable:
                return  # kept: the caller decides whether to drop it
            self.pending.popleft()

    def want(self, user: SharedWindow | SharedSlots) -> None:
        """`user` needs the worker: a window's bank is empty, a pool has waiters."""
        self.wanting[user] = None
        self.work.set()

    def wake(self) -> None:
        """Whoever waits for something may find it now: the worker looks at every user again."""
        self.work.set()
