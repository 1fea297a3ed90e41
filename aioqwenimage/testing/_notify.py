"""
Task-completion events, published as Model Studio publishes them through EventBridge.

When an async task ends (SUCCEEDED or FAILED; whether CANCELED emits one is not documented, so it
does not here), the emulator sends the documented CloudEvents envelope to a configured target,
as an EventBridge HTTP target with a fixed token would: a JSON POST carrying the token in
``x-eventbridge-signature-token``. Delivery is what EventBridge promises, at least once and with
no guaranteed latency: each event comes after a delay drawn from `NotificationTarget.latency`, is
sometimes delivered twice (`duplicate_rate`), sometimes never (`loss_rate`, as when every retry
failed), and is retried after a failed delivery (`retries` more tries, `retry_interval` apart, as
the "3 tries 10-20 s apart" strategy). All delays are simulated seconds, compressed by the
emulator's ``time_scale``.

The publisher learns of ends without a timer per task: the task store reports each task's end time
when it is fixed (`Publisher.started`), and one loop sleeps until the earliest.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import heapq
import itertools
import json
import random
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

import aiohttp
import attrs

from aioqwenimage._parsing import SERVER_TZ
from aioqwenimage.testing._render import _ACCOUNT, _API_KEY_ID, _UNIQUE_KEY_PATHS
from aioqwenimage.testing._tasks import TaskStatus
from aioqwenimage.testing._wire import public

if TYPE_CHECKING:
    from aioqwenimage.testing._tasks import Task

__all__ = ["NotificationTarget", "Publisher", "event_body"]

Deliver = Callable[[bytes, Mapping[str, str]], Awaitable[int]]
"""Delivers one event body with its headers; returns the HTTP status the receiver answered."""

TOKEN_HEADER: Final = "x-eventbridge-signature-token"  # noqa: S105 - a header name
_TICK: Final = 0.05  # real seconds: the longest the loop sleeps (a fake clock may jump)


def _rate(_instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0 <= value <= 1:
        msg = f"{attribute.name} must be in [0, 1], got {value!r}"
        raise ValueError(msg)


def _span(_instance: Any, attribute: attrs.Attribute[Any], value: tuple[float, float]) -> None:
    low, high = value
    if not 0 <= low <= high:
        msg = f"{attribute.name} must be (low, high) with 0 <= low <= high, got {value!r}"
        raise ValueError(msg)


@public
@attrs.frozen(kw_only=True)
class NotificationTarget:
    """
    Where and how the emulator delivers task-completion events.

    Attributes:
        url: The HTTP target (a JSON POST per event); or give `deliver`.
        deliver: Instead of `url`, an async callable given each body and its headers, returning
            the status the receiver answered (an in-process ASGI app, say).
        token: Sent in ``x-eventbridge-signature-token``; ``None`` sends no token.
        latency: (low, high) simulated seconds from a task's end to the event's delivery.
        duplicate_rate: The share of events delivered twice (each copy with its own latency).
        loss_rate: The share of events never delivered.
        retries: Further tries after a delivery answered with a non-2xx status or failed.
        retry_interval: (low, high) simulated seconds between tries.
    """

    url: str | None = None
    deliver: Deliver | None = None
    token: str | None = attrs.field(default=None, repr=False)
    latency: tuple[float, float] = attrs.field(default=(1.0, 5.0), validator=_span)
    duplicate_rate: float = attrs.field(default=0.0, validator=_rate)
    loss_rate: float = attrs.field(default=0.0, validator=_rate)
    retries: int = 2
    retry_interval: tuple[float, float] = attrs.field(default=(10.0, 20.0), validator=_span)

    def __attrs_post_init__(self) -> None:
        if (self.url is None) == (self.deliver is None):
            raise ValueError("give exactly one of url and deliver")
        if self.retries < 0:
            msg = f"retries must not be negative, got {self.retries!r}"
            raise ValueError(msg)


def _iso(epoch: float) -> str:
    moment = dt.datetime.fromtimestamp(epoch, dt.timezone.utc)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def _server_time(epoch: float) -> str:
    return f"{dt.datetime.fromtimestamp(epoch, SERVER_TZ):%Y-%m-%d %H:%M:%S}"


def event_body(task: Task, status: TaskStatus, region: str, event_id: str, now: float) -> bytes:
    """The documented envelope of `task`'s end, as EventBridge delivers it (compact JSON)."""
    assert task.ended is not None  # noqa: S101 - only ended tasks are published
    start = task.scheduled if task.scheduled is not None else task.submitted
    envelope = {
        "specversion": "1.0",
        "id": event_id,
        "source": "acs.dashscope",
        "type": "dashscope:System:AsyncTaskFinish",
        "time": _iso(task.ended),
        "datacontenttype": "application/json;charset=utf-8",
        "aliyunaccountid": _ACCOUNT,
        "aliyunpublishtime": _iso(now),
        "aliyuneventbusname": "default",
        "aliyunregionid": region,
        "data": {
            "task_id": task.task_id,
            "task_status": status.value,
            "request_id": task.request_id,
            "api_key_id": _API_KEY_ID,
            "region": region,
            "start_time": _server_time(start),
            "end_time": _server_time(task.ended),
            "contain_result": False,
            "user_api_unique_key": f"apikey:v1:{_UNIQUE_KEY_PATHS[task.protocol]}:{task.model}",
        },
    }
    return json.dumps(envelope, separators=(",", ":")).encode()


@attrs.define(eq=False)
class _Delivery:
    body: bytes
    task_id: str
    tries: int = 0


class Publisher:
    """
    Publishes every task's end to the current target, from one loop in the emulator's event loop.

    Counts into `counts` (the emulator's ``Stats.notifications``).
    """

    def __init__(
        self,
        *,
        time_scale: float,
        region: str,
        seed: int,
        clock: Callable[[], float],
        counts: Counter[str],
    ) -> None:
        self.target: NotificationTarget | None = None
        self._time_scale = time_scale
        self._region = region
        self._rng = random.Random(f"{seed}:notifications")
        self._clock = clock
        self._queue: list[tuple[float, int, Task | _Delivery]] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self.counts = counts

    def __repr__(self) -> str:
        return f"<Publisher queued={len(self._queue)} {dict(self.counts)}>"

    def started(self, task: Task) -> None:
        """The store fixed `task`'s end time: publish its end then (if a target is set)."""
        if self.target is not None and task.ended is not None:
            self._push(task.ended, task)

    def clear(self) -> None:
        """Forget queued events (the emulator's reset; the stats clear the counts)."""
        self._queue.clear()

    def _push(self, at: float, item: Task | _Delivery) -> None:
        heapq.heappush(self._queue, (at, next(self._seq), item))
        self._wake.set()

    def _draw(self, span: tuple[float, float]) -> float:
        return self._rng.uniform(*span) * self._time_scale

    async def run(self) -> None:
        """Publish due events until cancelled."""
        try:
            while True:
                now = self._clock()
                while self._queue and self._queue[0][0] <= now:
                    _, _, item = heapq.heappop(self._queue)
                    self._fire(item, now)
                wait = _TICK if not self._queue else min(_TICK, self._queue[0][0] - now)
                self._wake.clear()
                # Not `asyncio.wait_for`: on Python 3.11 it drops a cancel that lands as the
                # wait ends (a push and the emulator's close in one step), and the close hung.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(wait, 0.0)):
                        await self._wake.wait()
        finally:
            for sending in list(self._sending):
                sending.cancel()
            if self._session is not None:
                await self._session.close()

    def _fire(self, item: Task | _Delivery, now: float) -> None:
        target = self.target
        if target is None:
            return
        if isinstance(item, _Delivery):
            sending = asyncio.get_running_loop().create_task(self._send(target, item))
            self._sending.add(sending)
            sending.add_done_callback(self._sending.discard)
            return
        status = item.status_at(now)
        if status not in _PUBLISHED:
            return  # cancelled since: no event
        self.counts["published"] += 1
        if self._rng.random() < target.loss_rate:
            self.counts["lost"] += 1
            return
        body = event_body(item, status, self._region, str(uuid.uuid4()), now)
        copies = 1
        if self._rng.random() < target.duplicate_rate:
            self.counts["duplicated"] += 1
            copies = 2
        for _ in range(copies):
            self._push(now + self._draw(target.latency), _Delivery(body, item.task_id))

    async def _send(self, target: NotificationTarget, delivery: _Delivery) -> None:
        delivery.tries += 1
        headers = {"content-type": "application/json;charset=utf-8"}
        if target.token is not None:
            headers[TOKEN_HEADER] = target.token
        status: int | None = None
        try:
            if target.deliver is not None:
                status = await target.deliver(delivery.body, headers)
            else:
                assert target.url is not None  # noqa: S101 - one of the two is set
                if self._session is None:
                    self._session = aiohttp.ClientSession()
                timeout = aiohttp.ClientTimeout(total=5.0)
                async with self._session.post(
                    target.url, data=delivery.body, headers=headers, timeout=timeout
                ) as response:
                    status = response.status
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
            self.counts["failed"] += 1
        if status is not None and 200 <= status < 300:  # noqa: PLR2004
            self.counts["delivered"] += 1
            return
        if status is not None:
            self.counts["refused"] += 1
        if delivery.tries > target.retries:
            self.counts["dead"] += 1
            return
        self._push(self._clock() + self._draw(target.retry_interval), delivery)


_PUBLISHED: Final = frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED})
