"""Request shape and retries of the transport, against aioresponses (no server)."""

from __future__ import annotations

import random

import aiohttp
import pytest
from aioresponses import aioresponses
from yarl import URL

import aioqwenimage as q
from aioqwenimage._transport import ConnectFailedError, PoolKind, RetryPolicy, Transport
from tests.conftest import connection_refused

BASE = "https://api.example/api/v1"
FAST = RetryPolicy(attempts=3, base=0.001, cap=0.002)


@pytest.fixture
async def transport():
    t = Transport(
        base_url=BASE, api_key="sk-secret", workspace="ws-1", retry=FAST, rng=random.Random(1)
    )
    t.open()
    yield t
    await t.aclose()


async def test_send_sets_auth_async_and_workspace_headers(transport):
    """A create carries the bearer key, the async header, the workspace and a JSON body."""
    with aioresponses() as mocked:
        mocked.post(
            BASE + "/services/x",
            payload={"output": {"task_id": "t"}, "request_id": "r-body"},
            headers={"X-Request-ID": "r-head"},
        )
        response = await transport.send(
            PoolKind.CONTROL, "POST", "/services/x", body={"p": "狐"}, async_task=True
        )

        call = mocked.requests[("POST", URL(BASE + "/services/x"))][0]
    headers = call.kwargs["headers"]
    assert "Bearer sk-secret" == headers["Authorization"]
    assert "enable" == headers["X-DashScope-Async"]
    assert "ws-1" == headers["X-DashScope-WorkSpace"]
    assert "application/json" == headers["Content-Type"]
    assert '{"p": "狐"}'.encode() == call.kwargs["data"]
    assert (200, "r-head") == (response.status, response.request_id)


async def test_send_reads_retry_after_and_error_bodies(transport):
    """A 429's Retry-After and body become the mapped error's fields."""
    with aioresponses() as mocked:
        mocked.get(
            BASE + "/tasks/t",
            status=429,
            payload={"code": "Throttling.RateQuota", "message": "slow down", "request_id": "r"},
            headers={"Retry-After": "3"},
        )
        response = await transport.send(PoolKind.CONTROL, "GET", "/tasks/t")
    error = response.error()
    assert isinstance(error, q.RateLimitError)
    assert (3.0, "r", True) == (error.retry_after, error.request_id, response.retryable)


async def test_non_json_success_is_a_malformed_server_error(transport):
    """A 200 whose body is not JSON is retryable and maps to a ServerError."""
    with aioresponses() as mocked:
        mocked.get(BASE + "/tasks/t", status=200, body="{oops")
        response = await transport.send(PoolKind.CONTROL, "GET", "/tasks/t")
    assert response.body is None
    assert response.retryable
    assert "MalformedResponse" == response.error().code


async def test_connect_failure_and_dropped_connection_are_told_apart(transport):
    """Connection refused means nothing was sent; a dropped connection means it may have been."""
    with aioresponses() as mocked:
        mocked.post(BASE + "/a", exception=connection_refused())
        mocked.post(BASE + "/b", exception=aiohttp.ServerDisconnectedError())
        with pytest.raises(ConnectFailedError):
            await transport.send(PoolKind.CONTROL, "POST", "/a", body={})
        with pytest.raises(q.TransportError) as info:
            await transport.send(PoolKind.CONTROL, "POST", "/b", body={})
    assert not isinstance(info.value, ConnectFailedError)
    assert "sk-secret" not in str(info.value)


async def test_call_retries_throttling_and_5xx_then_succeeds(transport):
    """Idempotent calls retry 429 and 5xx, reporting each retry."""
    seen: list[int | None] = []

    async def on_retry(response, delay):
        seen.append(response.status if response else None)

    with aioresponses() as mocked:
        url = BASE + "/tasks"
        mocked.get(url, status=429, payload={"code": "Throttling"}, headers={"Retry-After": "0"})
        mocked.get(url, status=500, payload={"code": "InternalError"})
        mocked.get(url, payload={"data": [], "request_id": "r"})
        response = await transport.call("GET", "/tasks", on_retry=on_retry)
    assert [429, 500] == seen
    assert 200 == response.status


async def test_call_spends_a_budget_token_on_every_attempt(transport):
    """A retried query is a query too: `acquire` runs before each attempt."""
    tokens: list[int] = []

    async def acquire() -> None:
        tokens.append(1)

    with aioresponses() as mocked:
        mocked.get(BASE + "/tasks", status=503, payload={"code": "ModelUnavailable"})
        mocked.get(BASE + "/tasks", payload={"data": []})
        await transport.call("GET", "/tasks", acquire=acquire)
    assert 2 == len(tokens)


async def test_call_stops_at_once_on_a_client_error_and_after_the_budget(transport):
    """A 400 is raised at once; persistent 5xx or network errors after `attempts` tries."""
    with aioresponses() as mocked:
        mocked.post(
            BASE + "/c", status=400, payload={"code": "UnsupportedOperation", "message": "m"}
        )
        with pytest.raises(q.InvalidRequestError):
            await transport.call("POST", "/c")
        for _ in range(3):
            mocked.get(BASE + "/d", status=503, payload={"code": "ModelUnavailable"})
        with pytest.raises(q.ServerError):
            await transport.call("GET", "/d")
        for _ in range(3):
            mocked.get(BASE + "/e", exception=aiohttp.ClientOSError())
        with pytest.raises(q.TransportError):
            await transport.call("GET", "/e")


async def test_quota_429_is_not_retried(transport):
    """An exhausted allocation is not throttling: no retry."""
    with aioresponses() as mocked:
        mocked.get(BASE + "/f", status=429, payload={"code": "Throttling.AllocationQuota"})
        with pytest.raises(q.QuotaExceededError):
            await transport.call("GET", "/f")


async def test_download_sends_no_credentials(transport):
    """Result downloads never carry the API key."""
    chunks: list[bytes] = []

    async def sink(chunk: bytes) -> None:
        chunks.append(chunk)

    with aioresponses() as mocked:
        mocked.get("https://oss.example/a.png", body=b"PNGDATA")
        answer = await transport.download("https://oss.example/a.png", sink)
        call = mocked.requests[("GET", URL("https://oss.example/a.png"))][0]
    assert 200 == answer.status
    assert b"PNGDATA" == b"".join(chunks)
    assert "Authorization" not in call.kwargs["headers"]


async def test_closed_transport_refuses_requests():
    """After aclose, requests fail clearly instead of reopening silently."""
    t = Transport(base_url=BASE, api_key="k")
    t.open()
    await t.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await t.send(PoolKind.CONTROL, "GET", "/tasks/x")


def test_backoff_is_capped_jittered_and_floored():
    """Backoff grows, stays under the cap, and never undercuts Retry-After."""
    policy = RetryPolicy(attempts=10, base=1.0, cap=8.0)
    rng = random.Random(3)
    delays = [policy.backoff(n, rng) for n in range(1, 8)]
    assert all(0.5 <= d <= 8.0 for d in delays)
    assert delays[0] <= 1.0 and delays[-1] >= 4.0
    assert policy.backoff(1, rng, floor=5.0) >= 5.0
    assert 0.5 == policy.scaled(0.5).base
