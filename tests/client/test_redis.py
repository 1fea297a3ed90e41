"""Clients sharing one account through a RedisCoordinator, against the emulator and a real Redis."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio

from aioqwenimage import Client, Limits, ModelLimits, PollPolicy
from aioqwenimage.redis import RedisCoordinator
from aioqwenimage.testing import EmulatorLimits, FakeDashScope, ModelQuota

pytestmark = pytest.mark.redis

SCALE = 0.02
KEY = "sk-redis-test-0123456789abcdef"


async def _generate_all(clients: list[Client], per_client: int, model: str) -> list[object]:
    async def one(index: int, client: Client) -> list[object]:
        async with client:
            return await asyncio.gather(
                *(client.generate(f"c{index} p{j}", model=model) for j in range(per_client)),
                return_exceptions=True,
            )

    answers = await asyncio.wait_for(
        asyncio.gather(*(one(i, c) for i, c in enumerate(clients))), timeout=60
    )
    return [answer for batch in answers for answer in batch]


async def test_coordinated_clients_keep_the_accounts_in_flight_cap_and_meet_no_429(redis_url):
    """Three clients on one key and one Redis: qwen-image-plus's cap of 2 holds, no throttle."""
    async with FakeDashScope(api_key=KEY, time_scale=SCALE) as fake:
        clients = [
            Client(
                api_key=KEY,
                base_url=fake.base_url,
                time_scale=SCALE,
                coordinator=RedisCoordinator(redis_url),  # namespace: a hash of the key
            )
            for _ in range(3)
        ]
        results = await _generate_all(clients, 5, "qwen-image-plus")
        stats = fake.stats.to_dict(tasks=False)

    assert all(not isinstance(r, BaseException) for r in results), results
    assert 0 == stats["throttled"]
    assert stats["peak_in_flight"] <= 2
    assert 15 == len(fake.stats.tasks)  # nothing created twice


async def test_the_same_clients_uncoordinated_overrun_the_cap(redis_url):
    """The control: without the coordinator, the three clients are throttled."""
    async with FakeDashScope(api_key=KEY, time_scale=SCALE) as fake:
        clients = [Client(api_key=KEY, base_url=fake.base_url, time_scale=SCALE) for _ in range(3)]
        results = await _generate_all(clients, 5, "qwen-image-plus")

    assert all(not isinstance(r, BaseException) for r in results), results
    assert fake.stats.throttled > 0


async def test_one_leader_sweeps_for_every_client_and_routes_each_completion_to_its_owner(
    redis_url,
):
    """Only the leader lists tasks; the others learn their completions from its sweeps."""
    model = "wan2.5-t2i-preview"
    limits = EmulatorLimits(models={model: ModelQuota(in_flight=40, submits=40, period=1)})
    # Per-task polls come long after the tasks end (8-12 s), so the sweeps find every end
    # first: which process learns a completion does not race which poll comes first.
    poll = PollPolicy(sweep_min_live=1, first_poll=60.0, learn=False)
    async with FakeDashScope(
        api_key=KEY, time_scale=SCALE, limits=limits, durations={"*": (8.0, 12.0)}
    ) as fake:
        coordinators = [RedisCoordinator(redis_url, lease_ttl=1.0) for _ in range(3)]
        clients = [
            Client(
                api_key=KEY,
                base_url=fake.base_url,
                time_scale=SCALE,
                poll=poll,
                limits=_raised(model),
                coordinator=coordinator,
            )
            for coordinator in coordinators
        ]
        results = await _generate_all(clients, 10, model)

    assert all(not isinstance(r, BaseException) for r in results), results
    assert 1 == sum(1 for c in coordinators if c.routed), [c.routed for c in coordinators]
    assert fake.stats.count("list") > 0  # the leader's sweeps


def _raised(model: str) -> Limits:
    return Limits(models={model: ModelLimits(in_flight=40, submits_per_second=40)})


async def test_the_api_key_never_reaches_redis(redis_url):
    async with FakeDashScope(api_key=KEY, time_scale=SCALE) as fake:
        clients = [
            Client(
                api_key=KEY,
                base_url=fake.base_url,
                time_scale=SCALE,
                coordinator=RedisCoordinator(redis_url),
            )
            for _ in range(2)
        ]
        stored = []

        async def look() -> None:
            async with redis.asyncio.from_url(redis_url) as client:
                async for key in client.scan_iter():
                    stored.append(key)
                    kind = await client.type(key)
                    if kind == b"string":
                        stored.append(await client.get(key) or b"")
                    elif kind == b"zset":
                        stored.extend(await client.zrange(key, 0, -1))
                    elif kind == b"hash":
                        stored.extend(x for kv in (await client.hgetall(key)).items() for x in kv)

        async with clients[0], clients[1]:
            handles = [await c.submit("a cat", model="qwen-image-plus") for c in clients]
            await look()
            await asyncio.gather(*(h.wait() for h in handles))

    assert stored  # something was shared
    assert not [item for item in stored if KEY.encode() in item]
