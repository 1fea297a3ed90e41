"""Reconciliation of uncertain creates against listed orphan tasks (pure logic, fake results)."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from aioqwenimage import TaskInfo, TaskStatus
from aioqwenimage._cli._reconcile import (
    MARGIN,
    OrphanOutcome,
    Uncertain,
    decide,
    find_orphans,
    list_since,
)

PLUS = "qwen-image-plus"
T0 = 1_800_000_000.0
UTC = dt.timezone.utc


def _item(seq: int, prompt: str, *, model: str = PLUS, at: float = T0, sync: bool = False):
    return Uncertain(seq=seq, model=model, prompt=prompt, sending_at=at + seq, sync=sync)


def _orphan(task_id: str, status: TaskStatus, prompt: str | None = None, model: str = PLUS):
    return OrphanOutcome(task_id=task_id, model=model, status=status, prompt=prompt)


def test_an_orphan_echoing_the_prompt_is_adopted_not_created_again():
    """The task an uncertain create made is found by its echoed prompt and adopted."""
    decision = decide(
        [_item(0, "a fox"), _item(1, "a lighthouse")],
        [
            _orphan("t-fox", TaskStatus.SUCCEEDED, "a fox"),
            _orphan("t-other", TaskStatus.SUCCEEDED, "someone else's prompt"),
        ],
    )
    assert {0: "t-fox"} == {seq: orphan.task_id for seq, orphan in decision.adopt.items()}
    # Every other orphan ended and none is item 1's: nothing was created for it.
    assert ((1,), ()) == (decision.resend, decision.unresolved)
    assert "t-fox" in decision.reasons[0]


def test_with_no_orphans_every_uncertain_item_is_safe_to_send_again():
    """Nothing unknown to the journal exists in the window: no create reached the service."""
    decision = decide([_item(0, "a"), _item(1, "b")], [])
    assert ({}, (0, 1), ()) == (dict(decision.adopt), decision.resend, decision.unresolved)


def test_an_orphan_still_running_leaves_the_items_of_its_model_unresolved():
    """A task that has not ended (its prompt unknown yet) may be any uncertain item's."""
    decision = decide(
        [_item(0, "a"), _item(1, "b", model="wan2.2-t2i-flash")],
        [_orphan("t-run", TaskStatus.RUNNING)],
    )
    assert ((1,), (0,)) == (decision.resend, decision.unresolved)
    assert "has not ended" in decision.reasons[0]


def test_failed_cancelled_and_expired_orphans_made_nothing_to_pay_for():
    """Orphans without images (FAILED, CANCELED, UNKNOWN) do not block a resend."""
    decision = decide(
        [_item(0, "a")],
        [
            _orphan("t1", TaskStatus.FAILED),
            _orphan("t2", TaskStatus.CANCELED),
            _orphan("t3", TaskStatus.UNKNOWN),
        ],
    )
    assert ((0,), ()) == (decision.resend, decision.unresolved)


def test_a_succeeded_orphan_without_an_echo_blocks_a_resend():
    """A finished task whose prompt the service did not echo may have been paid for: unresolved."""
    decision = decide([_item(0, "a")], [_orphan("t1", TaskStatus.SUCCEEDED, None)])
    assert ((), (0,)) == (decision.resend, decision.unresolved)


def test_when_the_listing_failed_nothing_can_be_ruled_out():
    """Without the task list, no uncertain item is declared safe."""
    decision = decide([_item(0, "a")], [], listed=False)
    assert ((), (0,)) == (decision.resend, decision.unresolved)


def test_a_synchronous_call_can_never_be_reconciled():
    """Synchronous models make no task, so their uncertain calls stay uncertain."""
    decision = decide(
        [_item(0, "a", model="qwen-image-max", sync=True)],
        [_orphan("t", TaskStatus.SUCCEEDED, "a", model="qwen-image-max")],
    )
    assert ({}, (), (0,)) == (dict(decision.adopt), decision.resend, decision.unresolved)


def test_sends_older_than_the_retention_stay_uncertain():
    """After 24 hours the service lists nothing: an old uncertain create cannot be settled."""
    decision = decide([_item(0, "a")], [], now=T0 + 25 * 3600)
    assert ((), (0,)) == (decision.resend, decision.unresolved)


def test_two_uncertain_items_with_one_prompt_take_one_orphan_each():
    """Duplicate prompts: one orphan adopts one item; the other has no task and is re-sent."""
    decision = decide(
        [_item(0, "same"), _item(1, "same")],
        [_orphan("t-a", TaskStatus.SUCCEEDED, "same")],
    )
    assert ({0: "t-a"}, (1,)) == (
        {seq: orphan.task_id for seq, orphan in decision.adopt.items()},
        decision.resend,
    )


def test_a_truncated_echo_of_a_long_prompt_still_matches():
    """The service truncates prompts over the limit, and echoes the truncated one."""
    long_prompt = "word " * 300
    decision = decide(
        [_item(0, long_prompt)], [_orphan("t", TaskStatus.SUCCEEDED, long_prompt[:800])]
    )
    assert {0} == set(decision.adopt)


def test_find_orphans_keeps_unknown_ids_in_the_window_once():
    """Listed tasks the journal knows, or older than the window, are not orphans; dups drop."""
    since = dt.datetime.fromtimestamp(T0, tz=UTC)

    def info(task_id: str, offset: float) -> TaskInfo:
        created = dt.datetime.fromtimestamp(T0 + offset, tz=UTC)
        return TaskInfo(task_id=task_id, model=PLUS, status=TaskStatus.RUNNING, created_at=created)

    listed = [info("known", 5), info("new", 5), info("new", 5), info("old", -5), info("", 5)]
    assert ["new"] == [o.task_id for o in find_orphans(listed, {"known"}, since)]


def test_the_listing_starts_before_the_earliest_send_and_within_24_hours():
    """The window opens a margin before the first uncertain send, never past the retention."""
    now = dt.datetime.fromtimestamp(T0 + 60, tz=UTC)
    assert dt.datetime.fromtimestamp(T0, tz=UTC) - MARGIN == list_since(
        [_item(3, "b"), _item(0, "a")], now
    )
    late = dt.datetime.fromtimestamp(T0 + 2 * 86400, tz=UTC)
    start = list_since([_item(0, "a")], late)
    assert start is not None
    assert dt.timedelta(hours=23) < late - start < dt.timedelta(hours=24)
    assert list_since([], now) is None


@given(
    prompts=st.lists(st.sampled_from(["a", "b", "c"]), max_size=6),
    orphans=st.lists(
        st.tuples(st.sampled_from(list(TaskStatus)), st.sampled_from(["a", "b", "c", "x", None])),
        max_size=6,
    ),
)
def test_every_uncertain_item_gets_exactly_one_decision(prompts, orphans):
    """Each item is adopted, re-sent or unresolved; no orphan is adopted twice; echoes match."""
    items = [_item(seq, prompt) for seq, prompt in enumerate(prompts)]
    outcomes = [
        _orphan(f"t{index}", status, prompt) for index, (status, prompt) in enumerate(orphans)
    ]
    decision = decide(items, outcomes)
    adopted = sorted(decision.adopt)
    assert sorted(adopted + list(decision.resend) + list(decision.unresolved)) == list(
        range(len(items))
    )
    task_ids = [orphan.task_id for orphan in decision.adopt.values()]
    assert len(set(task_ids)) == len(task_ids)
    for seq, orphan in decision.adopt.items():
        assert (TaskStatus.SUCCEEDED, items[seq].prompt) == (orphan.status, orphan.prompt)
    # Re-sending is safe only if no orphan still running could be the item's task.
    if decision.resend:
        assert all(o.status.is_terminal for o in outcomes if o.task_id not in task_ids)
