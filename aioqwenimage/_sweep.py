"""
Sweeps: many tasks' completions learned from one list query.

Per-task polling spends one query per task per look, and the account has 20 queries per second
for everything; with hundreds of tasks in flight that buys few looks per task, so results are seen
late and each late result keeps an in-flight slot idle. One ``GET /tasks?status=SUCCEEDED`` over
the window in which our live tasks were created answers for all of them at once. A sweep announces
each finished task it finds; the scheduler then polls that task at once, which fetches its result
(list rows carry no image URLs).

Sweeps complement polls, they never replace them: a task is still polled on its own schedule, so
nothing depends on the list endpoint's semantics. Once a sweep has announced a completion before
the task's own poll saw it (`trusted`), the poller stretches the per-task schedule; before, only
the first poll of a task submitted among many (sweeps run then) comes later. When most tasks left
to sweeps are found ended by their own polls instead, the poller returns to the usual pace
(`distrust`). A list endpoint that answers with a client error turns sweeping off.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import anyio

from aioqwenimage._answers import Verdict, status_verdict
from aioqwenimage._errors import APIError, QwenImageError
from aioqwenimage._task_list import ListPage, list_pages, list_query

__all__ = ["LiveTask", "Sweeper"]

logger = logging.getLogger("aioqwenimage")

PAGE_SIZE: Final = 100
# The window starts this long before our oldest live task's creation: the list filters by the
# service's clock, ours may be off by a second or two, and the bounds have one-second resolution.
WINDOW_MARGIN: Final = 2.0
# Once this many of our tasks were seen in the list, the service's clock is known against ours
# (their creation times there against ours: the skew less each create answer's latency), and the
# window starts `SKEW_MARGIN` before the oldest live task in the service's time: every second
# of margin is a second of finished tasks read again, and they decide how many pages a sweep
# reads. The margin covers a create answer slower than the slowest of the samples.
SKEW_SAMPLES: Final = 8
SKEW_MARGIN: Final = 0.5
# A creation time in the list further than this from ours is not a clock's skew but garbage.
MAX_SKEW: Final = 300.0
# Every this many sweeps, also look for FAILED tasks (rare; polls would find them anyway). Each
# such look that finds none of ours doubles the gap, up to `FAILED_EVERY_MAX`, and one that finds
# some brings it back: with no failures a FAILED list was about one list query in nine, queries
# the results of finished tasks wait for when the budget is scarce (B5).
FAILED_EVERY: Final = 8
FAILED_EVERY_MAX: Final = 64
# Most finished tasks in a sweep's window are long known (the oldest live task was created among
# many that ended since), and a second page costs a second query. So once the service's clock is
# known, a sweep starts at the second from which the finished tasks the last sweeps read fill
# `FIT` of a page (the rest is room for those finished since), and only every `FULL_EVERY`-th
# sweep reaches back to the oldest live task: the few live tasks older than that wait longer.
# Only a few: when more than `LEFT_OUT` of them would wait (thousands in flight, hundreds
# finishing a second), every sweep reads the whole window.
FIT: Final = 0.8
FULL_EVERY: Final = 8
LEFT_OUT: Final = 0.1

LiveTask = tuple[str, float]
"""A live task as the sweeper sees it: its id and its creation time (epoch seconds, ours)."""


class Sweeper:
    """
    Looks for finished tasks among the live ones with the list endpoint, periodically.

    Args:
        list_page: Sends one list query with these parameters (budget spent, retried).
        live: The live tasks now (id and creation time), without those already announced.
        announce: Called with the id of each live task a sweep found finished.
        interval: Seconds between sweeps at the least.
        min_live: Below this many live tasks, per-task polls are cheaper: no sweep.
        share: The part of the query budget sweeps may take, as queries per second.
        wall_clock: The current epoch time (the list's window is in wall-clock time).
        leading: Whether this process sweeps now: processes sharing an account through a
            coordinator take turns, one leader sweeping for all.
    """

    def __init__(
        self,
        *,
        list_page: ListPage,
        live: Callable[[], Iterable[LiveTask]],
        announce: Callable[[str], bool],
        interval: float,
        min_live: int,
        share: float,
        wall_clock: Callable[[], float] = time.time,
        leading: Callable[[], bool] = lambda: True,
    ) -> None:
        self._list_page = list_page
        self._live = live
        self._announce = announce
        self._interval = interval
        self._min_live = min_live
        self._share = share
        self._now = wall_clock
        self._leading = leading
        self.enabled = True
        # Once a sweep's finding was confirmed (`trust`), per-task polls are stretched, so
        # sweeps must go on while any task is live, however few.
        self.trusted = False
        self.queries = 0
        self.announced = 0
        # The service's creation times less ours, of recently found tasks (see `SKEW_SAMPLES`).
        self._skews: deque[float] = deque(maxlen=64)
        # The service's creation times of the finished tasks the last sweeps read (see `FIT`).
        self._finished: list[float] = []
        self._trimmed = 0  # sweeps since the last that reached back to the oldest live task
        self._failed_every = FAILED_EVERY
        self._until_failed = FAILED_EVERY  # sweeps until one also looks for FAILED tasks

    def trust(self) -> None:
        """A task's own answer confirmed what a sweep announced: sweeps work on this service."""
        self.trusted = True

    def distrust(self) -> None:
        """Tasks left to sweeps were found ended by their own polls: sweeps do not see them."""
        self.trusted = False

    async def run(self) -> None:
        """Sweep until cancelled, or until the list endpoint proves unusable."""
        pages = 1
        while self.enabled:
            # Keep sweeps within their share of the budget however many pages they take.
            await anyio.sleep(max(self._interval, pages / self._share))
            if not self._leading():
                pages = 1
                continue
            live = dict(self._live())
            if not live or (len(live) < self._min_live and not self.trusted):
                pages = 1
                continue
            statuses = ["SUCCEEDED"]
            self._until_failed -= 1
            if self._until_failed <= 0:
                statuses.append("FAILED")
            try:
                pages = 0
                for status in statuses:
                    announced = self.announced
                    pages += await self.sweep(live, status)
                    if status == "FAILED":
                        self._looked_for_failed(found=self.announced > announced)
            except APIError as exc:
                # A client error (not a throttle) will not mend by asking again.
                if (
                    exc.status is not None
                    and exc.status >= 400  # noqa: PLR2004 - a redirect is a misconfigured root
                    and status_verdict(exc.status) is Verdict.FATAL
                ):
                    logger.warning("task list unusable for sweeps (%s); polling tasks only", exc)
                    self.enabled = False
            except QwenImageError as exc:  # network trouble: the next sweep tries again
                logger.debug("sweep failed: %s", exc)
            except Exception:  # a sweep is an optimisation: it must never end the client
                logger.exception("sweep failed unexpectedly; polling goes on")

    async def sweep(self, live: Mapping[str, float], status: str) -> int:
        """One sweep for `status` over the creation window of `live`; returns pages read."""
        shift, margin = 0.0, WINDOW_MARGIN
        if len(self._skews) >= SKEW_SAMPLES:
            shift, margin = min(self._skews), SKEW_MARGIN
        oldest = start = min(live.values()) + shift - margin
        if status == "SUCCEEDED" and margin == SKEW_MARGIN:
            start = self._fit(oldest, [created + shift for created in live.values()])
        query = list_query(
            status=status,
            start=start,
            end=max(self._now() + shift, start) + WINDOW_MARGIN,
            page_size=PAGE_SIZE,
        )

        async def counted(params: Mapping[str, str]) -> Mapping[str, Any]:
            self.queries += 1
            return await self._list_page(params)

        pages = 0
        # What this sweep reads of SUCCEEDED tasks replaces what the last ones read of its window.
        finished = [t for t in self._finished if oldest <= t < start]
        seen = finished.append if status == "SUCCEEDED" else _ignore
        async with contextlib.aclosing(list_pages(counted, query)) as listing:
            async for rows in listing:
                pages += 1
                for row in rows:
                    created = _epoch(row.get("gmt_create"))
                    if created is not None:
                        seen(created)
                    task_id = row.get("task_id")
                    if not isinstance(task_id, str) or task_id not in live:
                        continue
                    self._learn_skew(created, live[task_id])
                    if self._announce(task_id):
                        self.announced += 1
        if status == "SUCCEEDED":
            self._finished = finished
        return pages

    def _looked_for_failed(self, *, found: bool) -> None:
        """A sweep listed FAILED tasks: look again as often, or half as often (`FAILED_EVERY`)."""
        self._failed_every = (
            FAILED_EVERY if found else min(2 * self._failed_every, FAILED_EVERY_MAX)
        )
        self._until_failed = self._failed_every

    def _fit(self, start: float, live: list[float]) -> float:
        """
        Where a sweep for SUCCEEDED tasks starts: `start`, or later (see `FIT`); `live`: the
        live tasks' creation times in the service's time.
        """
        if self._trimmed >= FULL_EVERY - 1:
            self._trimmed = 0
            return start
        fit = int(FIT * PAGE_SIZE)
        known = sorted((t for t in self._finished if t >= start), reverse=True)
        if len(known) <= fit:
            return start
        # A whole second (the list's resolution): the window then holds at most `fit` of them.
        later = max(start, float(math.ceil(known[fit - 1])))
        if sum(1 for created in live if created - SKEW_MARGIN < later) > LEFT_OUT * len(live):
            return start
        self._trimmed += 1
        return later

    def _learn_skew(self, service_created: float | None, created: float) -> None:
        """A task's creation time in the list against ours."""
        if service_created is None:
            return
        skew = service_created - created
        if abs(skew) <= MAX_SKEW:
            self._skews.append(skew)


def _ignore(_: float) -> None:
    """What a FAILED sweep does with the creation times it reads (see `Sweeper._fit`)."""


def _epoch(milliseconds: object) -> float | None:
    """A list row's time (epoch milliseconds) in seconds; ``None`` if it is not a number."""
    if not isinstance(milliseconds, int | float) or isinstance(milliseconds, bool):
        return None
    seconds = milliseconds / 1000
    return seconds if math.isfinite(seconds) else None
