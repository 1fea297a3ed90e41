# Copyright (c) 2026 aioqwenimage contributors. Licensed under the MIT License.
"""
One account, many processes: `RedisCoordinator` shares an account's limits through Redis.

DashScope's limits belong to the account (``dashscope-api.md`` §7): submissions per second and
tasks in flight per model, and 20 task queries per second for everything. Several processes on
one key (``uvicorn --workers 4``, replicas, batch workers on several machines) each keep their own
limits unless they share them::

    from aioqwenimage import Client
    from aioqwenimage.redis import RedisCoordinator

    async with Client(coordinator=RedisCoordinator("redis://redis:6379/0")) as client:
        ...

What is shared: every model's submit window, its in-flight slots (as leases with a heartbeat, so
a process that dies gives its slots back within `lease_ttl`), the account's query budget, the
pause a 429 puts on any of them, the adaptive in-flight limit, and the sweeps: one process (the
leader, chosen by a lock with a time to live) sweeps the task list for every process's live tasks
and sends each owner the ids of its finished tasks; per-task polls stay the safety net. What
stays local: each process's own waiting order, its statistics, its overall cap.

When Redis does not answer within `socket_timeout`, the client falls back to local limits sized
at the account's limits divided by the processes last counted, logs a warning and emits a
``coordination_lost`` event; it reconnects with backoff, counts the slots it took meanwhile and
emits ``coordination_restored``. With ``fail_closed=True`` admission waits for Redis instead.

Requires the ``redis`` extra: ``pip install 'aioqwenimage[redis]'``.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import socket
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import anyio
import redis.asyncio
import redis.exceptions

from aioqwenimage._coordination import WindowSpec
from aioqwenimage._models import EventKind
from aioqwenimage._redis_link import Link, Unavailable
from aioqwenimage._redis_scripts import Keys, Scripts
from aioqwenimage._redis_slots import POOL_RETRY, SharedSlots
from aioqwenimage._redis_window import SharedWindow
from aioqwenimage._settings import _check_rate

__all__ = ["RedisCoordinator"]

logger: logging.Logger = logging.getLogger("aioqwenimage")

# Reconnection attempts back off from this to `MAX_BACKOFF` seconds.
FIRST_BACKOFF: Final = 0.05
MAX_BACKOFF: Final = 2.0

Report = Callable[[EventKind, Mapping[str, Any]], None]
LiveTasks = Callable[[], Iterable[tuple[str, float]]]


class RedisCoordinator:
    """
    Shares one account's limits, slots and sweeps between processes through Redis.

    Give each client its own coordinator (one per process); every coordinator of one account
    meets the others under the same keys.

    Args:
        url: The Redis URL (``redis://``, ``rediss://`` or ``unix://``).
        namespace: Names the account's keys; by default a hash of the API key (the key itself
            never goes to Redis). Clients sharing limits must share the namespace.
        lease_ttl: Seconds a slot stays held without a heartbeat (the heartbeat runs three
            times per lease); a process killed outright gives its slots back within this.
        socket_timeout: Seconds to wait for Redis before falling back to local limits.
        fail_closed: While Redis is away, wait for it instead of using local limits.
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str | None = None,
        lease_ttl: float = 15.0,
        socket_timeout: float = 0.5,
        fail_closed: bool = False,
    ) -> None:
        _check_rate("lease_ttl", lease_ttl)
        _check_rate("socket_timeout", socket_timeout)
        self._url = url
        self._namespace = namespace
        self.lease_ttl: float = lease_ttl
        self.socket_timeout: float = socket_timeout
        self.fail_closed: bool = fail_closed
        self.process: str = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        """This process's name in Redis."""
        self.leading: bool = False
        """This process sweeps for the account."""
        self._redis: redis.asyncio.Redis | None = None
        self._link: Link | None = None
        self._windows: dict[str, SharedWindow] = {}
        self._pools: dict[str, SharedSlots] = {}
        self._report: Report = _report_nothing
        self._local_live: LiveTasks = tuple
        self._announce: Callable[[str], bool] = _announce_nothing
        self._interval = 1.0
        self._account_live: dict[str, tuple[str, float]] = {}  # task id: (owner, created)
        self.routed: int = 0
        """Finished tasks of other processes this leader's sweeps sent to their owners."""

    def __repr__(self) -> str:
        # The URL may carry a password: never shown.
        state = "unbound" if self._link is None else ("degraded" if self.degraded else "linked")
        return f"<RedisCoordinator {state} process={self.process}>"

    @property
    def degraded(self) -> bool:
        """Redis is away: the client runs on local limits (or waits, when failing closed)."""
        return self._link is not None and self._link.away

    @property
    def processes(self) -> int:
        """The live processes of the account, at the last heartbeat."""
        return self._link.processes if self._link is not None else 1

    # --- the client binds it ---------------------------------------------------------------------

    def bind(self, *, account: str, report: Report, clock: Callable[[], float]) -> None:
        """
        Called once, by the client that owns this coordinator, when that client is built (the
        connection to Redis opens lazily, in the loop the client runs in).

        Args:
            account: A hash of the API key: the namespace unless one was given.
            report: Emits a client event (coordination lost or restored).
            clock: The client's clock.

        Raises:
            RuntimeError: Another client was bound to it already.
        """
        if self._link is not None:
            msg = "this RedisCoordinator belongs to another client already: create one per client"
            raise RuntimeError(msg)
        self._redis = redis.asyncio.Redis.from_url(
            self._url,
            socket_timeout=self.socket_timeout,
            socket_connect_timeout=self.socket_timeout,
            health_check_interval=0,
        )
        scripts = Scripts(self._redis, Keys(self._namespace or account))
        self._report = report
        self._link = Link(
            scripts,
            process=self.process,
            clock=clock,
            fail_closed=self.fail_closed,
            on_lost=self._lost,
        )

    def bind_sweeps(
        self, *, live: LiveTasks, announce: Callable[[str], bool], interval: float
    ) -> None:
        """
        Share sweeps: `live` gives this process's live tasks, `announce` tells it one finished.

        Every `interval` seconds the live tasks are written for the leader to sweep.
        """
        self._local_live = live
        self._announce = announce
        self._interval = interval

    def _linked(self) -> Link:
        if self._link is None:
            msg = "the coordinator is used before a client bound it"
            raise RuntimeError(msg)
        return self._link

    # --- the Coordinator protocol ----------------------------------------------------------------

    def window(self, name: str, spec: WindowSpec) -> SharedWindow:
        """The account's window `name`."""
        if name not in self._windows:
            self._windows[name] = SharedWindow(self._linked(), name, spec)
        return self._windows[name]

    def slots(self, name: str, limit: int | None) -> SharedSlots:
        """The account's in-flight pool `name` (with a local adaptive `limit`)."""
        if name not in self._pools:
            self._pools[name] = SharedSlots(self._linked(), name, limit, ttl=self.lease_ttl)
        return self._pools[name]

    # --- sweeps ----------------------------------------------------------------------------------

    def account_live(self) -> list[tuple[str, float]]:
        """The live tasks of every process of the account, as the leader last read them."""
        return [(task_id, created) for task_id, (_, created) in self._account_live.items()]

    def route(self, task_id: str) -> bool:
        """A sweep found `task_id` finished: tell the process that owns it."""
        owner = self._account_live.get(task_id, (None, 0.0))[0]
        if owner is None:
            return False
        if owner == self.process:
            return self._announce(task_id)
        link = self._linked()
        channel = link.scripts.keys.finished(owner)
        redis_client = self._redis
        assert redis_client is not None  # noqa: S101 - set with the link
        link.later(lambda: link.call(lambda: redis_client.publish(channel, task_id)))
        # Routed once: the owner's next list of its live tasks says whether it is still live.
        self._account_live.pop(task_id, None)
        self.routed += 1
        return True

    # --- running ---------------------------------------------------------------------------------

    def _lost(self, exc: BaseException) -> None:
        logger.warning(
            "Redis is unreachable (%s); using local limits (1/%d of the account's) until it is "
            "back",
            type(exc).__name__,
            self.processes,
        )
        self._report(
            EventKind.COORDINATION_LOST,
            {
                "error": type(exc).__name__,
                "processes": self.processes,
                "fail_closed": self.fail_closed,
            },
        )

    async def run(self) -> None:
        """The coordinator's background work, until cancelled (the client's host runs it)."""
        link = self._linked()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._heartbeats, link)
                tg.start_soon(self._work, link)
                tg.start_soon(self._listen, link)
                tg.start_soon(self._share_live, link)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(2 * self.socket_timeout):
                await self._leave(link)

    async def _leave(self, link: Link) -> None:
        """Say goodbye: pending releases sent, this process uncounted, its live list removed."""
        await link.send_pending()
        redis_client = self._redis
        assert redis_client is not None  # noqa: S101 - set with the link
        try:
            if not link.degraded:
                await link.scripts.leave(self.process)
                await redis_client.delete(link.scripts.keys.live(self.process))
        except (redis.exceptions.RedisError, OSError):
            pass  # our entries expire by themselves
        finally:
            await redis_client.aclose()

    async def _heartbeats(self, link: Link) -> None:
        """Count the processes, take or keep the lead, renew the leases; reconnect when away."""
        backoff = FIRST_BACKOFF
        while True:
            if link.degraded:
                await anyio.sleep(backoff)
                backoff = min(2 * backoff, MAX_BACKOFF)
                await self._reconnect(link)
                continue
            backoff = FIRST_BACKOFF
            try:
                _, processes, leading = await link.call(
                    lambda: link.scripts.heartbeat(self.process, self.lease_ttl),
                    now_of=lambda r: r[0],
                )
                link.processes = processes
                self.leading = leading
                for pool in list(self._pools.values()):
                    await pool.renew()
            except Unavailable:
                continue
            with anyio.move_on_after(self.lease_ttl / 3):
                await link.went_away.wait()

    async def _reconnect(self, link: Link) -> None:
        """Try Redis again; when it answers, resynchronise and serve every waiter."""
        try:
            with anyio.fail_after(self.socket_timeout):
                assert self._redis is not None  # noqa: S101 - set with the link
                await self._redis.ping()
        except (redis.exceptions.RedisError, OSError, TimeoutError):
            return
        link.degraded = False  # let the resynchronisation's calls through
        try:
            for window in list(self._windows.values()):
                await window.resynchronise()
            for pool in list(self._pools.values()):
                await pool.resynchronise()
        except Unavailable:
            return  # lost again: the link is degraded again
        link.restored()
        logger.warning("Redis is back: limits are shared again")
        self._report(EventKind.COORDINATION_RESTORED, {"processes": link.processes})

    async def _work(self, link: Link) -> None:
        """Send what the synchronous methods left, then serve the windows and pools wanting."""
        while True:
            with anyio.move_on_after(POOL_RETRY):
                await link.work.wait()
            link.work = anyio.Event()
            if link.degraded and link.fail_closed:
                continue
            await link.send_pending()
            if link.degraded:
                # Dropped: the leases released meanwhile expire by themselves (nobody renews
                # them), and a pause still running is shared again on return.
                link.pending.clear()
            wanting = [*link.wanting, *(p for p in self._pools.values() if p.waiting)]
            link.wanting.clear()
            for user in dict.fromkeys(wanting):
                try:
                    if isinstance(user, SharedWindow):
                        await user.refill()
                    else:
                        await user.grant()
                except Unavailable:  # noqa: PERF203 - Redis left: the rest wait for it too
                    # Served on local limits, or once Redis is back; not woken at once: the
                    # retry tick comes back to it.
                    link.wanting[user] = None
                    break

    async def _listen(self, link: Link) -> None:
        """Hear releases anywhere (a pool may have room) and this process's finished tasks."""
        keys = link.scripts.keys
        while True:
            if link.degraded:
                await link.wait_restored()
            assert self._redis is not None  # noqa: S101 - set with the link
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(keys.freed, keys.finished(self.process))
                while not link.degraded:
                    message = await pubsub.get_message(timeout=POOL_RETRY)
                    if message is None:
                        continue
                    channel = _text(message["channel"])
                    data = _text(message["data"])
                    if channel == keys.freed:
                        pool = self._pools.get(data)
                        if pool is not None and pool.waiting:
                            link.want(pool)
                    else:
                        self._announce(data)
            except (redis.exceptions.RedisError, OSError) as exc:
                link.lost(exc)
            finally:
                with anyio.CancelScope(shield=True), anyio.move_on_after(self.socket_timeout):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _share_live(self, link: Link) -> None:
        """
        Write this process's live tasks when they changed (and before their key expires); as the
        leader, read every process's.
        """
        keys = link.scripts.keys
        redis_client = self._redis
        assert redis_client is not None  # noqa: S101 - set with the link
        written: dict[str, str] | None = None
        refreshed = -math.inf
        while True:
            await anyio.sleep(self._interval)
            if link.degraded:
                written = None  # Redis may come back empty: write the list again then
                continue
            live = {task_id: repr(created) for task_id, created in self._local_live()}
            try:
                if live != written or link.clock() - refreshed >= self.lease_ttl / 3:
                    async with redis_client.pipeline(transaction=True) as pipe:
                        pipe.delete(keys.live(self.process))
                        if live:
                            pipe.hset(keys.live(self.process), mapping=live)  # type: ignore[arg-type]
                            pipe.pexpire(keys.live(self.process), round(self.lease_ttl * 1000))
                        await pipe.execute()
                    written, refreshed = live, link.clock()
                if self.leading:
                    self._account_live = await self._read_account_live(redis_client, keys)
                else:
                    self._account_live = {}
            except (redis.exceptions.RedisError, OSError) as exc:
                link.lost(exc)

    async def _read_account_live(
        self, redis_client: redis.asyncio.Redis, keys: Keys
    ) -> dict[str, tuple[str, float]]:
        processes = [_text(p) for p in await redis_client.zrange(keys.processes, 0, -1)]
        async with redis_client.pipeline(transaction=False) as pipe:
            for process in processes:
                pipe.hgetall(keys.live(process))
            tables = await pipe.execute()
        found: dict[str, tuple[str, float]] = {}
        for process, table in zip(processes, tables, strict=True):
            for task_id, created in table.items():
                found[_text(task_id)] = (process, float(_text(created)))
        return found


def _report_nothing(kind: EventKind, detail: Mapping[str, Any]) -> None:
    """Reports before a client binds the coordinator go nowhere."""


def _announce_nothing(task_id: str) -> bool:  # noqa: ARG001 - the signature of `announce`
    """Before sweeps are bound, no task is ours."""
    return False


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
