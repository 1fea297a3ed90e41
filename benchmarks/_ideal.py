"""
The ideal schedule: the best any client could do for a workload's task durations and limits.

Tasks are taken in workload order (the order every client is given them). Each is submitted the
moment an in-flight slot is free and the submission window allows, and its end is seen the moment it
happens (no polling delay, no network time). A slot frees exactly at a task's end, as the emulator
frees it. The submission limit is a sliding window, like the emulator's: at most ``limit``
submissions in any ``period`` seconds. The result is a pure function of the durations, the cap and
the rate; benchmarks divide each client's makespan by its makespan.

`sdk_reference` is the other yardstick: what the official SDK's fixed polling schedule costs for a
task of a given duration, unthrottled and with zero network time.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

__all__ = ["IdealSchedule", "ideal_schedule", "sdk_poll_times", "sdk_reference"]


@dataclass(frozen=True)
class IdealSchedule:
    """
    Start and end of every task (seconds after the first submission), in workload order.

    Attributes:
        starts: When each task is submitted.
        ends: When each task ends (and, ideally, is seen to end).
    """

    starts: tuple[float, ...]
    ends: tuple[float, ...]

    @property
    def makespan(self) -> float:
        """From the first submission to the last end; 0 for no tasks."""
        return max(self.ends, default=0.0)


def ideal_schedule(
    durations: Sequence[float],
    *,
    in_flight: int | None,
    rate: int | None,
    period: float = 1.0,
) -> IdealSchedule:
    """
    The greedy in-order schedule of tasks lasting `durations` seconds.

    Args:
        durations: Each task's time from submission to end, in workload order.
        in_flight: At most this many tasks between submission and end at once; ``None``: no cap.
        rate: At most this many submissions in any `period` seconds; ``None``: no limit.
        period: The submission window, in seconds.

    Raises:
        ValueError: A limit is below 1, the period is not positive, or a duration is negative.
    """
    if in_flight is not None and in_flight < 1:
        msg = f"in_flight must be at least 1, got {in_flight}"
        raise ValueError(msg)
    if rate is not None and rate < 1:
        msg = f"rate must be at least 1, got {rate}"
        raise ValueError(msg)
    if period <= 0:
        msg = f"period must be positive, got {period}"
        raise ValueError(msg)
    starts: list[float] = []
    ends: list[float] = []
    running: list[float] = []  # end times of the tasks in flight: a min-heap
    last = 0.0
    for index, duration in enumerate(durations):
        if duration < 0:
            msg = f"durations[{index}] is negative: {duration}"
            raise ValueError(msg)
        # In order: never before the previous submission; and the window admits a submission at
        # t only when the `rate`-th previous one is at least `period` old (the emulator's rule).
        earliest = last
        if rate is not None and index >= rate:
            earliest = max(earliest, starts[index - rate] + period)
        while running and running[0] <= earliest:
            heapq.heappop(running)
        start = earliest
        if in_flight is not None and len(running) >= in_flight:
            start = heapq.heappop(running)  # the first slot to free, necessarily after `earliest`
        end = start + duration
        heapq.heappush(running, end)
        starts.append(start)
        ends.append(end)
        last = start
    return IdealSchedule(starts=tuple(starts), ends=tuple(ends))


def sdk_poll_times(schedule: str) -> Iterator[float]:
    """
    When the official SDK polls a task, in seconds after submission (zero network time).

    ``"1.x"``: an immediate poll, then sleeps of 1, 1, 2, 2, 2, 4, 4, 4 and 5 s thereafter
    (``wait()`` doubles its sleep every third poll, capped at 5 s). ``"2.0"``: no immediate poll,
    sleeps of 1, 2, 4 and 8 s thereafter (doubling, capped at 8 s). See
    ``dashscope-sdk-notes.md`` §4.
    """
    if schedule == "1.x":
        t, sleep, step = 0.0, 1.0, 0
        while True:
            yield t
            step += 1
            if sleep < 5 and step % 3 == 0:
                sleep = min(sleep * 2, 5.0)
            t += sleep
    elif schedule == "2.0":
        t, sleep = 0.0, 1.0
        while True:
            t += sleep
            yield t
            sleep = min(sleep * 2, 8.0)
    else:
        msg = f"unknown schedule {schedule!r}"
        raise ValueError(msg)


def sdk_reference(duration: float, schedule: str) -> tuple[int, float]:
    """The SDK's polls of one task lasting `duration` s, and how late the last one sees its end."""
    for polls, t in enumerate(sdk_poll_times(schedule), start=1):
        if t >= duration:
            return polls, t - duration
    raise AssertionError  # pragma: no cover - the schedules are infinite
