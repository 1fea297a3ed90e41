# Copyright (c) 2026 aioqwenimage contributors. Licensed under the MIT License.
"""
An in-flight pool shared through Redis (`SharedSlots`), for `aioqwenimage.redis.RedisCoordinator`.

Leases live in a sorted set with their expiry, granted in Redis, renewed by the coordinator's
heartbeat (never re-added: a lease that expired is gone) and released in the background
(`Lease.release` is synchronous). Waiters queue here, FIFO within the process; processes queue
in Redis, first come first served, so one that releases and asks again never starves another.
Without Redis, this process's share of the limit is granted locally, and counted in Redis once
it is back.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from collections import deque
from typing import Final

import anyio
import anyio.lowlevel
import attrs

from aioqwenimage._coordination import Lease
from aioqwenimage._limits import InFlightLimiter
from aioqwenimage._redis_link import Link
from aioqwenimage._settings import _check_count

__all__ = ["SharedLease", "SharedSlots"]

logger = logging.getLogger("aioqwenimage")

# How long a pool's adaptive limit stays written without being learned again.
SHARED_LIMIT_TTL: Final = 60.0
# A pool whose waiters found it full looks again this often, whether or not a release was heard
# (the coordinator's worker ticks at this pace).
POOL_RETRY: Final = 0.25
# How long a process keeps its place in a pool's queue without asking again: it asks at least
# every `POOL_RETRY` while a caller waits, so only a process gone (or stalled that long) loses
# it, and holds the others back no longer than this.
QUEUE_TTL: Final = 4 * POOL_RETRY


class SharedLease:
    """A slot of a `SharedSlots` pool, held in Redis (or locally while Redis is away)."""

    __slots__ = ("_pool", "expires", "id", "released", "shared")

    def __init__(self, pool: SharedSlots, lease_id: str, *, shared: bool, expires: float) -> None:
        self._pool = pool
        self.id: str = lease_id
        self.shared: bool = shared
        self.expires: float = expires
        self.released: bool = False

    def __repr__(self) -> str:
        return f"<SharedLease {self.id} released={self.released}>"

    def release(self) -> None:
        """Give the slot back (in Redis, in the background); again, it does nothing."""
        if not self.released:
            self.released = True
            self._pool._give_back(self)  # noqa: SLF001 - the pool's own lease


@attrs.define(eq=False)
class _Waiter:
    event: anyio.Event = attrs.Factory(anyio.Event)
    lease: SharedLease | None = None


class SharedSlots:
    """
    An in-flight pool shared through Redis: leases granted there, waiters queued here (FIFO).

    Args:
        link: The connection.
        name: The pool's name, the same in every process.
        limit: The configured limit (``None``: none; then nothing is shared).
        ttl: How long a lease lives without a heartbeat.
    """

    def __init__(self, link: Link, name: str, limit: int | None, *, ttl: float) -> None:
        if limit is not None:
            _check_count("limit", limit)
        self._link = link
        self._name = name
        self._configured = limit
        self._limit = limit
        self._ttl = ttl
        self._held: dict[SharedLease, None] = {}
        self._waiters: deque[_Waiter] = deque()
        self._queued = False  # holding a place in the pool's queue in Redis
        self._unlimited = InFlightLimiter(None) if limit is None else None

    def __repr__(self) -> str:
        return f"<SharedSlots {self._name} {len(self._held)}/{self._limit}>"

    @property
    def limit(self) -> int | None:
        """The local, adaptive limit (``None``: none)."""
        return self._limit

    @property
    def in_flight(self) -> int:
        """Slots held by this process."""
        if self._unlimited is not None:
            return self._unlimited.in_flight
        return len(self._held)

    @property
    def waiting(self) -> int:
        """Callers of this process waiting for a slot."""
        return len(self._waiters)

    @property
    def held(self) -> list[SharedLease]:
        """The leases this process holds, oldest first."""
        return list(self._held)

    def set_limit(self, limit: int | None) -> None:
        """Change the local limit, and write it where every process reads it."""
        if limit is not None:
            _check_count("limit", limit)
        self._limit = limit
        if self._unlimited is not None:
            self._unlimited.set_limit(limit)
            return
        if limit is not None:
            link = self._link
            link.later(
                lambda: link.call(
                    lambda: link.scripts.set_limit(self._name, limit, SHARED_LIMIT_TTL),
                )
            )
        self._link.want(self)

    def _local_room(self) -> int:
        if self._limit is None:
            return 1 << 30
        cap = self._limit
        if self._link.degraded:
            cap = min(cap, max(1, (self._configured or cap) // max(1, self._link.processes)))
        return cap - len(self._held)

    def try_lease(self) -> Lease | None:
        """A slot without waiting: only a pool without limit, or one on local limits, can say."""
        if self._unlimited is not None:
            return self._unlimited.try_lease()
        link = self._link
        if link.degraded and not link.fail_closed and not self._waiters and self._local_room() > 0:
            return self._grant_local()
        return None

    def _grant_local(self) -> SharedLease:
        link = self._link
        lease_id = f"{link.process}:local:{link.sequence(1)}"
        lease = SharedLease(self, lease_id, shared=False, expires=math.inf)
        self._held[lease] = None
        return lease

    async def acquire(self) -> Lease:
        """Wait, FIFO with this process's callers, for a slot granted account-wide."""
        if self._unlimited is not None:
            return await self._unlimited.acquire()
        await anyio.lowlevel.checkpoint_if_cancelled()
        waiter = _Waiter()
        self._waiters.append(waiter)
        self._link.want(self)
        try:
            await waiter.event.wait()
        except BaseException:
            if waiter.lease is not None:
                waiter.lease.release()  # granted while being cancelled: give it back
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
                if not self._waiters:
                    self._unqueue()
            raise
        assert waiter.lease is not None  # noqa: S101 - set with the event
        return waiter.lease

    async def grant(self) -> None:
        """Grant slots to waiters while the pool has room (the worker calls this)."""
        link = self._link
        while self._waiters:
            room = min(len(self._waiters), self._local_room())
            if room <= 0:
                return  # a release here wants the worker again
            if link.degraded:
                if link.fail_closed:
                    return  # the restore wants every pool again
                for _ in range(room):
                    self._hand(self._grant_local())
                continue
            first = link.sequence(room)
            lease = functools.partial(
                link.scripts.lease,
                self._name,
                limit=self._configured or 1,
                ttl=self._ttl,
                count=room,
                process=link.process,
                first=first,
                queue_ttl=QUEUE_TTL,
            )
            server_now, ids = await link.call(lease, now_of=lambda r: r[0])
            self._queued = len(ids) < room
            expires = link.to_local(server_now + self._ttl)
            for lease_id in ids:
                granted = SharedLease(self, lease_id, shared=True, expires=expires)
                self._held[granted] = None
                self._hand(granted)
            if self._queued:
                # Full account-wide, or others waited longer: a release anywhere, or the retry
                # tick, brings us back (asking again keeps our place in the queue).
                if not self._waiters:
                    self._unqueue()  # the waiters left while we asked
                return

    def _unqueue(self) -> None:
        """Nobody here waits any more: give up the place in Redis's queue (in the background)."""
        if not self._queued:
            return
        self._queued = False
        link = self._link
        if not link.degraded:
            link.later(lambda: link.call(lambda: link.scripts.unqueue(self._name, link.process)))

    def _hand(self, lease: SharedLease) -> None:
        if not self._waiters:  # the waiter left meanwhile: give it back
            lease.release()
            return
        waiter = self._waiters.popleft()
        waiter.lease = lease
        waiter.event.set()

    def _give_back(self, lease: SharedLease) -> None:
        if self._unlimited is not None:  # pragma: no cover - unlimited leases are not ours
            return
        self._held.pop(lease, None)
        link = self._link
        if lease.shared:
            link.later(
                lambda: link.call(
                    lambda: link.scripts.release(self._name, [lease.id]),
                )
            )
        if self._waiters:
            link.want(self)

    def release(self) -> None:
        """
        Give back the oldest slot held.

        Raises:
            RuntimeError: No slot is held.
        """
        if self._unlimited is not None:
            self._unlimited.release()
            return
        if not self._held:
            msg = "release() without a slot held"
            raise RuntimeError(msg)
        next(iter(self._held)).release()

    async def renew(self) -> None:
        """Renew the leases held in Redis (the heartbeat); lost ones are reported, not re-added."""
        leases = [lease for lease in self._held if lease.shared]
        if not leases:
            return
        link = self._link
        server_now, lost = await link.call(
            lambda: link.scripts.renew(self._name, [lease.id for lease in leases], self._ttl),
            now_of=lambda r: r[0],
        )
        expires = link.to_local(server_now + self._ttl)
        for lease in leases:
            lease.expires = expires
        if lost:
            logger.warning(
                "%d slot(s) of %s expired in Redis while still held (the process was away "
                "longer than the lease); they are no longer counted account-wide",
                len(lost),
                self._name,
            )

    async def resynchronise(self) -> None:
        """
        Redis is back: count every slot held here (taken on local limits, or held from before
        and lost if Redis restarted empty), then serve the waiters.
        """
        held = list(self._held)
        if held:
            link = self._link
            await link.call(
                lambda: link.scripts.adopt(self._name, [lease.id for lease in held], self._ttl),
                now_of=lambda r: r,
            )
            expires = link.to_local(link.to_server(link.clock()) + self._ttl)
            for lease in held:
                lease.shared = True
                lease.expires = expires
        self._link.want(self)
