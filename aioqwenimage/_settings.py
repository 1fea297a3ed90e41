"""
The transport's settings: timeouts, connection pools and answer sizes, retries.

Small frozen value objects (httpx's ``Timeout`` and ``Limits``), checked when built so that a
wrong value fails in the constructor rather than as a hang or a crash under load.
"""

from __future__ import annotations

import math
import random

import attrs

from aioqwenimage import _retry
from aioqwenimage._errors import InvalidRequestError
from aioqwenimage._timeouts import network_timeout

__all__ = ["PoolLimits", "RetryPolicy", "Timeouts"]


@attrs.frozen(kw_only=True)
class Timeouts:
    """
    Network timeouts, in seconds.

    Every request also has a total deadline, so that an answer trickling in a byte at a time
    cannot hold a connection (and the poll or create waiting on it) for ever.

    Attributes:
        connect: Establishing a connection (TCP and TLS).
        control: Between two chunks of the answer of a create, poll, list or cancel.
        generation: A synchronous generation, whole: DashScope allows up to 300 s.
        download: Between two chunks of a result download.
        control_total: A create, whole (connection, request and answer).
        query_total: A poll, list or cancel, whole. Their answers are a few KiB, so this is
            short: a drip-fed answer gives its connection back to the other tasks' polls soon.
        download_total: One result download, whole.
    """

    connect: float = 10.0
    control: float = 30.0
    generation: float = 300.0
    download: float = 60.0
    control_total: float = 60.0
    query_total: float = 10.0
    download_total: float = 300.0

    def __attrs_post_init__(self) -> None:
        for field in attrs.fields(Timeouts):
            value = getattr(self, field.name)
            if value is not None:  # None: a limit that is off, where one may be
                network_timeout(value, f"Timeouts.{field.name}")


@attrs.frozen(kw_only=True)
class PoolLimits:
    """
    Connection limits per pool, how long idle connections are kept, and how large an answer
    may grow.

    Attributes:
        control: Connections for creates.
        query: Connections for polls, lists and cancels; also the most polls awaiting an answer
            at once.
        long: Connections for synchronous generations (each holds one for the whole call).
        download: Connections to the result host.
        keepalive: Idle seconds before a pooled connection is closed; longer than the longest
            poll interval so that polls reuse connections (the 2.0 SDK's 5 s does not).
        max_answer_bytes: The largest API answer read (JSON; real ones are a few KiB); a
            longer one is cut off and treated as unreadable.
        max_download_bytes: The largest result image downloaded (real ones are a few MiB);
            a larger one fails with `UnsafeResultError` and nothing is kept.
    """

    control: int = 32
    query: int = 32
    long: int = 256
    download: int = 16
    keepalive: float = 30.0
    max_answer_bytes: int = 4 * 1024 * 1024
    max_download_bytes: int = 100 * 1024 * 1024

    def __attrs_post_init__(self) -> None:
        for field in attrs.fields(PoolLimits):
            _check_positive(f"PoolLimits.{field.name}", getattr(self, field.name))


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """
    Retries of idempotent calls (list, cancel, downloads): capped, jittered exponential backoff.

    Attributes:
        attempts: Tries in all, the first included.
        base: The first backoff, in seconds.
        cap: The largest backoff, in seconds.
        max_retry_after: The longest server-given wait (``Retry-After``) honoured, in seconds,
            everywhere: polls, creates, lists. A longer one (``inf``, ``1e9``) is cut to this;
            one that is not a non-negative number (NaN, negative, an HTTP date) is ignored.
    """

    attempts: int = 5
    base: float = 0.5
    cap: float = 20.0
    max_retry_after: float = 60.0

    def __attrs_post_init__(self) -> None:
        _check_positive("RetryPolicy.max_retry_after", self.max_retry_after)

    def backoff(self, attempt: int, rng: random.Random, floor: float | None = None) -> float:
        """
        The delay before retry number `attempt` (1-based); `floor` is a ``Retry-After``, waited
        plus up to 10 % of it and 50 ms (``_retry.backoff``, the formula of every retry).
        """
        return _retry.backoff(
            attempt, rng, base=self.base, cap=self.cap, floor=floor, floor_pad=0.05
        )

    def scaled(self, factor: float) -> RetryPolicy:
        """The same policy with every delay times `factor` (tests compress time with it)."""
        return attrs.evolve(
            self,
            base=self.base * factor,
            cap=self.cap * factor,
            max_retry_after=self.max_retry_after * factor,
        )


def _check_positive(name: str, value: object) -> None:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value <= 0
    ):
        msg = f"{name} must be a positive finite number, got {value!r}"
        raise InvalidRequestError(msg, parameter=name)
