"""
The emulator's state and rules, free of HTTP: limits, task creation, queries, list, cancel.

Handlers parse a request, then ask the engine; the engine answers with bytes or an `ApiError`.
Time is the injected wall clock (real epoch seconds); simulated durations, windows, retention and
URL lifetimes are multiplied by ``time_scale`` once, here, so the rest only sees real seconds.
"""

from __future__ import annotations

import hashlib
import math
import random
import secrets
import uuid
from typing import TYPE_CHECKING, Final

import attrs

from aioqwenimage.testing import _render, _wire
from aioqwenimage.testing._config import REGIONS, EmulatorLimits, resolve_quota
from aioqwenimage.testing._faults import FaultKind, Faults, Fired
from aioqwenimage.testing._files import UrlSigner
from aioqwenimage.testing._notify import Publisher
from aioqwenimage.testing._ratelimit import SlidingWindow
from aioqwenimage.testing._stats import Stats
from aioqwenimage.testing._tasks import CapExceeded, Task, TaskStatus, TaskStore
from aioqwenimage.testing._wire import ApiError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from aioqwenimage._catalog import ModelSpec
    from aioqwenimage.testing._bodies import GenerationRequest, UnknownModels

__all__ = ["Engine", "SyncPlan"]

DAY: Final = 86_400.0
_DELAY: Final = (0.020, 0.060)  # scheduling delay, simulated seconds (§8)
_EXTENSION: Final = ", rendered in rich detail with balanced composition and soft natural light."


@attrs.frozen(kw_only=True)
class SyncPlan:
    """How a synchronous call will go: how long it holds, and how it ends."""

    hold: float
    failure: tuple[str, str] | None
    image_failures: tuple[tuple[str, str] | None, ...]


def _unit(digest: bytes) -> float:
    return int.from_bytes(digest, "big") / float(1 << (8 * len(digest)))


class Engine:
    """
    Everything the emulator knows and decides, behind the HTTP layer.

    Args:
        time_scale: Real seconds per simulated second.
        seed: Seeds durations and fault draws.
        durations_by_prompt: Derive each duration from (seed, model, prompt) instead of drawing.
        durations: Per model (or ``"*"``), the (low, high) simulated seconds of a task.
        limits: Account limits, or ``None`` for none.
        retention: Simulated seconds a task stays queryable.
        url_ttl: Simulated seconds a result URL stays valid.
        unknown_models: What to do with names known only by family.
        clock: The wall clock, in epoch seconds.
    """

    def __init__(
        self,
        *,
        time_scale: float,
        seed: int,
        durations_by_prompt: bool,
        durations: Mapping[str, tuple[float, float]],
        limits: EmulatorLimits | None,
        retention: float,
        url_ttl: float,
        unknown_models: UnknownModels,
        clock: Callable[[], float],
    ) -> None:
        self.time_scale = time_scale
        self.seed = seed
        self.durations_by_prompt = durations_by_prompt
        self.durations = dict(durations)
        self.limits = limits
        self.url_ttl = url_ttl * time_scale
        self.unknown_models: UnknownModels = unknown_models
        self.clock = clock
        self.region = REGIONS[limits.region if limits is not None else "singapore"]
        self.store = TaskStore(retention=retention * time_scale)
        self.faults = Faults(random.Random(f"{seed}:faults"))
        self.signer = UrlSigner(secrets.token_bytes(20), time_scale=time_scale)
        self.files_base_url = ""
        self._rng = random.Random(seed)
        self._submit_windows: dict[str, SlidingWindow | None] = {}
        self._task_window = self._make_task_window()
        self.stats = Stats(tasks_source=self._task_statuses, in_flight_source=self._in_flight)
        self.publisher = Publisher(
            time_scale=time_scale,
            region=self.region,
            seed=seed,
            clock=clock,
            counts=self.stats.notifications,
        )
        self.store.on_start = self.publisher.started

    def _make_task_window(self) -> SlidingWindow | None:
        per_second = self.limits.task_queries_per_second if self.limits is not None else None
        return None if per_second is None else SlidingWindow(per_second, self.time_scale)

    def _task_statuses(self) -> Iterator[tuple[Task, TaskStatus]]:
        now = self.clock()
        self.store.advance(now)
        live = self.store.tasks(now)
        alive = {id(task) for task in live}
        for task in self.store.history():
            yield task, task.status_at(now) if id(task) in alive else TaskStatus.UNKNOWN

    def _in_flight(self) -> tuple[int, int]:
        self.store.advance(self.clock())
        return self.store.in_flight, self.store.peak_in_flight

    def reset(self) -> None:
        """Forget tasks, counters and windows; keep the configuration and armed faults."""
        self.store.clear()
        self.stats.clear()
        self.publisher.clear()
        self._submit_windows.clear()
        self._task_window = self._make_task_window()

    # --- limits ------------------------------------------------------------------------------

    def check_submit(self, spec: ModelSpec, now: float) -> None:
        """
        Count one submission of `spec`'s model against its window.

        Raises:
            ApiError: 429 ``Throttling.RateQuota`` when the window is full.
        """
        if spec.name not in self._submit_windows:
            quota = resolve_quota(spec, self.limits)
            self._submit_windows[spec.name] = (
                None
                if quota.submits is None
                else SlidingWindow(quota.submits, quota.period * self.time_scale)
            )
        window = self._submit_windows[spec.name]
        if window is not None:
            wait = window.acquire(now)
            if wait:
                raise _wire.rate_quota_error(wait / self.time_scale, self.time_scale)

    def check_task_call(self, now: float) -> None:
        """
        Count one query, list or cancel against the shared task-API limit.

        Raises:
            ApiError: 429 ``Throttling.RateQuota`` when the window is full.
        """
        self.stats.count_task_call(now, self.time_scale)
        if self._task_window is not None:
            wait = self._task_window.acquire(now)
            if wait:
                raise _wire.rate_quota_error(wait / self.time_scale, self.time_scale)

    # --- generation --------------------------------------------------------------------------

    def _timing(self, request: GenerationRequest) -> tuple[float, float]:
        """(scheduling delay, duration), in real seconds."""
        spec = request.spec
        low, high = self.durations.get(spec.name) or self.durations.get("*") or spec.duration
        if self.durations_by_prompt:
            key = f"{self.seed}\x00{spec.name}\x00{request.prompt}".encode()
            digest = hashlib.blake2b(key, digest_size=16).digest()
            u_duration, u_delay = _unit(digest[:8]), _unit(digest[8:])
        else:
            u_duration, u_delay = self._rng.random(), self._rng.random()
        delay = _DELAY[0] + (_DELAY[1] - _DELAY[0]) * u_delay
        duration = low + (high - low) * u_duration
        return delay * self.time_scale, duration * self.time_scale

    @staticmethod
    def _outcome(
        request: GenerationRequest, fired: Fired
    ) -> tuple[tuple[str, str] | None, tuple[tuple[str, str] | None, ...]]:
        n = request.n
        failures: list[tuple[str, str] | None] = [None] * n
        moderation = fired.get(FaultKind.IMAGE_MODERATION)
        if moderation is not None:
            item = (
                moderation.code or "DataInspectionFailed",
                moderation.message or _wire.MSG_OUTPUT_INSPECTION,
            )
            for index in range(max(n - moderation.images, 0), n):
                failures[index] = item
        failed = fired.get(FaultKind.TASK_FAILED)
        failure: tuple[str, str] | None = None
        if failed is not None:
            failure = (failed.code or "InternalError", failed.message or _wire.MSG_INTERNAL)
            failures = [failure] * n
        elif all(f is not None for f in failures):
            failure = failures[0]
        return failure, tuple(failures)

    def create(self, request: GenerationRequest, fired: Fired, request_id: str) -> Task:
        """
        Create an async task for a parsed request.

        Raises:
            ApiError: 429 when the submission window or the in-flight cap says no.
        """
        now = self.clock()
        spec = request.spec
        self.check_submit(spec, now)
        quota = resolve_quota(spec, self.limits)
        delay, duration = self._timing(request)
        failure, image_failures = self._outcome(request, fired)
        task = Task(
            task_id=str(uuid.uuid4()),
            model=spec.name,
            protocol=request.protocol,
            request_id=request_id,
            prompt=request.prompt,
            actual_prompt=request.effective_prompt + _EXTENSION if request.prompt_extend else None,
            size=request.size,
            n=request.n,
            submitted=now,
            delay=delay,
            duration=duration,
            family=spec.family,
            failure=failure,
            image_failures=image_failures,
        )
        try:
            self.store.create(task, now, cap=quota.in_flight, reject=quota.over_cap == "reject")
        except CapExceeded as exc:
            raise _wire.rate_quota_error(exc.wait / self.time_scale, self.time_scale) from None
        self.stats.tasks_created[spec.name] += 1
        return task

    def plan_sync(self, request: GenerationRequest, fired: Fired) -> SyncPlan:
        """
        Admit a synchronous call and decide how it goes.

        Raises:
            ApiError: 429 when the model's submission window is full.
        """
        self.check_submit(request.spec, self.clock())
        delay, duration = self._timing(request)
        failure, image_failures = self._outcome(request, fired)
        return SyncPlan(hold=max(delay, duration), failure=failure, image_failures=image_failures)

    def urls(self, owner: str, size: tuple[int, int], count: int, ended: float) -> list[str]:
        """The signed result URLs of `count` images that became available at `ended`."""
        expires = ended + self.url_ttl
        return [
            self.signer.url(self.files_base_url, owner=owner, index=i, size=size, expires=expires)
            for i in range(count)
        ]

    def _task_urls(self, task: Task) -> list[str]:
        assert task.ended is not None  # noqa: S101 - only finished tasks have results
        return self.urls(task.task_id, task.size, task.n, task.ended)

    # --- the task API ------------------------------------------------------------------------

    def query(self, task_id: str, request_id: str) -> bytes:
        """The answer to ``GET /tasks/{task_id}``; counts the query in the task's report."""
        now = self.clock()
        task = self.store.get(task_id, now)
        if task is None:
            return _render.unknown_body(task_id, request_id)
        task.queries += 1
        if task.first_terminal_query is None and task.status_at(now).terminal:
            task.first_terminal_query = now
        return _render.query_body(task, now, request_id, self._task_urls)

    def cancel(self, task_id: str) -> None:
        """
        Cancel a PENDING task.

        Raises:
            ApiError: 400 ``UnsupportedOperation`` for any other status, or an unknown id.
        """
        if not self.store.cancel(task_id, self.clock()):
            raise ApiError(400, "UnsupportedOperation", _wire.MSG_CANCEL)

    def list_tasks(self, query: Mapping[str, str], request_id: str) -> bytes:
        """
        The answer to ``GET /tasks``: filters, the 24-hour window rules, pagination (§5.4).

        Raises:
            ApiError: 400 ``InvalidParameter`` for a malformed parameter or window.
        """
        now = self.clock()
        since, until = _window(query.get("start_time"), query.get("end_time"), now)
        page_no = _positive(query, "page_no", 1)
        page_size = _positive(query, "page_size", 10)
        status = query.get("status")
        if status is not None and status not in TaskStatus.__members__:
            msg = f"status must be one of {', '.join(TaskStatus.__members__)}"
            raise ApiError.invalid(msg)
        model, task_id = query.get("model_name"), query.get("task_id")
        found: list[tuple[Task, TaskStatus]] = []
        # The store keeps creation order, so newest first means the scan can stop at `since`:
        # sweeping clients list the last few seconds of thousands of tasks, many times a second.
        for task in reversed(self.store.tasks(now)):
            if task.submitted < since:
                break
            if task.submitted >= until:
                continue
            current = task.status_at(now)
            if model is not None and task.model != model:
                continue
            if task_id is not None and task.task_id != task_id:
                continue
            if status is not None and current.value != status:
                continue
            found.append((task, current))
        first = (page_no - 1) * page_size
        data = [_render.list_item(t, s, self.region) for t, s in found[first : first + page_size]]
        return _wire.dumps(
            {
                "request_id": request_id,
                "total": len(found),
                "data": data,
                "total_page": math.ceil(len(found) / page_size),
                "page_no": page_no,
                "page_size": page_size,
            }
        )


def _positive(query: Mapping[str, str], name: str, default: int) -> int:
    text = query.get(name)
    if text is None:
        return default
    if not text.isdigit() or int(text) < 1:
        msg = f"{name} must be a positive integer, got {text!r}"
        raise ApiError.invalid(msg)
    return int(text)


def _window(start: str | None, end: str | None, now: float) -> tuple[float, float]:
    """
    The [since, until) window of a list call, in epoch seconds.

    The bounds have one-second resolution, so the window is real time (24 real hours) even under
    a compressed ``time_scale``; retention, which is scaled, removes older tasks anyway.
    """
    try:
        since = _wire.parse_list_time(start) if start is not None else None
        until = _wire.parse_list_time(end) + 1 if end is not None else None
    except ValueError as exc:
        msg = f"start_time/end_time: {exc}"
        raise ApiError.invalid(msg) from None
    if since is None and until is None:
        return now - DAY, math.inf
    if since is None:
        assert until is not None  # noqa: S101 - one of the two is set
        return until - DAY, until
    if until is None:
        return since, since + DAY
    if until <= since:
        raise ApiError.invalid("end_time must not be before start_time")
    if until - since > DAY + 1:
        raise ApiError.invalid("the span between start_time and end_time must be at most 24 hours")
    return since, until
