"""The journal's transitions: the table of allowed moves, the history, what a reopen reads."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from aioqwenimage._cli._journal import Journal, JournalError, State
from aioqwenimage._cli._records import ALLOWED

if TYPE_CHECKING:
    from collections.abc import Callable


def _move(journal: Journal, seq: int, new: State) -> None:
    """Move item `seq` to `new` through the journal's public method for that state."""
    moves: dict[State, Callable[[], Any]] = {
        State.PENDING: lambda: journal.pending(seq, "again"),
        State.SENDING: lambda: journal.sending(seq),
        State.CREATED: lambda: journal.created(seq, f"task-{seq}"),
        State.RUNNING: lambda: journal.running(seq),
        State.SUCCEEDED: lambda: journal.succeeded(
            seq,
            urls=[(0, "http://x/0.png")],
            actual_prompts=[None],
            echoed_prompt=None,
            server_times={},
        ),
        State.FAILED: lambda: journal.failed(seq, "Code", "message"),
        State.CANCELED: lambda: journal.canceled(seq, "cancelled"),
        State.EXPIRED: lambda: journal.expired(seq, "too old"),
        State.DOWNLOADED: lambda: journal.downloaded(seq, ["a.png"]),
        State.DONE: lambda: journal.downloaded(seq, ["a.png"], sync=True),
    }
    moves[new]()


@pytest.mark.parametrize("old", list(State))
def test_every_move_follows_the_table(make_journal: Callable[..., Journal], old: State):
    """From each state, the moves in ALLOWED are written and every other one is refused."""
    journal = make_journal(len(State), name=old.value)
    for seq, new in enumerate(State):
        if old is not State.PENDING:
            journal.restore(seq, old, "set up", task_id=f"task-{seq}")
        before = len(journal.transitions(seq))
        if new in ALLOWED[old]:
            _move(journal, seq, new)
            assert (new, new) == (journal.state(seq), journal.row(seq).state)
            assert before + 1 == len(journal.transitions(seq))
        else:
            with pytest.raises(JournalError, match="illegal journal transition"):
                _move(journal, seq, new)
            assert (old, old) == (journal.state(seq), journal.row(seq).state)
            assert before == len(journal.transitions(seq))


def test_restore_only_sets_a_fresh_item(make_journal: Callable[..., Journal]):
    """``--recover`` may put a pending item anywhere, but never rewrites one that moved."""
    journal = make_journal(2)
    journal.restore(0, State.DOWNLOADED, "from the files", task_id="t", files=["a.png"])
    assert (State.DOWNLOADED, ("a.png",), "t") == (
        journal.row(0).state,
        journal.row(0).files,
        journal.row(0).task_id,
    )
    with pytest.raises(JournalError, match="not a fresh item"):
        journal.restore(0, State.SENDING, "again")


def test_going_back_to_pending_forgets_the_task_but_the_history_keeps_it(
    make_journal: Callable[..., Journal],
):
    """A task id an item gave up stays known, so reconciliation never takes it for an orphan."""
    journal = make_journal(1)
    journal.sending(0)
    journal.created(0, "first")
    journal.canceled(0, "cancelled")
    journal.pending(0, "sent again")
    assert (None, {"first"}) == (journal.row(0).task_id, journal.known_task_ids())
    history = [(old, new) for _, old, new, _ in journal.transitions(0)]
    assert [
        ("pending", "sending"),
        ("sending", "created"),
        ("created", "canceled"),
        ("canceled", "pending"),
    ] == history


def test_a_reopened_journal_reads_the_committed_states(make_journal: Callable[..., Journal]):
    """The states kept in memory are rebuilt from the file: what was committed is what resumes."""
    journal = make_journal(2)
    journal.sending(1)
    journal.created(1, "t1")
    reopened = Journal.open(journal.path.parent, fingerprint=_fingerprint(journal), items=[])
    try:
        assert [State.PENDING, State.CREATED] == [reopened.state(0), reopened.state(1)]
        assert "t1" == reopened.row(1).task_id
    finally:
        reopened.close()


def _fingerprint(journal: Journal) -> dict[str, Any]:
    import json

    stored = journal.meta("fingerprint")
    assert stored is not None
    result: dict[str, Any] = json.loads(stored)
    return result


def test_annotate_and_meta_change_no_state(make_journal: Callable[..., Journal]):
    """A note and a metadata value are written without a transition."""
    journal = make_journal(1)
    journal.annotate(0, "why it is uncertain")
    journal.set_meta("k", "v")
    assert ("why it is uncertain", State.PENDING, []) == (
        journal.row(0).note,
        journal.row(0).state,
        journal.transitions(0),
    )
    assert ("v", None) == (journal.meta("k"), journal.meta("missing"))


def test_an_unknown_item_is_a_key_error(make_journal: Callable[..., Journal]):
    """Asking for an item the journal does not hold fails loudly."""
    with pytest.raises(KeyError):
        make_journal(1).row(5)
