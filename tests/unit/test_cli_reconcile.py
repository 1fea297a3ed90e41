"""Reconciliation's journal writes: each decision recorded, and what to start next handed back."""

from __future__ import annotations

from typing import TYPE_CHECKING

import aioqwenimage as q
from aioqwenimage._cli._journal import Journal, State
from aioqwenimage._cli._ledger import Ledger
from aioqwenimage._cli._progress import Phase, Tally
from aioqwenimage._cli._reconcile import Decision, Next, OrphanOutcome, record
from aioqwenimage._models import TaskStatus
from aioqwenimage.testing import FakeDashScope

if TYPE_CHECKING:
    from collections.abc import Callable

SCALE = 0.01


async def _a_result(prompt: str) -> q.GenerationResult:
    async with (
        FakeDashScope(time_scale=SCALE, seed=1) as fake,
        q.Client(api_key=fake.api_key, base_url=fake.base_url, time_scale=SCALE) as client,
    ):
        return await client.generate(prompt)


def _uncertain(journal: Journal) -> tuple[Ledger, list[str]]:
    lines: list[str] = []
    for seq in range(len(journal.rows())):
        journal.sending(seq)
    return Ledger(journal, Tally(total=len(journal.rows())), lines.append), lines


def _decision(task_id: str) -> Decision:
    orphan = OrphanOutcome(task_id=task_id, model="qwen-image-plus", status=TaskStatus.SUCCEEDED)
    return Decision(
        adopt={0: orphan},
        resend=(1,),
        unresolved=(2,),
        reasons={0: "its task echoes the prompt", 1: "no task can be its own", 2: "cannot tell"},
    )


async def test_each_decision_is_journaled_and_handed_back(make_journal: Callable[..., Journal]):
    """Adopted: ``succeeded`` with the task, to download; safe: ``pending``, to send; else kept."""
    result = await _a_result("a fox 0")
    assert result.task_id is not None
    ledger, lines = _uncertain(make_journal(3))
    journal = ledger.journal
    steps = list(
        record(_decision(result.task_id), {result.task_id: result}, ledger, resend_uncertain=False)
    )
    assert [Next(0, result.task_id, result), Next(1)] == steps
    assert [State.SUCCEEDED, State.PENDING, State.SENDING] == [
        journal.state(seq) for seq in range(3)
    ]
    assert (result.task_id, Phase.DOWNLOADING) == (journal.row(0).task_id, ledger.tally.phases[0])
    assert (Phase.UNCERTAIN, "cannot tell") == (ledger.tally.phases[2], ledger.why[2])
    assert lines[0] == "0001: its task echoes the prompt; adopted"


async def test_resend_uncertain_sends_the_undecided_again(make_journal: Callable[..., Journal]):
    """With ``--resend-uncertain`` an item nobody can settle is ``pending`` and handed back."""
    result = await _a_result("a fox 0")
    assert result.task_id is not None
    ledger, lines = _uncertain(make_journal(3))
    steps = list(
        record(_decision(result.task_id), {result.task_id: result}, ledger, resend_uncertain=True)
    )
    assert [0, 1, 2] == [step.seq for step in steps]
    assert State.PENDING == ledger.journal.state(2)
    assert "sent again (--resend-uncertain)" in (ledger.journal.row(2).note or "")
    assert lines[-1] == "0003: cannot tell; sending again (--resend-uncertain)"
