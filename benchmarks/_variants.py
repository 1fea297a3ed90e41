"""
The four clients under test, each run in its own process so its CPU time and memory are its own.

Run as ``python -m benchmarks._variants SPEC_JSON``; the spec names the variant, the workload, the
emulator's address and the file the report goes to. Every variant runs the workload's groups at
once, told the same limits:

- ``aioqwenimage``: one `Client` with ``Limits(queries_per_second=..., models={...})``; the async
  group through `Client.map`, the sync group through `Client.generate` under ``asyncio.gather``.
- ``sdk1_threads``: dashscope 1.x ``ImageSynthesis.call`` in a thread pool as large as the
  in-flight limit; the sync group through ``MultiModalConversation.call`` in its own pool.
- ``sdk1_aio``: dashscope 1.x ``AioImageSynthesis.call`` (sync group:
  ``AioMultiModalConversation.call``) under ``asyncio.gather`` with a semaphore.
- ``sdk2_async``: dashscope 2.0 ``AsyncClient().images.generate`` (sync group:
  ``AsyncClient().multimodal.chat.create``) with a semaphore.

The SDKs have no rate limiter, and the emulator answers submissions beyond the documented rate
with 429, so their variants do what their users must: pace submissions with a sliding window equal
to the told rate, and retry a submission the SDK reports as throttled before anything was created
(1.x raises ``InvalidTask`` for it; 2.0 raises ``RateLimitError`` after its own two retries) up to
8 tries with capped exponential backoff. A 1.x ``call`` whose *poll* was throttled returns the 429
response with the task still running and its id lost: that counts as an error, since calling again
would order the image twice.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import random
import resource
import sys
import threading
import time
from collections import Counter, deque
from typing import TYPE_CHECKING, Any, Final

from benchmarks._workloads import WORKLOADS, Group, Workload

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["VARIANTS", "main"]

VARIANTS: Final = ("aioqwenimage", "sdk1_threads", "sdk1_aio", "sdk2_async")
MAX_ATTEMPTS: Final = 8
_rng = random.Random(7)


def _rusage() -> tuple[float, float]:
    """(CPU seconds, peak RSS in MiB) of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0


def _backoff(attempt: int, scale: float) -> float:
    return min(8.0, 2.0 ** (attempt - 1)) * _rng.uniform(0.5, 1.0) * scale


def _throttled(text: str) -> bool:
    return "429" in text or "Throttling" in text


class Recorder:
    """Outcomes per group, thread-safe; becomes the report the runner reads."""

    def __init__(self, variant: str, workload: Workload) -> None:
        self.variant = variant
        self._lock = threading.Lock()
        self.groups = {
            g.name: {
                "model": g.model,
                "count": g.count,
                "succeeded": 0,
                "errors": 0,
                "last_done": None,
                "error_samples": Counter(),
            }
            for g in workload.groups
        }
        self.started = 0.0
        self.cpu_start = 0.0
        self.rss_start = 0.0
        self.extra: dict[str, Any] = {}

    def start(self) -> None:
        """The workload begins now."""
        self.cpu_start, self.rss_start = _rusage()
        self.started = time.time()

    def ok(self, group: Group) -> None:
        """One generation of `group` succeeded."""
        self._record(group, None)

    def fail(self, group: Group, error: str) -> None:
        """One generation of `group` ended without an image, for the reason `error`."""
        self._record(group, error)

    def outcome(self, group: Group, error: str | None) -> None:
        """One generation of `group` ended: ok when `error` is ``None``."""
        self._record(group, error)

    def _record(self, group: Group, error: str | None) -> None:
        ok = error is None
        now = time.time()
        with self._lock:
            entry = self.groups[group.name]
            entry["succeeded" if ok else "errors"] += 1
            entry["last_done"] = now
            if not ok:
                entry["error_samples"][error] += 1

    def report(self, *, timed_out: bool) -> dict[str, Any]:
        """The JSON report."""
        finished = time.time()
        cpu, rss = _rusage()
        with self._lock:
            groups = {
                name: {**entry, "error_samples": dict(entry["error_samples"].most_common(5))}
                for name, entry in self.groups.items()
            }
        return {
            "variant": self.variant,
            "started": self.started,
            "finished": finished,
            "timed_out": timed_out,
            "groups": groups,
            "cpu_seconds": cpu - self.cpu_start,
            "cpu_seconds_total": cpu,
            "peak_rss_mb": rss,
            "rss_before_mb": self.rss_start,
            **self.extra,
        }


class Pacer:
    """
    A sliding window (at most `limit` per `period` s) for threads and tasks alike: each caller
    reserves the earliest admissible time, then sleeps until it.
    """

    def __init__(self, limit: int, period: float) -> None:
        self._limit = limit
        self._period = period
        self._log: deque[float] = deque()
        self._lock = threading.Lock()

    def reserve(self, now: float) -> float:
        """Reserve the earliest admissible time not before `now`; return it."""
        with self._lock:
            log = self._log
            while log and log[0] <= now - self._period:
                log.popleft()
            at = max(now, log[-1]) if log else now
            if len(log) >= self._limit:
                at = max(at, log[-self._limit] + self._period)
            log.append(at)
            return at

    def acquire(self) -> None:
        """Block until this thread's submission slot."""
        now = time.monotonic()
        time.sleep(max(0.0, self.reserve(now) - now))

    async def acquire_async(self) -> None:
        """Wait (asynchronously) until this task's submission slot."""
        now = time.monotonic()
        await asyncio.sleep(max(0.0, self.reserve(now) - now))


def _pacer(workload: Workload, group: Group) -> Pacer | None:
    setup = workload.models[group.model]
    rate = setup.told_submits_per_second
    if rate is None or (group.sync and setup.submits is None):
        return None
    return Pacer(max(1, int(rate)), workload.time_scale * max(1, int(rate)) / rate)


def _messages(prompt: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"text": prompt}]}]


# --- aioqwenimage ----------------------------------------------------------------------------


async def run_aioqwenimage(spec: dict[str, Any], workload: Workload, rec: Recorder) -> None:
    """The workload through one aioqwenimage `Client`."""
    import aioqwenimage

    models = {
        model: aioqwenimage.ModelLimits(
            in_flight=setup.told_in_flight, submits_per_second=setup.told_submits_per_second
        )
        for model, setup in workload.models.items()
    }
    limits = aioqwenimage.Limits(
        queries_per_second=workload.client_queries_per_second, models=models
    )
    # Overrides of the poll policy, to re-measure a tuning without editing the client.
    poll = aioqwenimage.PollPolicy(**spec["poll"]) if spec.get("poll") else None
    notify = spec.get("notify")
    notifications = aioqwenimage.Notifications(token=notify["token"]) if notify else None
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(
            aioqwenimage.Client(
                api_key=spec["api_key"],
                base_url=spec["base_url"],
                limits=limits,
                poll=poll,
                time_scale=workload.time_scale,
                notifications=notifications,
            )
        )
        if notifications is not None:
            await stack.enter_async_context(notifications.listen("127.0.0.1", notify["port"]))

        async def run_async(group: Group) -> None:
            async for outcome in client.map(workload.prompts(group), model=group.model):
                error = outcome.error
                rec.outcome(group, None if error is None else _describe(error))

        async def run_sync(group: Group) -> None:
            async def one(prompt: str) -> None:
                try:
                    await client.generate(prompt, model=group.model)
                except aioqwenimage.QwenImageError as exc:
                    rec.fail(group, _describe(exc))
                else:
                    rec.ok(group)

            await asyncio.gather(*(one(p) for p in workload.prompts(group)))

        rec.start()
        runs: list[Awaitable[None]] = [
            run_sync(g) if g.sync else run_async(g) for g in workload.groups
        ]
        try:
            await asyncio.gather(*runs)
        finally:
            stats = client.stats
            rec.extra["client_stats"] = {
                "requests": dict(stats.requests),
                "polls": stats.polls,
                "throttled": stats.throttled,
                "retries": stats.retries,
                "submitted": stats.submitted,
                "finished": dict(stats.finished),
                "uncertain": stats.uncertain,
            }
            if notifications is not None:
                rec.extra["client_stats"]["notifications"] = dict(notifications.counts)


def _describe(error: BaseException) -> str:
    code = getattr(error, "code", None)
    return f"{type(error).__name__}({code})" if code else type(error).__name__


# --- dashscope 1.x, threads ------------------------------------------------------------------


def run_sdk1_threads(
    spec: dict[str, Any], workload: Workload, rec: Recorder, deadline: float
) -> bool:
    """The workload through ``ImageSynthesis.call`` in threads; False when the deadline hit."""
    import dashscope
    from dashscope import ImageSynthesis, MultiModalConversation
    from dashscope.common.error import InvalidTask

    dashscope.base_http_api_url = spec["base_url"]
    dashscope.api_key = spec["api_key"]
    scale = workload.time_scale

    def one_async(group: Group, pacer: Pacer | None, prompt: str) -> None:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            if pacer is not None:
                pacer.acquire()
            try:
                rsp = ImageSynthesis.call(model=group.model, prompt=prompt)
            except InvalidTask as exc:  # the submit failed: nothing was created
                if _throttled(str(exc)) and attempt < MAX_ATTEMPTS:
                    time.sleep(_backoff(attempt, scale))
                    continue
                rec.fail(group, "InvalidTask(429)" if _throttled(str(exc)) else "InvalidTask")
                return
            except Exception as exc:
                rec.fail(group, type(exc).__name__)
                return
            status = rsp.output.get("task_status") if rsp.output else None
            ok = rsp.status_code == 200 and status == "SUCCEEDED"
            rec.outcome(group, None if ok else f"{rsp.status_code} {rsp.code or status}")
            return

    def one_sync(group: Group, pacer: Pacer | None, prompt: str) -> None:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            if pacer is not None:
                pacer.acquire()
            try:
                rsp = MultiModalConversation.call(model=group.model, messages=_messages(prompt))
            except Exception as exc:
                rec.fail(group, type(exc).__name__)
                return
            if rsp.status_code == 429 and attempt < MAX_ATTEMPTS:
                time.sleep(_backoff(attempt, scale))
                continue
            ok = rsp.status_code == 200
            rec.outcome(group, None if ok else f"{rsp.status_code} {rsp.code}")
            return

    pools = []
    futures = []
    rec.start()
    for group in workload.groups:
        size = workload.models[group.model].told_in_flight
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=size)
        pools.append(pool)
        pacer = _pacer(workload, group)
        work = one_sync if group.sync else one_async
        futures += [pool.submit(work, group, pacer, p) for p in workload.prompts(group)]
    _, pending = concurrent.futures.wait(futures, timeout=max(0.0, deadline - time.monotonic()))
    for pool in pools:
        pool.shutdown(wait=not pending, cancel_futures=True)
    return not pending


# --- dashscope 1.x, asyncio ------------------------------------------------------------------


async def run_sdk1_aio(spec: dict[str, Any], workload: Workload, rec: Recorder) -> None:
    """The workload through ``AioImageSynthesis.call`` under gather and a semaphore."""
    import dashscope
    from dashscope import AioMultiModalConversation
    from dashscope.aigc.image_synthesis import AioImageSynthesis
    from dashscope.common.error import InvalidTask

    dashscope.base_http_api_url = spec["base_url"]
    dashscope.api_key = spec["api_key"]
    scale = workload.time_scale

    async def one_async(
        group: Group, sem: asyncio.Semaphore, pacer: Pacer | None, prompt: str
    ) -> None:
        async with sem:
            for attempt in range(1, MAX_ATTEMPTS + 1):
                if pacer is not None:
                    await pacer.acquire_async()
                try:
                    rsp = await AioImageSynthesis.call(model=group.model, prompt=prompt)
                except InvalidTask as exc:
                    if _throttled(str(exc)) and attempt < MAX_ATTEMPTS:
                        await asyncio.sleep(_backoff(attempt, scale))
                        continue
                    rec.fail(group, "InvalidTask(429)" if _throttled(str(exc)) else "InvalidTask")
                    return
                except Exception as exc:
                    rec.fail(group, type(exc).__name__)
                    return
                status = rsp.output.get("task_status") if rsp.output else None
                ok = rsp.status_code == 200 and status == "SUCCEEDED"
                rec.outcome(group, None if ok else f"{rsp.status_code} {rsp.code or status}")
                return

    async def one_sync(
        group: Group, sem: asyncio.Semaphore, pacer: Pacer | None, prompt: str
    ) -> None:
        async with sem:
            for attempt in range(1, MAX_ATTEMPTS + 1):
                if pacer is not None:
                    await pacer.acquire_async()
                try:
                    rsp = await AioMultiModalConversation.call(
                        model=group.model, messages=_messages(prompt)
                    )
                except Exception as exc:
                    rec.fail(group, type(exc).__name__)
                    return
                if rsp.status_code == 429 and attempt < MAX_ATTEMPTS:
                    await asyncio.sleep(_backoff(attempt, scale))
                    continue
                ok = rsp.status_code == 200
                rec.outcome(group, None if ok else f"{rsp.status_code} {rsp.code}")
                return

    rec.start()
    try:
        await _gather_groups(workload, one_async, one_sync)
    finally:
        with contextlib.suppress(Exception):
            await dashscope.close_shared_aio_session()


async def _gather_groups(
    workload: Workload,
    one_async: Callable[..., Awaitable[None]],
    one_sync: Callable[..., Awaitable[None]],
) -> None:
    coroutines = []
    for group in workload.groups:
        sem = asyncio.Semaphore(workload.models[group.model].told_in_flight)
        pacer = _pacer(workload, group)
        work = one_sync if group.sync else one_async
        coroutines += [work(group, sem, pacer, p) for p in workload.prompts(group)]
    await asyncio.gather(*coroutines)


# --- dashscope 2.0 ---------------------------------------------------------------------------


async def run_sdk2_async(spec: dict[str, Any], workload: Workload, rec: Recorder) -> None:
    """The workload through ``AsyncClient().images.generate`` under gather and a semaphore."""
    import dashscope
    from dashscope.v2.errors import DashScopeError, RateLimitError

    scale = workload.time_scale
    async with dashscope.AsyncClient(api_key=spec["api_key"], base_url=spec["base_url"]) as client:

        async def attempt_loop(
            group: Group, pacer: Pacer | None, call: Callable[[], Awaitable[Any]]
        ) -> None:
            for attempt in range(1, MAX_ATTEMPTS + 1):
                if pacer is not None:
                    await pacer.acquire_async()
                try:
                    result = await call()
                except RateLimitError:
                    if attempt < MAX_ATTEMPTS:
                        await asyncio.sleep(_backoff(attempt, scale))
                        continue
                    rec.fail(group, "RateLimitError")
                    return
                except DashScopeError as exc:
                    rec.fail(group, f"{type(exc).__name__}({getattr(exc, 'code', None)})")
                    return
                except Exception as exc:
                    rec.fail(group, type(exc).__name__)
                    return
                ok = bool(getattr(result, "succeeded", True))
                rec.outcome(group, None if ok else f"status {getattr(result, 'status', None)}")
                return

        async def one_async(
            group: Group, sem: asyncio.Semaphore, pacer: Pacer | None, prompt: str
        ) -> None:
            async with sem:
                await attempt_loop(
                    group, pacer, lambda: client.images.generate(model=group.model, prompt=prompt)
                )

        async def one_sync(
            group: Group, sem: asyncio.Semaphore, pacer: Pacer | None, prompt: str
        ) -> None:
            async with sem:
                await attempt_loop(
                    group,
                    pacer,
                    lambda: client.multimodal.chat.create(
                        model=group.model, messages=_messages(prompt)
                    ),
                )

        rec.start()
        await _gather_groups(workload, one_async, one_sync)


# --- the process -----------------------------------------------------------------------------


async def _run_async(
    spec: dict[str, Any],
    workload: Workload,
    rec: Recorder,
    deadline: float,
    finish: Callable[[bool], None],
) -> None:
    runner = {
        "aioqwenimage": run_aioqwenimage,
        "sdk1_aio": run_sdk1_aio,
        "sdk2_async": run_sdk2_async,
    }[spec["variant"]]
    task = asyncio.ensure_future(runner(spec, workload, rec))
    done, _ = await asyncio.wait({task}, timeout=max(0.0, deadline - time.monotonic()))
    if task in done:
        task.result()  # a crash of the variant is a crash of the run
    # Leave from inside the loop: cancelling what outlived the deadline could take long.
    finish(task in done)


def _quiet() -> None:
    # The 1.x pool logs every discarded connection at WARNING; that is noise, not a result.
    for name in ("urllib3", "dashscope", "httpx", "aioqwenimage", "asyncio"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def main() -> int:
    """Run one variant as the spec (first argument, JSON) says; write the report; exit."""
    spec = json.loads(sys.argv[1])
    workload = WORKLOADS[spec["workload"]]
    variant = spec["variant"]
    if variant not in VARIANTS:
        msg = f"unknown variant {variant!r}"
        raise SystemExit(msg)
    _quiet()
    deadline = time.monotonic() + float(spec["timeout"])
    rec = Recorder(variant, workload)
    profiler = None
    if spec.get("profile") == "pyinstrument":
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.005, async_mode="disabled")
        profiler.start()

    def finish(completed: bool) -> None:
        report = rec.report(timed_out=not completed)
        if profiler is not None:
            profiler.stop()
            with open(spec["profile_out"], "w", encoding="utf-8") as file:  # noqa: PTH123
                file.write(profiler.output_text(unicode=False, color=False, show_all=False))
        with open(spec["out"], "w", encoding="utf-8") as file:  # noqa: PTH123
            json.dump(report, file)
        sys.stdout.flush()
        sys.stderr.flush()
        # Threads blocked in requests, tasks past the deadline: leave without waiting for them.
        os._exit(0)

    if variant == "sdk1_threads":
        finish(run_sdk1_threads(spec, workload, rec, deadline))
    asyncio.run(_run_async(spec, workload, rec, deadline, finish))
    return 0


if __name__ == "__main__":
    sys.exit(main())
