"""Following a task to its end against the emulator: each end journaled for what it means."""

from __future__ import annotations

from typing import TYPE_CHECKING

import aioqwenimage as q
from aioqwenimage._cli._following import Following
from aioqwenimage._cli._journal import Journal, State
from aioqwenimage._cli._ledger import Ledger
from aioqwenimage._cli._progress import Phase, Tally
from aioqwenimage._cli._stopping import Stopping
from aioqwenimage.testing import FakeDashScope, Fault, FaultKind

if TYPE_CHECKING:
    from collections.abc import Callable

SCALE = 0.01


def _following(journal: Journal) -> tuple[Following, Ledger]:
    ledger = Ledger(journal, Tally(total=len(journal.rows())), lambda _: None)
    return Following(ledger, Stopping()), ledger


def _client(fake: FakeDashScope) -> q.Client:
    return q.Client(api_key=fake.api_key, base_url=fake.base_url, time_scale=SCALE)


async def _created(client: q.Client, journal: Journal, seq: int) -> q.TaskHandle:
    journal.sending(seq)
    handle = await client.submit(journal.row(seq).prompt)
    assert handle.task_id is not None
    journal.created(seq, handle.task_id)
    return handle


async def test_a_succeeded_task_returns_its_result(make_journal: Callable[..., Journal]):
    """The result comes back for the download and its URLs are journaled; the task is known."""
    journal = make_journal(1)
    following, ledger = _following(journal)
    async with FakeDashScope(time_scale=SCALE, seed=1) as fake, _client(fake) as client:
        handle = await _created(client, journal, 0)
        result = await following.follow(client, 0, handle)
    assert result is not None
    assert ledger.rows[0].state is State.SUCCEEDED
    assert (State.SUCCEEDED, len(result.images)) == (journal.state(0), len(journal.row(0).urls))
    assert handle.task_id is not None
    assert 0 == following.item_of(handle.task_id)


async def test_a_failed_task_is_failed_with_its_code(make_journal: Callable[..., Journal]):
    """A task that ends FAILED: the item is ``failed`` with the service's code; nothing returned."""
    journal = make_journal(1)
    following, ledger = _following(journal)
    failing = Fault(kind=FaultKind.TASK_FAILED, endpoints=["create"], times=1, code="Boom")
    async with (
        FakeDashScope(time_scale=SCALE, seed=1, faults=[failing]) as fake,
        _client(fake) as client,
    ):
        assert await following.follow(client, 0, await _created(client, journal, 0)) is None
    assert (State.FAILED, "Boom") == (journal.state(0), journal.row(0).error_code)
    assert Phase.FAILED == ledger.tally.phases[0]


async def test_a_task_the_service_no_longer_knows_is_expired(
    make_journal: Callable[..., Journal],
):
    """Re-attaching to a task the service has forgotten records it expired, not failed."""
    journal = make_journal(1)
    journal.restore(0, State.CREATED, "earlier run", task_id="no-such-task")
    following, ledger = _following(journal)
    async with FakeDashScope(time_scale=SCALE, seed=1) as fake, _client(fake) as client:
        handle = following.attach(client, journal.row(0))
        assert await following.follow(client, 0, handle) is None
    assert (State.EXPIRED, Phase.EXPIRED) == (journal.state(0), ledger.tally.phases[0])
