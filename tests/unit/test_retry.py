"""Retries (`_retry`): the backoff formula and the loop of idempotent requests, on a fake sleep."""

from __future__ import annotations

import logging
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

import aioqwenimage as q
from aioqwenimage._answers import Response, Verdict
from aioqwenimage._retry import Retry, TryAgain, backoff, retrying
from aioqwenimage._settings import RetryPolicy

POLICY = RetryPolicy(attempts=4, base=1.0, cap=8.0)


class Sleeps:
    """A sleep that takes no time and remembers how long it was asked to."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


class Attempts:
    """An attempt that fails with the given exceptions in turn, then returns "done"."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "done"


def server_error(status: int = 500) -> TryAgain:
    return TryAgain(q.ServerError(f"HTTP {status}", status=status), status=status)


async def run(once: Attempts, **kwargs: object) -> tuple[str, Sleeps, list[Retry]]:
    sleeps, told = Sleeps(), []

    async def on_retry(retry: Retry) -> None:
        told.append(retry)

    kwargs.setdefault("policy", POLICY)
    result = await retrying(
        once, rng=random.Random(1), what="GET /x", on_retry=on_retry, sleep=sleeps, **kwargs
    )
    return result, sleeps, told


@given(
    attempt=st.integers(1, 10_000),
    floor=st.none() | st.floats(0, 1000),
    seed=st.integers(0, 2**32),
)
def test_backoff_is_capped_equal_jitter_over_a_retry_after_floor(attempt, floor, seed):
    """Half to all of min(cap, base * 2**(n-1)); a Retry-After plus at most its spread and pad."""
    delay = backoff(attempt, random.Random(seed), base=0.5, cap=20.0, floor=floor, floor_pad=0.05)
    full = min(20.0, 0.5 * 2.0 ** min(attempt - 1, 64))
    if floor:
        assert floor <= delay <= max(full, floor * 1.1 + 0.05) * (1 + 1e-12)  # rounding
    else:
        assert full / 2 <= delay <= full


def test_the_policies_wait_by_the_one_formula():
    """RetryPolicy and PollPolicy are the formula with their own parameters, draw for draw."""
    retry, poll = RetryPolicy(base=0.3, cap=4.0), q.PollPolicy(min_interval=0.5, max_backoff=9.0)
    for attempt, floor in [(1, None), (3, 2.0), (12, None), (2, 30.0)]:
        assert retry.backoff(attempt, random.Random(attempt), floor) == backoff(
            attempt, random.Random(attempt), base=0.3, cap=4.0, floor=floor, floor_pad=0.05
        )
        assert poll.backoff(attempt, random.Random(attempt), floor) == backoff(
            attempt, random.Random(attempt), base=0.5, cap=9.0, floor=floor, floor_spread=0.1
        )


async def test_a_success_after_failures_is_returned_after_one_sleep_each():
    """Each retryable failure is told, then slept; the first success is the result."""
    once = Attempts(server_error(), q.TransportError("reset"))
    result, sleeps, told = await run(once)
    assert ("done", 3) == (result, once.calls)
    assert [1, 2] == [r.attempt for r in told]
    assert [r.delay for r in told] == sleeps.delays
    assert 0.5 <= sleeps.delays[0] <= 1.0 and 1.0 <= sleeps.delays[1] <= 2.0
    assert [500, None] == [
        r.error.status if isinstance(r.error, q.APIError) else None for r in told
    ]


async def test_attempts_are_bounded_and_the_last_error_is_raised_bare():
    """After policy.attempts tries the last error goes out, without the signal as its context."""
    once = Attempts(*(server_error(500 + n) for n in range(10)))
    with pytest.raises(q.ServerError) as info:
        await run(once)
    assert (4, 503) == (once.calls, info.value.status)
    assert info.value.__context__ is None and info.value.__cause__ is None


async def test_anything_else_goes_through_at_once():
    """An error that is neither TryAgain nor a network failure is not retried."""
    once = Attempts(q.InvalidRequestError("no"), server_error())
    sleeps = Sleeps()
    with pytest.raises(q.InvalidRequestError):
        await retrying(once, policy=POLICY, rng=random.Random(1), what="x", sleep=sleeps)
    assert (1, []) == (once.calls, sleeps.delays)


async def test_a_retry_after_is_the_floor_of_the_delay():
    """A throttled answer's Retry-After is waited at least, plus at most 10 % and 50 ms."""
    response = Response(status=429, body={"code": "Throttling"}, request_id=None, retry_after=30.0)
    once = Attempts(TryAgain.answered(response, Verdict.THROTTLED))
    _, sleeps, told = await run(once)
    assert 30.0 <= sleeps.delays[0] <= 30.0 * 1.1 + 0.05
    assert (True, response) == (told[0].throttled, told[0].answer)


async def test_each_retry_is_logged_with_its_reason(caplog):
    """INFO says what is retried, why (the status or the error's type), which retry, how soon."""
    caplog.set_level(logging.INFO, logger="aioqwenimage")
    await run(Attempts(server_error(502), q.TransportError("reset")))
    lines = [r.getMessage() for r in caplog.records if r.name == "aioqwenimage"]
    assert 2 == len(lines)
    assert lines[0].startswith("GET /x: HTTP 502; retry 1 of 3 in ")
    assert lines[1].startswith("GET /x: TransportError; retry 2 of 3 in ")
