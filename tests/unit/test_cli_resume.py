"""The resume plan: each journal state to what this run does with the item, without the network."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aioqwenimage._cli._journal import Journal, State
from aioqwenimage._cli._progress import Phase, Tally
from aioqwenimage._cli._resume import Plan, files_present, plan, too_old

if TYPE_CHECKING:
    from collections.abc import Callable

NOW = 1_000_000.0
DAY = 86_400.0


def _plan(journal: Journal, **options: bool) -> tuple[Plan, Tally, list[str]]:
    tally = Tally(total=len(journal.rows()))
    lines: list[str] = []
    result = plan(
        journal,
        tally,
        out=journal.path.parent,
        now=NOW,
        emulator=options.get("emulator", False),
        retry_failed=options.get("retry_failed", False),
        log=lines.append,
    )
    return result, tally, lines


def test_each_state_goes_to_its_step(make_journal: Callable[..., Journal]):
    """Pending: submit; created: attach; succeeded: download; sending: reconcile; failed: none."""
    journal = make_journal(6)
    out = journal.path.parent
    (out / "0006-a-fox.png").write_bytes(b"png")
    recent = NOW - 60
    journal.restore(1, State.CREATED, "t", task_id="t1", created_at=recent)
    journal.restore(2, State.SUCCEEDED, "t", task_id="t2", created_at=recent)
    journal.restore(3, State.SENDING, "t", sending_at=recent)
    journal.restore(4, State.FAILED, "t", task_id="t4", created_at=recent)
    journal.restore(5, State.DOWNLOADED, "t", task_id="t5", files=["0006-a-fox.png"])
    todo, tally, lines = _plan(journal)
    assert ([0], [1], [2], [3]) == (
        todo.submit,
        todo.attach,
        todo.download,
        [row.seq for row in todo.uncertain],
    )
    assert [Phase.QUEUED, Phase.RUNNING, Phase.DOWNLOADING, Phase.RECONCILING] == [
        tally.phases[seq] for seq in range(4)
    ]
    assert (Phase.FAILED, Phase.SKIPPED) == (tally.phases[4], tally.phases[5])
    assert [State.FAILED, State.DOWNLOADED] == [journal.state(4), journal.state(5)]
    assert lines[-1].startswith("resuming: 1 done, 1 task to re-attach")


def test_missing_files_are_downloaded_again(make_journal: Callable[..., Journal]):
    """A finished item whose files are gone goes back to ``succeeded`` (its URLs kept)."""
    journal = make_journal(1)
    journal.restore(0, State.DOWNLOADED, "t", task_id="t0", created_at=NOW - 60, files=["x.png"])
    todo, _, lines = _plan(journal)
    assert ([0], State.SUCCEEDED) == (todo.download, journal.state(0))
    assert "0001: files missing; downloading them again" == lines[0]


def test_a_task_past_the_retention_is_expired_not_followed(make_journal: Callable[..., Journal]):
    """The service keeps tasks 24 hours: an older one is recorded expired, not attached."""
    journal = make_journal(1)
    journal.restore(0, State.CREATED, "t", task_id="t0", created_at=NOW - DAY - 1)
    todo, tally, _ = _plan(journal)
    assert ([], State.EXPIRED, Phase.EXPIRED) == (todo.attach, journal.state(0), tally.phases[0])
    assert too_old(journal.row(0), NOW)


def test_cancelled_items_and_with_retry_failed_failed_ones_are_sent_again(
    make_journal: Callable[..., Journal],
):
    """A cancelled task made nothing (free to re-send); a failed one only on request."""
    journal = make_journal(2)
    journal.restore(0, State.CANCELED, "t", task_id="t0", created_at=NOW - 60)
    journal.restore(1, State.FAILED, "t", task_id="t1", created_at=NOW - 60)
    todo, _, _ = _plan(journal, retry_failed=True)
    assert ([0, 1], [State.PENDING, State.PENDING]) == (
        todo.submit,
        [journal.state(0), journal.state(1)],
    )


def test_a_dead_in_process_emulator_sends_live_items_again(make_journal: Callable[..., Journal]):
    """Tasks that lived in the earlier run's emulator are gone with it: sent again."""
    journal = make_journal(2)
    journal.restore(0, State.CREATED, "t", task_id="t0", created_at=NOW - 60)
    journal.restore(1, State.SENDING, "t", sending_at=NOW - 60)
    todo, _, lines = _plan(journal, emulator=True)
    assert ([0, 1], []) == (todo.submit, todo.uncertain)
    assert "new in-process emulator: 2 items" in lines[0]


def test_a_download_cut_short_leaves_no_partial_file(make_journal: Callable[..., Journal]):
    """The hidden temporary file of an interrupted download is removed before anything runs."""
    journal = make_journal(1)
    partial = journal.path.parent / ".0001-a-fox.png.1234.part"
    partial.write_bytes(b"half")
    _plan(journal)
    assert not partial.exists()
    assert not files_present(journal.row(0), journal.path.parent)


def test_a_download_of_another_worker_sharing_the_directory_is_left_alone(
    make_journal: Callable[..., Journal],
):
    """`batch --shard`: a worker starting late removes its own partial files, not the others'."""
    journal = make_journal(1)
    out = journal.path.parent
    mine = out / ".0001-a-fox.png.1234.part"
    theirs = out / ".0002-a-fox.png.5678.part"  # an item of another shard, downloading now
    for partial in (mine, theirs):
        partial.write_bytes(b"half")
    _plan(journal)
    assert (False, True) == (mine.exists(), theirs.exists())
