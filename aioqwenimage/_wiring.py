"""
How the parts of one client are put together, and which part gets which collaborator.

Calls go one way along a generation's path (see ``docs/architecture.md``): the client's methods
call `PaidRequests`, `Cancelling`, `TaskQueries` and the `Registry`; paid requests take slots from
`Admission` and register what they made; the poll scheduler calls the `Poller`, which reports to
the `Registry`; the `Registry` ends generations, releasing slots through `Admission`. Every part
counts into the one `Recorder`. The scheduler and the sweeper need the running loop's clock, so
`start` builds them when the client opens.
"""

from __future__ import annotations

import random

import anyio
import attrs

from aioqwenimage._admission import Admission
from aioqwenimage._cancelling import Cancelling
from aioqwenimage._coordination import Coordinator, SharedCoordinator
from aioqwenimage._download import Downloader
from aioqwenimage._events import EventHook, Recorder
from aioqwenimage._handle import TaskHandle
from aioqwenimage._host import Host, Runner
from aioqwenimage._notifications import Notifications
from aioqwenimage._notified_polling import NotifiedPolling
from aioqwenimage._paid import PaidRequests
from aioqwenimage._polling import Poller
from aioqwenimage._queries import TaskQueries
from aioqwenimage._query_budget import QueryBudget
from aioqwenimage._registry import Registry
from aioqwenimage._safety import ResultPolicy
from aioqwenimage._scheduler import PollScheduler
from aioqwenimage._settings import Limits, PollPolicy
from aioqwenimage._sweep import Sweeper
from aioqwenimage._transport import Transport

__all__ = ["Parts", "build", "start"]


@attrs.define(kw_only=True, eq=False)
class Parts:
    """The parts of one client, each built once."""

    transport: Transport
    events: Recorder
    downloader: Downloader
    admission: Admission
    queries: TaskQueries
    registry: Registry
    cancelling: Cancelling
    paid: PaidRequests
    poller: Poller
    host: Host
    limits: Limits
    poll_policy: PollPolicy
    time_scale: float
    rng: random.Random
    notified: NotifiedPolling | None = None  # with completion notifications only
    coordinator: SharedCoordinator | None = None  # shared between processes only


def build(
    transport: Transport,
    *,
    limits: Limits,
    poll_policy: PollPolicy,
    region: str,
    time_scale: float,
    rng: random.Random,
    hooks: tuple[EventHook, ...],
    strict_results: bool,
    notifications: Notifications | None = None,
    coordinator: Coordinator | None = None,
    account: str = "",
) -> Parts:
    """
    All parts of a client around its `transport`; nothing runs until `start`.

    `account` names the account to a shared `coordinator` (a hash of the key, never the key).
    """
    events = Recorder(hooks)
    if isinstance(coordinator, SharedCoordinator):
        coordinator.bind(
            account=account,
            report=lambda kind, detail: events.report(kind, None, None, None, detail),
            clock=anyio.current_time,
        )
    downloader = Downloader(
        transport,
        events=events,
        concurrency=transport.pools.download,
        retry=transport.retry,
        rng=rng,
        policy=ResultPolicy(strict=strict_results),
    )
    admission = Admission(
        limits, region=region, time_scale=time_scale, rng=rng, coordinator=coordinator
    )
    host = Host()
    budget = QueryBudget(limits.queries_per_second, scale=time_scale, coordinator=coordinator)
    queries = TaskQueries(transport, budget, events)

    async def cancel_handle(handle: TaskHandle) -> bool:  # a handle's `cancel`
        return await cancelling.cancel(handle)

    registry = Registry(
        admission=admission, downloader=downloader, events=events, canceller=cancel_handle
    )
    cancelling = Cancelling(registry, queries, task_group=host.task_group)
    paid = PaidRequests(
        transport,
        admission,
        registry,
        events,
        task_group=host.task_group,
        cancel=cancel_handle,
        rng=rng,
    )
    poller = Poller(transport, registry, queries, events, policy=poll_policy, time_scale=time_scale)
    notified = None
    if notifications is not None:
        notified = NotifiedPolling(
            registry, stretch=notifications.stretch, missing_after=notifications.missing_after
        )
        notifications._bind(notified)  # noqa: SLF001 - the receiver feeds this client
    return Parts(
        transport=transport,
        events=events,
        downloader=downloader,
        admission=admission,
        queries=queries,
        registry=registry,
        cancelling=cancelling,
        paid=paid,
        poller=poller,
        host=host,
        limits=limits,
        poll_policy=poll_policy,
        time_scale=time_scale,
        rng=rng,
        notified=notified,
        coordinator=coordinator if isinstance(coordinator, SharedCoordinator) else None,
    )


def start(parts: Parts) -> None:
    """Open the transport and start the poll scheduler (and the sweeper) in the running loop."""
    parts.transport.open()
    policy = parts.poll_policy
    scheduler = PollScheduler(
        parts.poller.poll,
        policy=policy,
        budget=parts.queries.budget,
        rng=parts.rng,
        # No more polls in the air than query connections: a poll never waits for one.
        max_in_air=parts.transport.pools.query,
    )
    runners: list[Runner] = [scheduler.run]
    sweeper = None
    shared = parts.coordinator
    # With notifications, sweeps pause while they are trusted.
    live = parts.notified.sweepable if parts.notified else parts.registry.sweepable
    if policy.sweep:
        sweeper = Sweeper(
            list_page=parts.queries.list_page,
            live=live if shared is None else shared.account_live,
            announce=parts.registry.announce if shared is None else shared.route,
            interval=policy.sweep_interval,
            min_live=policy.sweep_min_live,
            share=parts.limits.queries_per_second * policy.sweep_share / parts.time_scale,
            # Shared: one process sweeps for all, and sends each its finished tasks.
            leading=(lambda: True) if shared is None else (lambda: shared.leading),
        )
        runners.append(sweeper.run)
    if shared is not None:
        if policy.sweep:
            shared.bind_sweeps(
                live=live, announce=parts.registry.announce, interval=policy.sweep_interval
            )
        runners.append(shared.run)
    if sweeper is None:
        parts.registry.bind(scheduler)
    else:
        parts.registry.bind(scheduler, lambda: sweeper.trusted)
    parts.poller.bind(scheduler, sweeper, parts.notified)
    if parts.notified is not None:
        parts.notified.bind(scheduler)
    parts.host.start(runners)
