"""
``python -m benchmarks chaos``: many generations through the public API with every fault at once.

The emulator runs in its own process (`benchmarks._runner.Emulator`) and its own records judge
the run: which tasks it created for which prompt, what became of each, when each left PENDING.
One run has three parts:

1. Throughput: the same generations with no fault, then with 5% of creates answered a transient
   429, 100 in flight at most, so that the in-flight limit (not the machine) sets the pace.
2. Chaos: ``--count`` generations against a server with an in-flight cap of 100 (creates beyond
   it wait PENDING) and the faults of issue 8 armed at once: 429s, 500s, 503s, connections dropped
   before and after a create took effect, FAILED tasks, moderation, slow answers and hostile
   bodies (cut, not JSON, nested 100,000 deep, timestamps claiming a year-long run, padded past
   the client's answer cap, trickled out for longer than its poll deadline) and 429s whose
   ``Retry-After`` is ``inf``, ``1e9``, ``nan``, ``-5`` or an HTTP date. A tenth of
   the callers are cancelled at moments spread over the run (``Task.cancel``, ``asyncio.timeout``
   and an anyio cancel scope in turn), and the client is closed while the last twentieth still
   wait (``aclose()`` under load).
3. The figures, printed and returned: duplicates, lost and wrong outcomes, uncertain creates
   against dropped ones, tasks left PENDING by callers who went away, asyncio tasks and file
   descriptors left after close, RSS at 40% and 100% of the run, the throughput ratio.

Everything is bounded: the count, and a deadline per part after which the callers still waiting
are counted as hung.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import random
import time
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Final

import anyio
import attrs

import aioqwenimage as q
from benchmarks._runner import Emulator

MODEL: Final = "qwen-image-plus"
SCALE: Final = 0.01
IN_FLIGHT: Final = 200  # the chaos client's limit; the emulator's cap is 100: a PENDING queue
# Past this many seconds after its caller went away and its create was answered, a task still
# PENDING (or started later) was left PENDING by the client: its remote cancel should have
# arrived long before.
PENDING_GRACE: Final = 0.1
CLOSE_GRACE: Final = 0.1
# The create storm's model, its create delay and when its callers are cancelled (real seconds).
STORM_MODEL: Final = "wan2.2-t2i-flash"
STORM_CANCEL_AFTER: Final = 0.1
# A drip-fed poll answer takes this long (real seconds), the chaos client gives a poll this long
# whole: long against a poll, short against the run, so that the emulator's side stays bounded.
DRIP_SECONDS: Final = 3.0
QUERY_TOTAL: Final = 1.0

# (kind, endpoint, rate, extra): each fault of issue 8 items 1-8 the emulator can produce.
CHAOS_FAULTS: Final[tuple[dict[str, Any], ...]] = (
    {"kind": "throttle", "endpoints": ["create"], "rate": 0.05},
    {"kind": "throttle", "endpoints": ["query", "list", "cancel"], "rate": 0.02},
    {"kind": "internal_error", "endpoints": ["create"], "rate": 0.005},
    {"kind": "internal_error", "endpoints": ["query", "list"], "rate": 0.02},
    {"kind": "unavailable", "endpoints": ["create"], "rate": 0.01},
    {"kind": "drop_before", "endpoints": ["create"], "rate": 0.005},
    {"kind": "drop_after", "endpoints": ["create"], "rate": 0.005},
    {"kind": "drop_before", "endpoints": ["query"], "rate": 0.01},
    {"kind": "task_failed", "endpoints": ["create"], "rate": 0.02},
    {"kind": "moderation", "endpoints": ["create"], "rate": 0.01},
    {"kind": "delay", "endpoints": ["query", "create"], "rate": 0.02, "delay": 5.0},
    {"kind": "malformed", "endpoints": ["query"], "rate": 0.01},
    {"kind": "not_json", "endpoints": ["query"], "rate": 0.005},
    {"kind": "nested", "endpoints": ["query"], "rate": 0.002},
    {"kind": "skewed_times", "endpoints": ["query"], "rate": 0.01},
    {"kind": "malformed", "endpoints": ["create"], "rate": 0.002},
    {"kind": "not_json", "endpoints": ["create"], "rate": 0.002},
    {"kind": "nested", "endpoints": ["create"], "rate": 0.001},
    # Item 3: Retry-After of inf, 1e9, nan, -5 or an HTTP date, each drawn by the emulator.
    {"kind": "wild_retry_after", "endpoints": ["create"], "rate": 0.003},
    {"kind": "wild_retry_after", "endpoints": ["query"], "rate": 0.005},
    # Item 8: poll answers padded past the client's 4 MiB cap, and ones trickled out over
    # DRIP_SECONDS, longer than the chaos client's QUERY_TOTAL: cut, never waited out.
    {"kind": "oversized", "endpoints": ["query"], "rate": 0.003},
    {"kind": "drip", "endpoints": ["query"], "rate": 0.003, "delay": DRIP_SECONDS / SCALE},
)
THROTTLE_ONLY: Final = ({"kind": "throttle", "endpoints": ["create"], "rate": 0.05},)
STORM_FAULTS: Final = (
    {"kind": "delay", "endpoints": ["create"], "model": STORM_MODEL, "delay": 30.0},
)


@attrs.define
class Outcome:
    """What one caller saw."""

    kind: str = "hung"  # result, error, uncertain, cancelled, raw, hung
    error: str | None = None
    task_id: str | None = None
    went_away: float | None = None  # when the caller was cancelled, or the client closed


@attrs.define
class ChaosConfig:
    """One chaos run."""

    count: int = 5000
    throughput_count: int = 1000
    seed: int = 1
    deadline: float = 600.0
    cancel_share: float = 0.10
    close_share: float = 0.05


def _emulator_config(
    seed: int, *, in_flight: int | None, durations: tuple[float, float]
) -> dict[str, Any]:
    return {
        "time_scale": SCALE,
        "seed": seed,
        "durations": {MODEL: list(durations), STORM_MODEL: list(durations)},
        "task_queries_per_second": 20_000,
        "models": {
            MODEL: {"submits": 20_000, "period": 1.0, "in_flight": in_flight, "over_cap": "queue"},
            STORM_MODEL: {"submits": 20_000, "period": 1.0, "in_flight": 1, "over_cap": "queue"},
        },
    }


def _admin(emulator: Emulator, path: str, method: str = "GET", body: Any = None) -> Any:
    url = emulator.base_url.removesuffix("/api/v1") + "/__emulator__" + path
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 - the loopback emulator
        url,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {emulator.api_key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
        return json.loads(response.read())


def _arm(emulator: Emulator, faults: tuple[dict[str, Any], ...]) -> None:
    emulator.reset()
    _admin(emulator, "/faults", "DELETE")
    if faults:
        _admin(emulator, "/faults", "POST", list(faults))


def _client(
    emulator: Emulator, *, in_flight: int, seed: int, hooks: tuple[q.EventHook, ...] = ()
) -> q.Client:
    return q.Client(
        api_key=emulator.api_key,
        base_url=emulator.base_url,
        time_scale=SCALE,
        seed=seed,
        timeouts=q.Timeouts(query_total=QUERY_TOTAL),
        limits=q.Limits(
            queries_per_second=2000,
            models={MODEL: q.ModelLimits(in_flight=in_flight, submits_per_second=5000)},
        ),
        event_hooks=hooks,
    )


def _rss_mib() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _fds() -> int:
    return sum(1 for _ in Path("/proc/self/fd").iterdir())


# --- part 1: throughput ---------------------------------------------------------------------------


async def _timed_batch(
    emulator: Emulator, count: int, seed: int, deadline: float
) -> tuple[float, int]:
    """(seconds, results) for `count` generations, 100 in flight at most."""
    client = _client(emulator, in_flight=100, seed=seed)
    done = 0
    async with client:
        started = time.perf_counter()

        async def one(index: int) -> None:
            nonlocal done
            try:
                await client.generate(f"throughput {seed} {index}", model=MODEL)
                done += 1
            except q.QwenImageError:
                pass

        with anyio.move_on_after(deadline):
            async with anyio.create_task_group() as tg:
                for index in range(count):
                    tg.start_soon(one, index)
        elapsed = time.perf_counter() - started
    return elapsed, done


def measure_throughput(config: ChaosConfig, log: Any = print) -> dict[str, Any]:
    """Fault-free, then 5% transient 429s on creates: generations per second of each."""
    config_json = _emulator_config(config.seed, in_flight=None, durations=(30.0, 42.0))
    figures: dict[str, Any] = {}
    with Emulator.start(config_json) as emulator:
        for name, faults in (("fault_free", ()), ("throttled_5pct", THROTTLE_ONLY)):
            _arm(emulator, faults)
            seconds, done = asyncio.run(
                _timed_batch(emulator, config.throughput_count, config.seed, config.deadline)
            )
            created_429 = int(emulator.stats()["requests"].get("create", {}).get("429", 0))
            figures[name] = {
                "seconds": round(seconds, 2),
                "results": done,
                "per_second": round(done / seconds, 1) if seconds else 0.0,
                "create_429s": created_429,
            }
            log(f"throughput {name}: {done} results in {seconds:.2f} s ({created_429} 429s)")
    clean, noisy = figures["fault_free"], figures["throttled_5pct"]
    figures["ratio"] = (
        round(noisy["per_second"] / clean["per_second"], 3) if clean["per_second"] else None
    )
    return figures


# --- part 2: the chaos run ------------------------------------------------------------------------


async def _chaos_run(emulator: Emulator, config: ChaosConfig, log: Any) -> dict[str, Any]:
    rng = random.Random(config.seed)
    count = config.count
    outcomes = [Outcome() for _ in range(count)]
    # The storm: caller i is in flight roughly while the (i - IN_FLIGHT)th to ith generations
    # finish, so a trigger drawn from that range hits it queued for a slot, creating, PENDING or
    # RUNNING. Three ways of cancelling, in turn: asyncio's Task.cancel and asyncio.timeout,
    # anyio's cancel scope.
    triggers: dict[int, list[int]] = defaultdict(list)
    styles: dict[int, str] = {}
    for index in rng.sample(range(count), int(count * config.cancel_share)):
        styles[index] = ("task_cancel", "timeout", "scope")[index % 3]
        triggers[max(0, index - IN_FLIGHT) + rng.randint(0, IN_FLIGHT)].append(index)
    cancels: dict[int, Any] = {}
    cancelled_at: dict[int, float] = {}
    closing_from = count - int(count * config.close_share)  # these still wait at aclose()
    gc.collect()
    tasks_before = asyncio.all_tasks()
    fds_before = _fds()
    lost_track: set[str] = set()  # prompts whose create answer was lost after the caller left

    def on_event(event: q.TaskEvent) -> None:
        if event.kind is q.EventKind.LOST_TRACK:
            lost_track.add(event.detail["error"].prompt)

    client = _client(emulator, in_flight=IN_FLIGHT, seed=config.seed, hooks=(on_event,))
    loop = asyncio.get_running_loop()
    finished = 0
    rss: dict[str, float] = {}
    close_started: float | None = None
    shutting_down = False
    all_but_closing = anyio.Event()
    all_settled = anyio.Event()

    def fire(index: int) -> None:
        cancel = cancels.pop(index, None)
        if cancel is not None:
            cancelled_at[index] = time.time()
            cancel()

    def settle(index: int, outcome: Outcome) -> None:
        nonlocal finished
        cancels.pop(index, None)
        outcomes[index] = outcome
        finished += 1
        for victim in triggers.pop(finished, ()):
            loop.call_later(rng.uniform(0.0, 0.03), fire, victim)
        if "40%" not in rss and finished >= 0.4 * count:
            rss["40%"] = _rss_mib()
        if finished >= closing_from:
            all_but_closing.set()
        if finished == count:
            all_settled.set()

    async def generate(index: int) -> Outcome:
        try:
            result = await client.generate(f"chaos {config.seed} {index}", model=MODEL)
        except q.SubmissionUncertainError as exc:
            return Outcome("uncertain", type(exc).__name__)
        except q.QwenImageError as exc:
            return Outcome("error", type(exc).__name__, getattr(exc, "task_id", None))
        return Outcome("result", task_id=result.task_id)

    async def run_styled(index: int) -> Outcome:
        style = styles.get(index)
        if style == "task_cancel":
            task = asyncio.ensure_future(generate(index))
            cancels[index] = task.cancel
            return await task
        if style == "timeout":
            async with asyncio.timeout(None) as timeout:
                cancels[index] = lambda: timeout.reschedule(loop.time())
                return await generate(index)
        if style == "scope":
            with anyio.CancelScope() as scope:
                cancels[index] = scope.cancel
                return await generate(index)
            return Outcome("cancelled")
        return await generate(index)

    async def caller(index: int) -> None:
        try:
            outcome = await run_styled(index)
        except (asyncio.CancelledError, TimeoutError):
            if shutting_down:
                raise  # past the deadline: this caller is hung, not cancelled by the storm
            outcome = Outcome("cancelled")
        except Exception as exc:
            outcome = Outcome("raw", f"{type(exc).__name__}: {exc}"[:200])
        if outcome.kind == "cancelled" or index in cancelled_at:
            outcome.went_away = cancelled_at.get(index, time.time())
        elif close_started is not None and outcome.kind != "result":
            outcome.went_away = close_started  # ended by the close: its caller went away too
        settle(index, outcome)

    started = time.perf_counter()
    async with client:
        with anyio.move_on_after(config.deadline):
            async with anyio.create_task_group() as tg:
                for index in range(count):
                    tg.start_soon(caller, index)
                await all_but_closing.wait()
                close_started = time.time()
                elapsed = time.perf_counter() - started
                log(f"chaos: {finished} of {count} done after {elapsed:.1f} s; aclose()")
                with anyio.move_on_after(60):
                    await client.aclose()
                with anyio.move_on_after(10):
                    await all_settled.wait()
                shutting_down = True
                tg.cancel_scope.cancel()  # callers still waiting are hung: counted as such
    elapsed = time.perf_counter() - started
    rss["100%"] = _rss_mib()
    for _ in range(5):
        await asyncio.sleep(0)
    gc.collect()
    leaked = [t for t in asyncio.all_tasks() - tasks_before if t is not asyncio.current_task()]
    return {
        "outcomes": {f"chaos {config.seed} {i}": o for i, o in enumerate(outcomes)},
        "seconds": elapsed,
        "close_started": close_started,
        "closing_from": closing_from,
        "storm": len(styles),
        "storm_fired": len(cancelled_at),
        "lost_track": lost_track,
        "rss": rss,
        "leaked_tasks": [repr(t.get_coro())[:120] for t in leaked],
        "leaked_fds": _fds() - fds_before,
    }


async def _create_storm(emulator: Emulator, config: ChaosConfig) -> dict[str, Any]:
    """
    Callers cancelled while their create request is in the air (the emulator answers creates of
    `STORM_MODEL` 0.3 s late, and its in-flight cap of one keeps the new tasks PENDING): the
    case where a paid task is created after its caller went away (issue 8 item 1).
    """
    count = max(9, config.count // 100)
    outcomes = {f"create storm {config.seed} {i}": Outcome() for i in range(count)}
    client = q.Client(
        api_key=emulator.api_key,
        base_url=emulator.base_url,
        time_scale=SCALE,
        seed=config.seed,
        limits=q.Limits(
            queries_per_second=2000,
            models={STORM_MODEL: q.ModelLimits(in_flight=count, submits_per_second=5000)},
        ),
    )
    loop = asyncio.get_running_loop()

    async def caller(index: int, prompt: str) -> None:
        style = ("task_cancel", "timeout", "scope")[index % 3]
        generate = client.generate(prompt, model=STORM_MODEL)
        try:
            if style == "task_cancel":
                task = asyncio.ensure_future(generate)
                loop.call_later(STORM_CANCEL_AFTER, task.cancel)
                await task
            elif style == "timeout":
                async with asyncio.timeout(STORM_CANCEL_AFTER):
                    await generate
            else:
                with anyio.move_on_after(STORM_CANCEL_AFTER) as scope:
                    await generate
                if scope.cancelled_caught:
                    outcomes[prompt] = Outcome("cancelled", went_away=time.time())
                    return
            outcomes[prompt] = Outcome("result")
        except (asyncio.CancelledError, TimeoutError):
            outcomes[prompt] = Outcome("cancelled", went_away=time.time())
        except q.QwenImageError as exc:
            outcomes[prompt] = Outcome("error", type(exc).__name__, went_away=time.time())
        except Exception as exc:
            outcomes[prompt] = Outcome("raw", f"{type(exc).__name__}: {exc}"[:200])

    async with client, anyio.create_task_group() as tg:
        for index, prompt in enumerate(outcomes):
            tg.start_soon(caller, index, prompt)
    # The client is closed: what it was going to do about these tasks is done.
    return {"outcomes": outcomes}


def _judge(run: dict[str, Any], stats: dict[str, Any]) -> dict[str, Any]:
    """The figures, from the emulator's records and what each caller saw."""
    outcomes: dict[str, Outcome] = run["outcomes"]
    by_prompt: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for task in stats.get("tasks", []):
        by_prompt[task["prompt"]].append(task)
    kinds = Counter(o.kind for o in outcomes.values())
    errors = Counter(o.error for o in outcomes.values() if o.kind == "error")
    duplicates = lost = wrong = unobserved = left_pending = told_uncertain = 0
    lost_track: set[str] = run.get("lost_track", set())
    examples: dict[str, list[str]] = defaultdict(list)
    for prompt, outcome in outcomes.items():
        tasks = by_prompt.get(prompt, [])
        if len(tasks) > 1:
            duplicates += 1
            examples["duplicate"].append(prompt)
        statuses = {t["task_id"]: t["status"] for t in tasks}
        if outcome.kind == "result":
            if statuses.get(outcome.task_id) != "SUCCEEDED":
                wrong += 1
                examples["wrong"].append(f"{prompt}: result for {statuses.get(outcome.task_id)}")
            continue
        if outcome.kind == "error" and outcome.error == "TaskFailedError":
            if outcome.task_id not in statuses or statuses[outcome.task_id] != "FAILED":
                wrong += 1
                examples["wrong"].append(f"{prompt}: TaskFailedError for {statuses}")
            continue
        went_away = outcome.went_away
        for task in tasks:
            if task["status"] == "SUCCEEDED":
                if went_away is not None:
                    unobserved += 1  # its caller went away; billed, never delivered
                elif outcome.kind != "uncertain":
                    lost += 1
                    examples["lost"].append(f"{prompt}: {outcome.kind} {outcome.error}")
            if went_away is not None and (outcome.kind == "uncertain" or prompt in lost_track):
                # The create's answer was lost: no id to cancel. Its error went to the caller,
                # or (the caller gone) to a LOST_TRACK event: someone was told to resolve it.
                told_uncertain += 1
            elif went_away is not None and task["status"] != "CANCELED":
                # The client can cancel a task once it has left its caller and the create's
                # answer named it: a task started before then was never PENDING to it.
                scheduled = task.get("scheduled")
                could_cancel = max(went_away, task["created"]) + PENDING_GRACE
                if scheduled is None or scheduled > could_cancel:
                    left_pending += 1
                    late = "never" if scheduled is None else f"{scheduled - went_away:+.3f} s"
                    examples["left_pending"].append(
                        f"{prompt} ({task['task_id']}): {outcome.kind} {outcome.error or ''}, "
                        f"created {task['created'] - went_away:+.3f} s, started {late}, "
                        f"{task['status']}"
                    )
    creates = stats["requests"].get("create", {})
    close_started = run["close_started"]
    # A create sent just before the close may take effect a little later (answers are delayed
    # by up to 5 simulated seconds, 50 ms): only later ones count.
    late = [
        t
        for t in stats.get("tasks", [])
        if close_started is not None and t["created"] > close_started + CLOSE_GRACE
    ]
    created_after_close = len(late)
    examples["created_after_close"] = [
        f"{t['prompt']}: {t['created'] - (close_started or 0):+.3f} s, {t['status']}" for t in late
    ]
    uncertain_with_task = sum(
        1 for p, o in outcomes.items() if o.kind == "uncertain" and by_prompt.get(p)
    )
    rss = run["rss"]
    return {
        "generations": len(outcomes),
        "seconds": round(run["seconds"], 1),
        "outcomes": dict(kinds),
        "errors": dict(errors),
        "raw_count": kinds.get("raw", 0),
        "raw_exceptions": [o.error for o in outcomes.values() if o.kind == "raw"][:10],
        "storm": run["storm"],
        "storm_fired": run["storm_fired"],
        "tasks_created": len(stats.get("tasks", [])),
        "duplicates": duplicates,
        "lost": lost,
        "wrong": wrong,
        "uncertain": kinds.get("uncertain", 0),
        "uncertain_with_a_task": uncertain_with_task,
        "creates_dropped": int(creates.get("0", 0)),
        "creates_500": int(creates.get("500", 0)),
        "unobserved_after_caller_left": unobserved,
        "left_pending_after_cancel": left_pending,
        "uncertain_after_caller_left": told_uncertain,
        "lost_track_events": len(lost_track),
        "created_after_close": created_after_close,
        "leaked_asyncio_tasks": len(run["leaked_tasks"]),
        "leaked_task_examples": run["leaked_tasks"][:5],
        "leaked_fds": run["leaked_fds"],
        "rss_mib_40": round(rss.get("40%", 0.0), 1),
        "rss_mib_100": round(rss.get("100%", 0.0), 1),
        "rss_growth": round(rss["100%"] / rss["40%"] - 1, 3) if rss.get("40%") else None,
        "examples": {k: v[:5] for k, v in examples.items()},
    }


class _LogCounter(logging.Handler):
    """Counts the client's log records by level instead of printing thousands of tracebacks."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.levels: Counter[str] = Counter()
        self.first_error: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.levels[record.levelname] += 1
        if record.levelno >= logging.ERROR and self.first_error is None:
            self.first_error = record.getMessage()[:200]


def run_chaos(config: ChaosConfig, log: Any = print) -> dict[str, Any]:
    """The whole workload; returns the figures (see the module docstring)."""
    logger = logging.getLogger("aioqwenimage")
    counter = _LogCounter()
    saved = logger.propagate, logger.level
    logger.addHandler(counter)
    logger.propagate = False
    logger.setLevel(logging.WARNING)
    try:
        figures: dict[str, Any] = {"throughput": measure_throughput(config, log)}
        emulator_config = _emulator_config(config.seed, in_flight=100, durations=(20.0, 40.0))
        with Emulator.start(emulator_config) as emulator:
            _arm(emulator, CHAOS_FAULTS)
            run = asyncio.run(_chaos_run(emulator, config, log))
            fired = _admin(emulator, "/faults")["fired"]
            _admin(emulator, "/faults", "DELETE")
            stats = emulator.stats()
            _arm(emulator, STORM_FAULTS)
            storm = asyncio.run(_create_storm(emulator, config))
            storm_stats = emulator.stats()
    finally:
        logger.removeHandler(counter)
        logger.propagate, _ = saved
        logger.setLevel(saved[1])
    figures["chaos"] = _judge(run, stats)
    figures["chaos"]["faults_fired"] = fired
    judged = _judge(
        storm
        | {
            "close_started": None,
            "rss": {},
            "seconds": 0.0,
            "storm": 0,
            "storm_fired": 0,
            "leaked_tasks": [],
            "leaked_fds": 0,
        },
        storm_stats,
    )
    figures["create_storm"] = {
        key: judged[key]
        for key in (
            "generations",
            "outcomes",
            "errors",
            "raw_count",
            "tasks_created",
            "duplicates",
            "left_pending_after_cancel",
            "unobserved_after_caller_left",
        )
    }
    figures["chaos"]["log_records"] = dict(counter.levels)
    figures["chaos"]["first_error_log"] = counter.first_error
    return figures


def render(figures: dict[str, Any]) -> str:
    """The figures as the lines `python -m benchmarks chaos` prints."""
    chaos, tp, storm = figures["chaos"], figures["throughput"], figures["create_storm"]
    clean, noisy = tp["fault_free"], tp["throttled_5pct"]
    growth = chaos["rss_growth"]
    rows = [
        ("generations", f"{chaos['generations']} in {chaos['seconds']} s"),
        ("caller outcomes", chaos["outcomes"]),
        ("typed errors", chaos["errors"]),
        ("faults injected (emulator)", chaos.get("faults_fired", {})),
        ("cancellation storm", f"{chaos['storm']} callers, {chaos['storm_fired']} cancelled"),
        ("tasks created (server)", chaos["tasks_created"]),
        ("prompts with duplicate tasks", chaos["duplicates"]),
        ("lost (server success, no caller)", chaos["lost"]),
        ("wrong outcomes", chaos["wrong"]),
        (
            "SubmissionUncertainError",
            (
                f"{chaos['uncertain']} ({chaos['uncertain_with_a_task']} with a task); creates "
                f"dropped {chaos['creates_dropped']}, answered 500 {chaos['creates_500']}"
            ),
        ),
        ("raw (untyped) exceptions", f"{chaos['raw_count']} {chaos['raw_exceptions'][:3]}"),
        ("left PENDING after caller left", chaos["left_pending_after_cancel"]),
        (
            "  ... create answer lost (told)",
            (
                f"{chaos['uncertain_after_caller_left']} tasks; "
                f"{chaos['lost_track_events']} LOST_TRACK events"
            ),
        ),
        (
            "  ... cancelled mid-create",
            (
                f"{storm['left_pending_after_cancel']} of {storm['tasks_created']} created "
                f"({storm['generations']} callers, {storm['outcomes']})"
            ),
        ),
        ("succeeded after caller left", chaos["unobserved_after_caller_left"]),
        ("tasks created after aclose()", chaos["created_after_close"]),
        ("client log records (>= WARNING)", chaos["log_records"]),
        (
            "asyncio tasks left after close",
            f"{chaos['leaked_asyncio_tasks']} {chaos['leaked_task_examples'][:2]}",
        ),
        ("file descriptors left", chaos["leaked_fds"]),
        (
            "RSS at 40% / 100%",
            f"{chaos['rss_mib_40']} / {chaos['rss_mib_100']} MiB"
            + (f" ({growth:+.1%})" if growth is not None else ""),
        ),
        (
            "throughput, fault-free",
            f"{clean['per_second']}/s ({clean['results']} in {clean['seconds']} s)",
        ),
        (
            "throughput, 5% transient 429s",
            (
                f"{noisy['per_second']}/s ({noisy['results']} in {noisy['seconds']} s, "
                f"{noisy['create_429s']} 429s): ratio {tp['ratio']}"
            ),
        ),
    ]
    return "\n".join(f"{name:<34} {value}" for name, value in rows)


def main(argv: list[str]) -> int:
    """``python -m benchmarks chaos [--count N] [--seed S] [--deadline SECONDS] [--json PATH]``."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks chaos", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--count", type=int, default=5000, help="chaos generations (5000)")
    parser.add_argument(
        "--throughput-count", type=int, default=1000, help="generations per throughput run (1000)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--deadline", type=float, default=600.0, help="seconds per part (600)")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    config = ChaosConfig(
        count=args.count,
        throughput_count=args.throughput_count,
        seed=args.seed,
        deadline=args.deadline,
    )
    figures = run_chaos(config, log=lambda m: print(f"{time.strftime('%H:%M:%S')} {m}", flush=True))
    print(render(figures))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0
