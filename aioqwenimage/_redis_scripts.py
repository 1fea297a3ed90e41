# Copyright (c) 2026 aioqwenimage contributors. Licensed under the MIT License.
"""
The Lua scripts that keep an account's shared limits in Redis, and the names of their keys.

Every decision that several processes could race on is one script, run atomically by Redis, and
every time in a script is the server's (``TIME``): the clients' clocks are never compared with
each other. Times cross the wire as decimal strings (Lua numbers returned to Redis lose their
fraction).

- A rate window is a sorted set of events scored by their time, the same exact sliding log as
  `_limits.SlidingWindow`: a reservation is appended at the earliest admissible time (never before
  the latest event) and its time returned, so the caller sleeps until then: no polling, no herd.
  Removing an event (a cancelled or unused reservation) leaves the log admissible.
- A window's pause (a 429's ``Retry-After``) is one key holding the latest time paused until.
- An in-flight pool is a sorted set of leases scored by their expiry: a lease is granted while
  fewer unexpired ones are held than the pool's limit (and the adaptive limit some process last
  wrote); a heartbeat renews the leases a process still holds, never adds one. Processes that
  found the pool full queue in a sorted set scored by when they began waiting, each entry alive
  while its process keeps asking: a slot freed goes first to those waiting longest (one each),
  and one served goes to the back, so no process is starved by others that release and re-take.
- Processes announce themselves in a sorted set scored by expiry; the sweeping leader holds a
  key with a time to live.

All keys of one account share one hash tag, ``{namespace}``, so they live in one Redis Cluster
slot and the scripts may touch several of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    import redis.asyncio

__all__ = ["Keys", "Reservation", "Scripts"]

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function fmt(x) return string.format('%.6f', x) end
"""

# KEYS: window, pause. ARGV: limit, length, count, not_before, member prefix, first sequence no.,
# whether the pause holds ('1'; '0' for an urgent event). Returns: now, pause, events in the
# window after, then member, time for each reservation.
_RESERVE = (
    _NOW
    + """
local limit, length = tonumber(ARGV[1]), tonumber(ARGV[2])
local count, after = tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - length)
local pause = tonumber(redis.call('GET', KEYS[2]) or '0')
local out = {}
local last = now
for i = 1, count do
  local free = math.max(now, after)
  -- An urgent event goes now, ahead of the pause and of the events reserved behind it, when no
  -- window around now would then hold more than the limit; else it waits like any other.
  local urgent = ARGV[7] == '0' and redis.call(
    'ZCOUNT', KEYS[1], '(' .. fmt(free - length), '(' .. fmt(free + length)) < limit
  local n = urgent and 0 or redis.call('ZCARD', KEYS[1])
  if not urgent then free = math.max(free, pause) end
  if n > 0 then
    local latest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
    free = math.max(free, tonumber(latest[2]))
    if n >= limit then
      local kth = redis.call('ZRANGE', KEYS[1], -limit, -limit, 'WITHSCORES')
      free = math.max(free, tonumber(kth[2]) + length)
    end
  end
  local member = ARGV[5] .. ':' .. (tonumber(ARGV[6]) + i - 1)
  redis.call('ZADD', KEYS[1], free, member)
  out[#out + 1] = member
  out[#out + 1] = fmt(free)
  last = free
end
redis.call('PEXPIRE', KEYS[1], math.ceil((last - now + 2 * length) * 1000) + 1000)
local result = {fmt(now), fmt(pause), redis.call('ZCARD', KEYS[1])}
for _, v in ipairs(out) do result[#result + 1] = v end
return result
"""
)

# KEYS: window, pause. ARGV: members. Returns: now, pause.
_GIVE_BACK = (
    _NOW
    + """
if #ARGV > 0 then redis.call('ZREM', KEYS[1], unpack(ARGV)) end
return {fmt(now), fmt(tonumber(redis.call('GET', KEYS[2]) or '0'))}
"""
)

# KEYS: pause. ARGV: until (server time). Returns: now, the pause in force.
_PAUSE = (
    _NOW
    + """
local pause = math.max(tonumber(ARGV[1]), tonumber(redis.call('GET', KEYS[1]) or '0'))
if pause > now then
  redis.call('SET', KEYS[1], fmt(pause), 'PX', math.ceil((pause - now) * 1000) + 1000)
end
return {fmt(now), fmt(pause)}
"""
)

# KEYS: pool, shared limit, queue, queue expiries. ARGV: limit, ttl, count, process (the lease
# prefix), first sequence no., queue ttl. Returns: now, then each lease granted (fewer than
# count, or none, when the pool is full or the processes waiting longer claim what is free).
_LEASE = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now)) do
  redis.call('ZREM', KEYS[3], gone)
end
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
local limit = tonumber(ARGV[1])
local shared = redis.call('GET', KEYS[2])
if shared then limit = math.min(limit, tonumber(shared)) end
local ttl, count, process = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local place = redis.call('ZSCORE', KEYS[3], process)
local ahead
if place then
  ahead = redis.call('ZCOUNT', KEYS[3], '-inf', '(' .. place)
else
  ahead = redis.call('ZCARD', KEYS[3])
end
local room = math.max(0, math.min(count, limit - redis.call('ZCARD', KEYS[1]) - ahead))
local result = {fmt(now)}
for i = 1, room do
  local id = process .. ':' .. (tonumber(ARGV[5]) + i - 1)
  redis.call('ZADD', KEYS[1], now + ttl, id)
  result[#result + 1] = id
end
redis.call('PEXPIRE', KEYS[1], math.ceil(ttl * 2000))
if room < count then
  -- Still wanting: queue at the back, or keep the place held (served some: back to the end).
  if room > 0 or not place then redis.call('ZADD', KEYS[3], now, process) end
  local queue_ttl = tonumber(ARGV[6])
  redis.call('ZADD', KEYS[4], now + queue_ttl, process)
  redis.call('PEXPIRE', KEYS[3], math.ceil(queue_ttl * 2000))
  redis.call('PEXPIRE', KEYS[4], math.ceil(queue_ttl * 2000))
elseif place then
  redis.call('ZREM', KEYS[3], process)
  redis.call('ZREM', KEYS[4], process)
end
return result
"""
)

# KEYS: queue, queue expiries. ARGV: process. It no longer waits (its callers left).
_UNQUEUE = """
redis.call('ZREM', KEYS[1], ARGV[1])
return redis.call('ZREM', KEYS[2], ARGV[1])
"""

# KEYS: pool. ARGV: ttl, then lease ids held. Refreshes those still there (XX: never adds one).
# Returns: now, then the ids no longer held (expired while this process was away).
_RENEW = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local result = {fmt(now)}
local expiry = now + tonumber(ARGV[1])
for i = 2, #ARGV do
  if redis.call('ZADD', KEYS[1], 'XX', 'CH', expiry, ARGV[i]) == 0 then
    if not redis.call('ZSCORE', KEYS[1], ARGV[i]) then result[#result + 1] = ARGV[i] end
  end
end
if #ARGV > 1 then redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[1]) * 2000)) end
return result
"""
)

# KEYS: pool. ARGV: ttl, then the lease ids a process holds after Redis was away (taken on local
# limits, or lost if Redis restarted empty). Adds them whatever the limit (they are held: the
# count must say so), so new grants wait until it is respected again.
_ADOPT = (
    _NOW
    + """
local expiry = now + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], expiry, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[1]) * 2000))
return {fmt(now)}
"""
)

# KEYS: pool. ARGV: channel, pool name, lease ids. Returns: how many were still held.
_RELEASE = """
local n = redis.call('ZREM', KEYS[1], unpack(ARGV, 3))
redis.call('PUBLISH', ARGV[1], ARGV[2])
return n
"""

# KEYS: processes, leader. ARGV: process id, ttl. Returns: now, live processes, leading (0/1).
_HEARTBEAT = (
    _NOW
    + """
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.ceil(ttl * 2000))
local leader = redis.call('GET', KEYS[2])
local leading = 0
if leader == ARGV[1] or not leader then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', math.ceil(ttl * 1000))
  leading = 1
end
return {fmt(now), redis.call('ZCARD', KEYS[1]), leading}
"""
)

# KEYS: processes, leader. ARGV: process id. A process leaving gives up its place at once.
_LEAVE = """
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 0
"""


@attrs.frozen
class Keys:
    """The names of one account's keys and channels, all under one hash tag."""

    namespace: str

    @property
    def prefix(self) -> str:
        """What every key starts with: the hash tag keeps an account in one cluster slot."""
        return f"aioqwenimage:{{{self.namespace}}}"

    def window(self, name: str) -> str:
        """The events of the window `name`."""
        return f"{self.prefix}:window:{name}"

    def pause(self, name: str) -> str:
        """The pause of the window `name`."""
        return f"{self.prefix}:pause:{name}"

    def pool(self, name: str) -> str:
        """The leases of the in-flight pool `name`."""
        return f"{self.prefix}:pool:{name}"

    def queue(self, name: str) -> str:
        """The processes waiting for the pool `name`, scored by when they began waiting."""
        return f"{self.prefix}:queue:{name}"

    def queued_until(self, name: str) -> str:
        """When each entry of the pool's queue lapses unless its process asks again."""
        return f"{self.prefix}:queued:{name}"

    def shared_limit(self, name: str) -> str:
        """The adaptive limit of the pool `name`, as last learned by any process."""
        return f"{self.prefix}:limit:{name}"

    @property
    def processes(self) -> str:
        """The live processes, scored by when their heartbeat expires."""
        return f"{self.prefix}:processes"

    @property
    def leader(self) -> str:
        """The process that sweeps for the account."""
        return f"{self.prefix}:leader"

    def live(self, process: str) -> str:
        """The live tasks of `process` (task id: creation time), for the leader's sweeps."""
        return f"{self.prefix}:live:{process}"

    @property
    def freed(self) -> str:
        """The channel a released slot is announced on (the message: the pool's name)."""
        return f"{self.prefix}:freed"

    def finished(self, process: str) -> str:
        """The channel the leader sends `process` the ids of its tasks a sweep found finished."""
        return f"{self.prefix}:finished:{process}"


@attrs.frozen
class Reservation:
    """The answer of a reservation: server times, and the events reserved."""

    now: float
    pause: float
    used: int
    events: tuple[tuple[str, float], ...]  # (member, time)


def _floats(values: Sequence[Any]) -> list[float]:
    return [float(_text(v)) for v in values]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Scripts:
    """The scripts, registered on one Redis client, as typed coroutines."""

    def __init__(self, redis: redis.asyncio.Redis, keys: Keys) -> None:
        self.keys: Keys = keys
        self._redis = redis
        register = redis.register_script
        self._reserve = register(_RESERVE)
        self._give_back = register(_GIVE_BACK)
        self._pause = register(_PAUSE)
        self._lease = register(_LEASE)
        self._renew = register(_RENEW)
        self._adopt = register(_ADOPT)
        self._release = register(_RELEASE)
        self._unqueue = register(_UNQUEUE)
        self._heartbeat = register(_HEARTBEAT)
        self._leave = register(_LEAVE)

    async def now(self) -> float:
        """The server's clock."""
        seconds, microseconds = await self._redis.time()
        return float(seconds) + float(microseconds) / 1e6

    async def reserve(
        self,
        name: str,
        *,
        limit: int,
        length: float,
        count: int,
        not_before: float,
        prefix: str,
        first: int,
        urgent: bool = False,
    ) -> Reservation:
        """
        Reserve `count` events of the window `name`, each at its earliest admissible time (not
        held by the window's pause when `urgent`).
        """
        k = self.keys
        raw = await self._reserve(
            keys=[k.window(name), k.pause(name)],
            args=[limit, repr(length), count, repr(not_before), prefix, first, 0 if urgent else 1],
        )
        now, pause = _floats(raw[:2])
        rest = raw[3:]
        events = tuple((_text(rest[i]), float(_text(rest[i + 1]))) for i in range(0, len(rest), 2))
        return Reservation(now=now, pause=pause, used=int(raw[2]), events=events)

    async def give_back(self, name: str, members: Sequence[str]) -> tuple[float, float]:
        """Remove reserved events (unused or cancelled); returns the server's now and pause."""
        k = self.keys
        now, pause = _floats(
            await self._give_back(keys=[k.window(name), k.pause(name)], args=list(members))
        )
        return now, pause

    async def pause(self, name: str, until: float) -> tuple[float, float]:
        """Pause the window `name` until `until` (server time); returns now and the pause."""
        now, pause = _floats(await self._pause(keys=[self.keys.pause(name)], args=[repr(until)]))
        return now, pause

    async def lease(
        self,
        name: str,
        *,
        limit: int,
        ttl: float,
        count: int,
        process: str,
        first: int,
        queue_ttl: float,
    ) -> tuple[float, list[str]]:
        """
        Up to `count` leases of the pool `name` for `process`; returns the server's now and
        those granted. Short of `count`, the process keeps (or takes) its place in the pool's
        queue for `queue_ttl` seconds: it must ask again within that time to keep it.
        """
        k = self.keys
        raw = await self._lease(
            keys=[k.pool(name), k.shared_limit(name), k.queue(name), k.queued_until(name)],
            args=[limit, repr(ttl), count, process, first, repr(queue_ttl)],
        )
        return float(_text(raw[0])), [_text(v) for v in raw[1:]]

    async def unqueue(self, name: str, process: str) -> None:
        """`process` no longer waits for the pool `name`: its place in the queue is given up."""
        k = self.keys
        await self._unqueue(keys=[k.queue(name), k.queued_until(name)], args=[process])

    async def renew(self, name: str, ids: Sequence[str], ttl: float) -> tuple[float, list[str]]:
        """Renew the leases `ids`; returns the server's now and the ids no longer held."""
        raw = await self._renew(keys=[self.keys.pool(name)], args=[repr(ttl), *ids])
        return float(_text(raw[0])), [_text(v) for v in raw[1:]]

    async def adopt(self, name: str, ids: Sequence[str], ttl: float) -> float:
        """Count the leases `ids` as held (after Redis was away); returns the server's now."""
        raw = await self._adopt(keys=[self.keys.pool(name)], args=[repr(ttl), *ids])
        return float(_text(raw[0]))

    async def release(self, name: str, ids: Sequence[str]) -> int:
        """Release the leases `ids` and tell every process; returns how many were still held."""
        k = self.keys
        return int(await self._release(keys=[k.pool(name)], args=[k.freed, name, *ids]))

    async def set_limit(self, name: str, limit: int, ttl: float) -> None:
        """Write the pool's adaptive limit, for every process, for `ttl` seconds."""
        await self._redis.set(self.keys.shared_limit(name), limit, px=max(1, round(ttl * 1000)))

    async def heartbeat(self, process: str, ttl: float) -> tuple[float, int, bool]:
        """Say `process` lives; returns the server's now, live processes, and whether it leads."""
        k = self.keys
        raw = await self._heartbeat(keys=[k.processes, k.leader], args=[process, repr(ttl)])
        return float(_text(raw[0])), int(raw[1]), bool(int(raw[2]))

    async def leave(self, process: str) -> None:
        """`process` stops: it is no longer counted, and gives up leading."""
        k = self.keys
        await self._leave(keys=[k.processes, k.leader], args=[process])
