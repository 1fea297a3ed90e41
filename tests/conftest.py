"""Shared test setup: the pytest plugin, an aioresponses shim, the emulator and Redis fixtures."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import aiohttp
import aioresponses.core
import pytest
from aiohttp.client_reqrep import ConnectionKey
from hypothesis import settings

import aioqwenimage as q
from aioqwenimage.testing import EmulatorLimits, FakeDashScope, ModelQuota
from tests.redis_server import RedisServer, find_redis_server, require_redis_server

# Two shared cores under coverage tracing make example times vary tenfold: no per-example deadline
# (a slow example is not a failure; the properties are what the tests check).
settings.register_profile("shared-machine", deadline=None)
settings.load_profile("shared-machine")

# The package's own pytest plugin (the `fake_dashscope` fixture), loaded here rather than through
# its entry point (disabled in pyproject.toml) so that coverage is running when it is imported.
pytest_plugins = ["aioqwenimage.testing._pytest_plugin"]


class _CompatClientResponse(aiohttp.ClientResponse):
    """
    aiohttp 3.14 made ``stream_writer`` a required argument of ClientResponse, and aioresponses
    (0.7.9, the latest release) does not pass it: pnuckowski/aioresponses#289. A mocked
    response has already been "sent", so aiohttp only reads the writer's ``output_size``.
    """

    class _SentWriter:
        output_size = 0

    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", self._SentWriter())
        super().__init__(method, url, **kwargs)


aioresponses.core.ClientResponse = _CompatClientResponse  # type: ignore[misc]


def connection_refused(host: str = "api.example") -> aiohttp.ClientConnectorError:
    """What aiohttp raises when a connection could not be made (nothing was sent)."""
    key = ConnectionKey(
        host=host,
        port=443,
        is_ssl=True,
        ssl=True,
        proxy=None,
        proxy_auth=None,
        proxy_headers_hash=None,
    )
    return aiohttp.ClientConnectorError(key, OSError(111, "Connection refused"))


# --- the emulator and a client matched to its compressed time ----------------------------------

SCALE = 0.001
"""One simulated second lasts a millisecond: tests never wait real seconds."""


def roomy_limits(in_flight: int = 50) -> EmulatorLimits:
    """Documented limits, but enough room that tests are not paced by qwen-image-plus's 2 slots."""
    return EmulatorLimits(
        models={
            name: ModelQuota(in_flight=in_flight, submits=1000)
            for name in (
                "qwen-image-plus",
                "qwen-image",
                "wan2.2-t2i-flash",
                "wan2.6-t2i",
                "wan2.5-t2i-preview",
            )
        }
    )


def client_limits(in_flight: int = 50) -> q.Limits:
    """Client limits matching `roomy_limits`."""
    return q.Limits(
        models={
            name: q.ModelLimits(in_flight=in_flight, submits_per_second=1000)
            for name in (
                "qwen-image-plus",
                "qwen-image",
                "wan2.2-t2i-flash",
                "wan2.6-t2i",
                "wan2.5-t2i-preview",
            )
        }
    )


def make_client(fake: FakeDashScope, **kwargs: Any) -> q.Client:
    """A client pointed at `fake`, in its compressed time."""
    kwargs.setdefault("limits", client_limits())
    kwargs.setdefault("seed", 7)
    return q.Client(
        api_key=fake.api_key, base_url=fake.base_url, time_scale=fake.time_scale, **kwargs
    )


@pytest.fixture
async def fake():
    async with FakeDashScope(time_scale=SCALE, seed=3, limits=roomy_limits()) as emulator:
        yield emulator


@pytest.fixture
async def client(fake):
    async with make_client(fake) as c:
        yield c


# Clients honour the proxy variables (as httpx does), and so do the CLI processes the tests start:
# a developer's own HTTP_PROXY must not route the suite's loopback traffic to their proxy.
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
MACHINE_PROXY_ENV = {
    name: os.environ[name]
    for base in PROXY_VARIABLES
    for name in (base, base.lower())
    if name in os.environ
}
"""The machine's proxy variables, for the one test that reaches a package index (pip)."""


@pytest.fixture(autouse=True)
def _no_proxy_from_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


# --- a real redis-server (tests/redis_server.py) ------------------------------------------------


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """
    One ``redis-server`` for the session, on a private unix socket; a test may `stop` it and
    `start` it again (the `redis_url` fixture restarts a stopped one). Skipped when none can be
    found, unless ``AIOQWENIMAGE_REQUIRE_REDIS=1`` (CI), then failed.
    """
    with RedisServer(require_redis_server(find_redis_server())) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of an empty, running Redis (``unix:///...``), for ``redis.asyncio.from_url``."""
    if not redis_server.running:
        redis_server.start()
    redis_server.flush()
    return redis_server.url


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use the Redis fixtures carry the ``redis`` marker (``-m "not redis"``)."""
    for item in items:
        if {"redis_server", "redis_url"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.redis)


@pytest.fixture(autouse=True)
def _package_logger_restored() -> Iterator[None]:
    """
    What a test configures on the ``aioqwenimage`` logger (the CLI's ``-v``/``-q`` run in process,
    ``$AIOQWENIMAGE_LOG``) is undone after it, so that no later test inherits a handler or a level.
    """
    logger = logging.getLogger("aioqwenimage")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate
