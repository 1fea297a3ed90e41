"""The ledger: each outcome lands in the journal, the cached row, the tally and the log at once."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from aioqwenimage._cli._journal import Journal, State
from aioqwenimage._cli._ledger import Ledger
from aioqwenimage._cli._progress import Phase, Tally
from aioqwenimage._errors import RateLimitError

if TYPE_CHECKING:
    from collections.abc import Callable


@pytest.fixture
def ledger(make_journal: Callable[..., Journal]) -> tuple[Ledger, list[str]]:
    """A ledger over a three-item journal, and the lines it logged."""
    journal = make_journal(3)
    lines: list[str] = []
    return Ledger(journal, Tally(total=3), lines.append), lines


def test_a_failure_is_journaled_counted_and_said(ledger: tuple[Ledger, list[str]]):
    """``failed`` moves the journal, refreshes the row, counts it and logs the code."""
    books, lines = ledger
    books.journal.sending(0)
    books.failed(0, "DataInspectionFailed", "inappropriate")
    assert (State.FAILED, Phase.FAILED) == (books.rows[0].state, books.tally.phases[0])
    assert ["failed 0001: DataInspectionFailed: inappropriate"] == lines


def test_an_uncertain_item_keeps_its_state_and_says_why(ledger: tuple[Ledger, list[str]]):
    """An uncertain create stays ``sending`` (for reconciliation) with the reason as its note."""
    books, lines = ledger
    books.journal.sending(1)
    books.uncertain(1, "the answer was lost")
    assert (State.SENDING, "the answer was lost") == (books.rows[1].state, books.rows[1].note)
    assert ("the answer was lost", Phase.UNCERTAIN) == (books.why[1], books.tally.phases[1])
    assert ["uncertain 0002: the answer was lost; not sent again"] == lines


def test_a_refusal_before_creation_puts_a_sending_item_back(ledger: tuple[Ledger, list[str]]):
    """Throttled out: the item in ``sending`` is ``pending`` again; one never sent stays so."""
    books, lines = ledger
    books.journal.sending(0)
    books.refused_before_creation(0, RateLimitError("throttled"))
    books.refused_before_creation(1, RateLimitError("throttled"))
    assert [State.PENDING, State.PENDING] == [books.journal.state(0), books.journal.state(1)]
    assert [1, 0] == [len(books.journal.transitions(0)) - 1, len(books.journal.transitions(1))]
    assert {0: Phase.NOT_SENT, 1: Phase.NOT_SENT} == books.tally.phases
    assert 2 == len(lines)


def test_a_download_is_done_and_a_synchronous_item_is_done_without_a_task(
    ledger: tuple[Ledger, list[str]],
):
    """An item with a task ends ``downloaded``; one without (a synchronous call) ``done``."""
    books, lines = ledger
    for seq, task_id in ((0, "task-0"), (1, None)):
        books.journal.sending(seq)
        if task_id is not None:
            books.journal.created(seq, task_id)
        books.journal.succeeded(
            seq, urls=[(0, "u")], actual_prompts=[None], echoed_prompt=None, server_times={}
        )
        books.refresh(seq)
    books.downloaded(0, ["0001-a-fox.png"], announce=True)
    books.downloaded(1, ["0002-a-fox.png"], announce=False)
    assert [State.DOWNLOADED, State.DONE] == [books.rows[0].state, books.rows[1].state]
    assert ("0001-a-fox.png",) == books.rows[0].files
    assert [Phase.DONE, Phase.DONE] == [books.tally.phases[0], books.tally.phases[1]]
    assert ["done 0001: 0001-a-fox.png"] == lines


def test_a_failed_download_leaves_the_journal_for_the_next_run(ledger: tuple[Ledger, list[str]]):
    """The item stays ``succeeded`` (URLs kept); this run counts it failed and says why."""
    books, lines = ledger
    books.journal.sending(2)
    books.journal.succeeded(
        2, urls=[(0, "u")], actual_prompts=[None], echoed_prompt=None, server_times={}
    )
    books.not_downloaded(2, "download failed: 404", say="download failed (404)")
    books.not_downloaded(2, "could not refresh expired URLs")
    assert State.SUCCEEDED == books.journal.state(2)
    assert ("could not refresh expired URLs", Phase.FAILED) == (books.why[2], books.tally.phases[2])
    assert ["0003: download failed (404)"] == lines


def test_not_sent_and_not_finished_touch_only_this_run(ledger: tuple[Ledger, list[str]]):
    """Items this run did not finish are counted and explained; the journal is unchanged."""
    books, lines = ledger
    books.not_sent(0, "interrupted before it was sent")
    books.not_finished(1, "could not follow the task")
    assert [State.PENDING, State.PENDING] == [books.journal.state(0), books.journal.state(1)]
    assert {0: "interrupted before it was sent", 1: "could not follow the task"} == books.why
    assert ["0002: could not follow the task; a re-run re-attaches it"] == lines
