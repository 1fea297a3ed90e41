"""
What the emulator counts: requests, tasks, connections, throttling, and a report per task.

Benchmarks read the per-task report to measure a client: when each task really ended, and how long
after that the client first saw it terminal.
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from typing import TYPE_CHECKING, Any

import attrs

from aioqwenimage.testing._wire import Endpoint, public

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from aioqwenimage.testing._tasks import Task, TaskStatus

__all__ = ["Stats", "SyncCallReport", "TaskReport"]


@public
@attrs.frozen(kw_only=True)
class TaskReport:
    """
    One async task, as the emulator saw it. Times are real epoch seconds.

    Attributes:
        created: When the create request was accepted.
        scheduled: When it left (or will leave) PENDING; ``None`` while waiting for a slot.
        ended: When it reached (or will reach) its final status.
        status: The status now (``UNKNOWN`` once expired).
        queries: How many ``GET /tasks/{id}`` asked about it.
        first_terminal_query: When a query first saw it terminal, if one has.
    """

    task_id: str
    model: str
    prompt: str
    created: float
    scheduled: float | None
    ended: float | None
    status: str
    queries: int
    first_terminal_query: float | None

    @classmethod
    def of(cls, task: Task, status: TaskStatus) -> TaskReport:
        """The report of `task`, whose status now is `status`."""
        return cls(
            task_id=task.task_id,
            model=task.model,
            prompt=task.prompt,
            created=task.submitted,
            scheduled=task.scheduled,
            ended=task.ended,
            status=status.value,
            queries=task.queries,
            first_terminal_query=task.first_terminal_query,
        )


@public
@attrs.frozen(kw_only=True)
class SyncCallReport:
    """One synchronous (E2) call: when it arrived and when it was answered (real epoch seconds)."""

    request_id: str
    model: str
    prompt: str
    started: float
    ended: float
    status: int


@public
@attrs.define
class Stats:
    """
    Live counters of one emulator; `to_dict` gives a JSON-ready snapshot.

    Attributes:
        requests: Per endpoint name, per HTTP status: how many answers.
        tasks_created: Per model: async tasks created.
        connections: TCP connections accepted by the API host.
        file_connections: TCP connections accepted by the file host.
        throttled: 429 answers sent (limits and injected faults).
        file_requests: Requests to the file host.
        file_requests_with_authorization: File requests that carried an ``Authorization`` header:
            a client must never send its API key to the result host.
        peak_sync_in_flight: The most synchronous calls held open at once.
        sync_calls: A report per synchronous call.
        notifications: Task-completion events: ``published``, ``lost``, ``duplicated``,
            ``delivered`` (answered 2xx), ``refused`` (answered otherwise), ``failed`` (no
            answer), ``dead`` (every try failed); see `NotificationTarget`.
        peak_task_calls_per_second: The most task queries, lists and cancels that reached the
            account's task-API limit within any one simulated second (a sliding window), the
            ones it answered 429 included: whether the clients together kept to the limit.
    """

    _tasks_source: Callable[[], Iterable[tuple[Task, TaskStatus]]] = attrs.field(
        alias="tasks_source", repr=False
    )
    _in_flight_source: Callable[[], tuple[int, int]] = attrs.field(
        alias="in_flight_source", repr=False
    )
    requests: defaultdict[str, Counter[int]] = attrs.field(factory=lambda: defaultdict(Counter))
    tasks_created: Counter[str] = attrs.field(factory=Counter)
    connections: int = 0
    file_connections: int = 0
    throttled: int = 0
    file_requests: int = 0
    file_requests_with_authorization: int = 0
    sync_in_flight: int = 0
    peak_sync_in_flight: int = 0
    sync_calls: list[SyncCallReport] = attrs.field(factory=list)
    notifications: Counter[str] = attrs.field(factory=Counter)
    peak_task_calls_per_second: int = 0
    _task_calls: deque[float] = attrs.field(factory=deque, init=False, repr=False)

    def clear(self) -> None:
        """Zero every counter (the emulator's reset)."""
        self.requests.clear()
        self.tasks_created.clear()
        self.connections = self.file_connections = self.throttled = 0
        self.file_requests = self.file_requests_with_authorization = 0
        self.sync_in_flight = self.peak_sync_in_flight = 0
        self.sync_calls.clear()
        self.notifications.clear()
        self.peak_task_calls_per_second = 0
        self._task_calls.clear()

    def count_task_call(self, now: float, second: float) -> None:
        """
        One task-API call reached the limit at `now`; `second` is one simulated second, in real
        seconds. A clock that steps back counts as no time passing.
        """
        calls = self._task_calls
        if calls and now < calls[-1]:
            now = calls[-1]
        while calls and calls[0] <= now - second:
            calls.popleft()
        calls.append(now)
        self.peak_task_calls_per_second = max(self.peak_task_calls_per_second, len(calls))

    def count_connection(self) -> None:
        """One more TCP connection accepted by the API host."""
        self.connections += 1

    def count_file_connection(self) -> None:
        """One more TCP connection accepted by the file host."""
        self.file_connections += 1

    def count(self, endpoint: Endpoint | str, status: int | None = None) -> int:
        """Answers sent for `endpoint` (an `Endpoint` or its name), optionally of one status."""
        name = endpoint.value if isinstance(endpoint, Endpoint) else endpoint
        counts = self.requests.get(name, Counter())
        return counts[status] if status is not None else sum(counts.values())

    @property
    def in_flight(self) -> int:
        """Async tasks PENDING or RUNNING now."""
        return self._in_flight_source()[0]

    @property
    def peak_in_flight(self) -> int:
        """The most async tasks PENDING or RUNNING at once."""
        return self._in_flight_source()[1]

    @property
    def tasks(self) -> dict[str, TaskReport]:
        """A report per async task ever created, by task id, in creation order."""
        return {task.task_id: TaskReport.of(task, status) for task, status in self._tasks_source()}

    def to_dict(self, *, tasks: bool = True) -> dict[str, Any]:
        """A JSON-ready snapshot; `tasks` includes the per-task report."""
        in_flight, peak = self._in_flight_source()
        data: dict[str, Any] = {
            "requests": {
                endpoint: {str(status): n for status, n in sorted(counts.items())}
                for endpoint, counts in sorted(self.requests.items())
            },
            "tasks_created": dict(sorted(self.tasks_created.items())),
            "connections": self.connections,
            "file_connections": self.file_connections,
            "throttled": self.throttled,
            "in_flight": in_flight,
            "peak_in_flight": peak,
            "sync_in_flight": self.sync_in_flight,
            "peak_sync_in_flight": self.peak_sync_in_flight,
            "file_requests": self.file_requests,
            "file_requests_with_authorization": self.file_requests_with_authorization,
            "notifications": dict(sorted(self.notifications.items())),
            "peak_task_calls_per_second": self.peak_task_calls_per_second,
        }
        if tasks:
            data["tasks"] = [attrs.asdict(report) for report in self.tasks.values()]
            data["sync_calls"] = [attrs.asdict(report) for report in self.sync_calls]
        return data
