"""
The benchmark workloads: tasks, their durations, the emulator's limits and what clients are told.

Every task's duration is a deterministic function of (seed, model, prompt) in the emulator
(``durations_by_prompt=True``), so every client meets the same tasks; `expected_durations` computes
the same function here, for the ideal schedule, and the runner checks it against what the emulator
reports.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["WORKLOADS", "Group", "ModelSetup", "Workload", "expected_duration"]

# The emulator's scheduling delay, simulated seconds: a task ends no sooner than this.
_DELAY: Final = (0.020, 0.060)


@dataclass(frozen=True)
class Group:
    """
    A batch of generations of one model, all started at the beginning of the run.

    Attributes:
        name: ``"async"`` (task API) or ``"sync"`` (synchronous multimodal calls).
        model: The model.
        count: How many generations, each with its own prompt.
        durations: The (low, high) simulated seconds of one generation.
    """

    name: str
    model: str
    count: int
    durations: tuple[float, float]

    @property
    def sync(self) -> bool:
        """Whether the generations are synchronous calls."""
        return self.name == "sync"


@dataclass(frozen=True)
class ModelSetup:
    """
    One model's limits: what the emulator enforces, and what every client is told.

    Attributes:
        submits: Emulator: submissions per `period`; ``None``: unlimited.
        period: Emulator: the submission window, simulated seconds.
        in_flight: Emulator: the real in-flight cap; ``None``: none.
        over_cap: Emulator: ``"queue"`` (PENDING) or ``"reject"`` (429) beyond the cap.
        told_in_flight: Clients: the in-flight limit they are configured with (semaphore size).
        told_submits_per_second: Clients: the submission rate they are configured with.
    """

    submits: int | None
    period: float
    in_flight: int | None
    over_cap: str
    told_in_flight: int
    told_submits_per_second: float | None


@dataclass(frozen=True)
class Workload:
    """
    One benchmark: who submits what, under which limits.

    Attributes:
        name: ``B1``..``B4`` or ``smoke``.
        title: A short human name.
        description: One paragraph for the docs.
        groups: The generations (one async group; optionally a sync group run alongside).
        models: Limits per model.
        task_queries_per_second: Emulator: the account's shared task-API limit.
        client_queries_per_second: aioqwenimage's query budget (the others have none).
        time_scale: Real seconds per simulated second, for the emulator and for every client's
            waits that can be scaled (aioqwenimage's ``time_scale``, the SDK variants' pacing).
        seed: The emulator's seed (durations).
        timeout: Per client variant, wall seconds before it is stopped and marked timed out.
        timeouts: Per-variant overrides of `timeout`.
        sample_step: Seconds between samples of the in-flight series.
        notifications: When set, the emulator publishes task-completion events to aioqwenimage's
            receiver: ``latency`` (low, high) simulated seconds, ``duplicate_rate``,
            ``loss_rate`` (see `aioqwenimage.testing.NotificationTarget`).
    """

    name: str
    title: str
    description: str
    groups: tuple[Group, ...]
    models: dict[str, ModelSetup]
    task_queries_per_second: int
    client_queries_per_second: float
    time_scale: float = 1.0
    seed: int = 5
    timeout: float = 300.0
    timeouts: dict[str, float] = field(default_factory=dict)
    sample_step: float = 0.5
    notifications: dict[str, Any] | None = None

    @property
    def async_group(self) -> Group:
        """The task-API group."""
        return next(g for g in self.groups if not g.sync)

    @property
    def sync_group(self) -> Group | None:
        """The synchronous group, if any."""
        return next((g for g in self.groups if g.sync), None)

    def prompts(self, group: Group) -> list[str]:
        """The prompts of `group`, the same for every client."""
        return [
            f"{self.name} {group.name} #{i:05d}: a lighthouse on a cliff at dusk, oil painting"
            for i in range(group.count)
        ]

    def timeout_for(self, variant: str) -> float:
        """The wall-time cap of `variant` in this workload."""
        return self.timeouts.get(variant, self.timeout)

    def emulator_config(self) -> dict[str, Any]:
        """The JSON the emulator process is started with."""
        return {
            "time_scale": self.time_scale,
            "seed": self.seed,
            "durations": {g.model: list(g.durations) for g in self.groups},
            "task_queries_per_second": self.task_queries_per_second,
            "models": {
                model: {
                    "submits": setup.submits,
                    "period": setup.period,
                    "in_flight": setup.in_flight,
                    "over_cap": setup.over_cap,
                }
                for model, setup in self.models.items()
            },
        }

    def durations(self, group: Group) -> list[float]:
        """Real seconds each generation of `group` lasts, in prompt order."""
        return [
            expected_duration(self.seed, group.model, prompt, group.durations, self.time_scale)
            for prompt in self.prompts(group)
        ]


def _unit(digest: bytes) -> float:
    return int.from_bytes(digest, "big") / float(1 << (8 * len(digest)))


def expected_duration(
    seed: int, model: str, prompt: str, durations: tuple[float, float], time_scale: float
) -> float:
    """
    Real seconds from a task's start to its end in the emulator with ``durations_by_prompt``.

    The emulator draws (duration, scheduling delay) from a BLAKE2b digest of (seed, model, prompt);
    a task ends at start + max(duration, delay). The runner verifies this against the emulator's
    report, so a change to the emulator's rule is caught, not silently mismeasured.
    """
    key = f"{seed}\x00{model}\x00{prompt}".encode()
    digest = hashlib.blake2b(key, digest_size=16).digest()
    low, high = durations
    duration = low + (high - low) * _unit(digest[:8])
    delay = _DELAY[0] + (_DELAY[1] - _DELAY[0]) * _unit(digest[8:])
    return max(duration, delay) * time_scale


def scheduling_delay(seed: int, model: str, prompt: str, time_scale: float) -> float:
    """Real seconds between a task's start and its ``scheduled`` time in the emulator."""
    key = f"{seed}\x00{model}\x00{prompt}".encode()
    digest = hashlib.blake2b(key, digest_size=16).digest()
    return (_DELAY[0] + (_DELAY[1] - _DELAY[0]) * _unit(digest[8:])) * time_scale


_PLUS: Final = "qwen-image-plus"
_SYNC: Final = "qwen-image-2.0"

_B1_LIMITS: Final = ModelSetup(
    submits=10,
    period=1.0,
    in_flight=50,
    over_cap="queue",
    told_in_flight=50,
    told_submits_per_second=10,
)
_B1_GROUP: Final = Group("async", _PLUS, 200, (5.0, 15.0))

WORKLOADS: Final[dict[str, Workload]] = {
    "smoke": Workload(
        name="smoke",
        title="runner smoke test",
        description=(
            "A reduced B3 in compressed time (x0.1): 16 tasks of 5-15 simulated seconds, 8 in "
            "flight, 10 submissions/s, 20 queries/s, beside 6 synchronous calls. It checks that "
            "the runner, every client variant, the metrics and the report work; its numbers mean "
            "nothing."
        ),
        groups=(Group("async", _PLUS, 16, (5.0, 15.0)), Group("sync", _SYNC, 6, (5.0, 10.0))),
        models={
            _PLUS: ModelSetup(10, 1.0, 8, "queue", 8, 10),
            _SYNC: ModelSetup(None, 1.0, None, "queue", 6, 100),
        },
        task_queries_per_second=20,
        client_queries_per_second=15,
        time_scale=0.1,
        timeout=40.0,
        sample_step=0.1,
    ),
    "B1": Workload(
        name="B1",
        title="realistic",
        description=(
            "200 `qwen-image-plus` tasks of 5-15 s each (real time). The emulator allows 50 "
            "tasks in flight (more wait PENDING), 10 submissions/s and 20 task queries/s; every "
            "client is told 50 in flight and 10 submissions/s."
        ),
        groups=(_B1_GROUP,),
        models={_PLUS: _B1_LIMITS},
        task_queries_per_second=20,
        client_queries_per_second=15,
        timeout=240.0,
    ),
    "B2": Workload(
        name="B2",
        title="scale",
        description=(
            "10,000 `qwen-image-plus` tasks of 2-6 s, 2,000 in flight. The emulator allows 2,000 "
            "in flight, 500 submissions/s and 2,000 task queries/s; clients are told the same "
            "(aioqwenimage gets a 1,500 queries/s budget)."
        ),
        groups=(Group("async", _PLUS, 10_000, (2.0, 6.0)),),
        models={_PLUS: ModelSetup(500, 1.0, 2000, "queue", 2000, 500)},
        task_queries_per_second=2000,
        client_queries_per_second=1500,
        timeout=240.0,
        timeouts={"sdk1_threads": 540.0},
    ),
    "B3": Workload(
        name="B3",
        title="mixed",
        description=(
            "100 concurrent synchronous `qwen-image-2.0` calls of 5-10 s while the 200 async tasks "
            "of B1 run under B1's limits. The emulator does not limit `qwen-image-2.0` "
            "submissions; clients run all 100 at once."
        ),
        groups=(_B1_GROUP, Group("sync", _SYNC, 100, (5.0, 10.0))),
        models={_PLUS: _B1_LIMITS, _SYNC: ModelSetup(None, 1.0, None, "queue", 100, 100)},
        task_queries_per_second=20,
        client_queries_per_second=15,
        timeout=240.0,
    ),
    "B6": Workload(
        name="B6",
        title="notifications",
        description=(
            "B1 with completion notifications: the emulator publishes each task's end as "
            "EventBridge would, 0.2-2 s after it, losing 2% of the events and delivering 5% "
            "twice; aioqwenimage receives them (`Notifications`) and polls only as the fallback."
        ),
        groups=(_B1_GROUP,),
        models={_PLUS: _B1_LIMITS},
        task_queries_per_second=20,
        client_queries_per_second=15,
        timeout=240.0,
        notifications={"latency": (0.2, 2.0), "duplicate_rate": 0.05, "loss_rate": 0.02},
    ),
    "B4": Workload(
        name="B4",
        title="hidden limit",
        description=(
            "B1, but the emulator's real in-flight cap is 20, not the 50 clients are told, and "
            "it answers creates over the cap with 429 `Throttling.RateQuota` (with Retry-After)."
        ),
        groups=(_B1_GROUP,),
        models={_PLUS: ModelSetup(10, 1.0, 20, "reject", 50, 10)},
        task_queries_per_second=20,
        client_queries_per_second=15,
        timeout=300.0,
    ),
}
