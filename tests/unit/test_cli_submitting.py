"""Submitting one item against the emulator: what each end of ``submit()`` leaves in the journal."""

from __future__ import annotations

from typing import TYPE_CHECKING

import aioqwenimage as q
from aioqwenimage._cli._journal import Journal, State
from aioqwenimage._cli._ledger import Ledger
from aioqwenimage._cli._progress import Phase, Tally
from aioqwenimage._cli._stopping import Stopping
from aioqwenimage._cli._submitting import submit
from aioqwenimage.testing import FakeDashScope, Fault, FaultKind

if TYPE_CHECKING:
    from collections.abc import Callable

SCALE = 0.01


def _ledger(journal: Journal) -> Ledger:
    return Ledger(journal, Tally(total=len(journal.rows())), lambda _: None)


def _client(fake: FakeDashScope) -> q.Client:
    return q.Client(api_key=fake.api_key, base_url=fake.base_url, time_scale=SCALE)


async def test_a_created_task_is_journaled_with_its_id(make_journal: Callable[..., Journal]):
    """The task's id is committed as soon as ``submit()`` returns, and counted as created."""
    ledger = _ledger(make_journal(1))
    async with FakeDashScope(time_scale=SCALE, seed=1) as fake, _client(fake) as client:
        handle = await submit(client, ledger, Stopping(), 0)
        assert handle is not None
        await handle
    row = ledger.journal.row(0)
    assert (State.CREATED, handle.task_id, 1) == (row.state, row.task_id, row.attempts)
    assert (1, Phase.RUNNING) == (ledger.tally.created, ledger.tally.phases[0])


async def test_nothing_leaves_once_the_batch_stops(make_journal: Callable[..., Journal]):
    """After a stop, the create is not sent: the item stays ``pending``, not sent, with why."""
    ledger = _ledger(make_journal(1))
    stop = Stopping()
    stop.stop_submitting("interrupted before it was sent")
    async with FakeDashScope(time_scale=SCALE, seed=1) as fake, _client(fake) as client:
        assert await submit(client, ledger, stop, 0) is None
        assert 0 == sum(fake.stats.tasks_created.values())
    assert (State.PENDING, []) == (ledger.journal.state(0), ledger.journal.transitions(0))
    assert ("interrupted before it was sent", Phase.NOT_SENT) == (
        ledger.why[0],
        ledger.tally.phases[0],
    )


async def test_a_key_refused_for_every_item_stops_the_batch(make_journal: Callable[..., Journal]):
    """An authentication refusal puts the item back to ``pending`` and sets the brake."""
    ledger = _ledger(make_journal(1))
    stop = Stopping()
    async with (
        FakeDashScope(time_scale=SCALE, seed=1) as fake,
        q.Client(api_key="sk-wrong", base_url=fake.base_url, time_scale=SCALE) as client,
    ):
        assert await submit(client, ledger, stop, 0) is None
    assert (State.PENDING, True) == (ledger.journal.state(0), stop.stopping)
    assert isinstance(stop.fatal, q.AuthenticationError)


async def test_a_lost_answer_leaves_the_item_sending(make_journal: Callable[..., Journal]):
    """The create may have made a task: ``sending`` stays, for reconciliation, with the reason."""
    ledger = _ledger(make_journal(1))
    lost = Fault(kind=FaultKind.DROP_AFTER, endpoints=["create"], times=1)
    async with (
        FakeDashScope(time_scale=SCALE, seed=1, faults=[lost]) as fake,
        _client(fake) as client,
    ):
        assert await submit(client, ledger, Stopping(), 0) is None
    assert (State.SENDING, Phase.UNCERTAIN) == (ledger.journal.state(0), ledger.tally.phases[0])
    assert ledger.why[0].startswith("the create was sent but its answer was lost")
