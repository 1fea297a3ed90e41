"""
Retries: one backoff formula for every wait after a failure, one loop for idempotent requests.

In the spirit of `stamina`: capped exponential backoff with jitter, a server's ``Retry-After`` as
a floor, a bounded number of attempts. Lists, cancels and result downloads can be sent again
without harm, so `retrying` sends them until they succeed, fail for good or run out of attempts.
A paid request (a create, a synchronous call) is not idempotent: ``_paid`` re-sends it only when
it provably created nothing, in its own loop, but it waits by the same formula
(``RetryPolicy.backoff``); so do the poll scheduler's retries (``PollPolicy.backoff``).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import anyio
import attrs

from aioqwenimage._answers import Response, Verdict
from aioqwenimage._errors import QwenImageError, TransportError

if TYPE_CHECKING:
    from aioqwenimage._settings import RetryPolicy

__all__ = ["Retry", "TryAgain", "backoff", "retrying"]

logger = logging.getLogger("aioqwenimage")

T = TypeVar("T")


def backoff(
    attempt: int,
    rng: random.Random,
    *,
    base: float,
    cap: float,
    floor: float | None = None,
    floor_spread: float = 0.1,
    floor_pad: float = 0.0,
) -> float:
    """
    The delay after failure number `attempt` (1-based) in a row: ``min(cap, base * 2**(n-1))``,
    of which half is random ("equal jitter": spread out, never near zero).

    A server's ``Retry-After`` (`floor`, when positive) is respected, plus a random part of up to
    ``floor_spread * floor + floor_pad``, so that clients told the same second do not all come
    back in it.
    """
    # The exponent is bounded: a large attempt count must reach the cap, not overflow.
    delay = min(cap, base * 2.0 ** min(attempt - 1, 64))
    delay = delay / 2 + rng.uniform(0, delay / 2)
    if floor is not None and floor > 0:
        delay = max(delay, floor + rng.uniform(0, floor_spread * floor + floor_pad))
    return delay


class TryAgain(Exception):  # noqa: N818 - a signal to `retrying`, never raised out of it
    """
    Raised by an attempt that failed in a way another attempt may mend.

    Args:
        error: What to raise when no attempt is left.
        status: The HTTP status that failed, if an answer came.
        retry_after: The answer's ``Retry-After``, the floor of the delay.
        throttled: The answer was a 429.
        answer: The API answer, when it was one (callers of the transport hear of it).
    """

    def __init__(
        self,
        error: QwenImageError,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        throttled: bool = False,
        answer: Response | None = None,
    ) -> None:
        super().__init__(str(error))
        self.error = error
        self.status = status
        self.retry_after = retry_after
        self.throttled = throttled
        self.answer = answer

    @classmethod
    def answered(cls, answer: Response, verdict: Verdict) -> TryAgain:
        """The signal for an API answer whose verdict is `RETRY` or `THROTTLED`."""
        return cls(
            answer.error(),
            status=answer.status,
            retry_after=answer.retry_after,
            throttled=verdict is Verdict.THROTTLED,
            answer=answer,
        )


@attrs.frozen(kw_only=True)
class Retry:
    """
    A retry about to be waited for, as `retrying` tells its `on_retry`.

    Attributes:
        attempt: The attempt that failed (1-based).
        delay: The seconds about to be slept.
        error: Why it failed.
        throttled: It was a 429.
        answer: The API answer that failed it; ``None`` for a network error or a non-API answer.
    """

    attempt: int
    delay: float
    error: QwenImageError
    throttled: bool = False
    answer: Response | None = None


async def retrying(
    once: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    rng: random.Random,
    what: str,
    on_retry: Callable[[Retry], Awaitable[object]] | None = None,
    sleep: Callable[[float], Awaitable[object]] = anyio.sleep,
) -> T:
    """
    Await `once` until it returns, at most ``policy.attempts`` times.

    An attempt is tried again when it raises `TryAgain` or `TransportError` (the network failed:
    an idempotent request may simply be sent again); anything else it raises goes through at
    once. Before each retry the loop logs it at INFO (``"{what}: {why}; retry n of m in s"``),
    awaits `on_retry` (to count it, or to reset what the attempt half wrote), then sleeps
    `backoff`'s delay.

    Raises:
        QwenImageError: The last attempt's error (`TryAgain.error`, or the `TransportError`).
    """
    attempt = 0
    while True:
        attempt += 1
        failure: QwenImageError
        signal: TryAgain | None = None
        try:
            return await once()
        except TryAgain as exc:
            signal, failure = exc, exc.error
        except TransportError as exc:
            failure = exc
        # Raised here, outside the handler: an error must not carry the signal (or anything
        # else of the loop) as its context.
        if attempt >= policy.attempts:
            raise failure
        floor = signal.retry_after if signal is not None else None
        delay = policy.backoff(attempt, rng, floor)
        status = signal.status if signal is not None else None
        logger.info(
            "%s: %s; retry %d of %d in %.2f s",
            what,
            f"HTTP {status}" if status is not None else type(failure).__name__,
            attempt,
            policy.attempts - 1,
            delay,
        )
        if on_retry is not None:
            await on_retry(
                Retry(
                    attempt=attempt,
                    delay=delay,
                    error=failure,
                    throttled=signal is not None and signal.throttled,
                    answer=signal.answer if signal is not None else None,
                )
            )
        await sleep(delay)
