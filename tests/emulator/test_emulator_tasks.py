"""The emulator's task store: lifecycles from timestamps, in-flight caps, cancel, retention."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aioqwenimage._catalog import Protocol
from aioqwenimage.testing._tasks import CapExceeded, Task, TaskStatus, TaskStore

T0 = 1_700_000_000.0
_ids = itertools.count()


def make_task(
    *,
    model: str = "qwen-image-plus",
    submitted: float = T0,
    delay: float = 0.05,
    duration: float = 20.0,
    n: int = 1,
    failure: tuple[str, str] | None = None,
) -> Task:
    """A task as the engine would build it."""
    return Task(
        task_id=f"task-{next(_ids)}",
        model=model,
        protocol=Protocol.TEXT2IMAGE,
        request_id="rid",
        prompt="a fox",
        actual_prompt=None,
        size=(1328, 1328),
        n=n,
        submitted=submitted,
        delay=delay,
        duration=duration,
        family="qwen-image",
        failure=failure,
        image_failures=(failure,) * n,
    )


def test_a_task_walks_pending_running_succeeded():
    """Status follows the timestamps: PENDING, then RUNNING after the delay, then SUCCEEDED."""
    store = TaskStore(retention=86_400)
    task = make_task()
    store.create(task, T0, cap=None, reject=False)
    seen = [task.status_at(T0 + dt) for dt in (0.0, 0.049, 0.05, 19.99, 20.0, 500.0)]
    expected = [TaskStatus.PENDING] * 2 + [TaskStatus.RUNNING] * 2 + [TaskStatus.SUCCEEDED] * 2
    assert expected == seen
    assert (T0 + 0.05, T0 + 20.0) == (task.scheduled, task.ended)


def test_a_failed_task_ends_failed():
    """A task created with a failure ends FAILED and succeeds no image."""
    store = TaskStore(retention=86_400)
    task = make_task(failure=("InternalError", "boom"), n=2)
    store.create(task, T0, cap=None, reject=False)
    assert (TaskStatus.FAILED, 0) == (task.status_at(T0 + 30), task.succeeded_images)


def test_a_task_never_ends_before_it_starts():
    """A duration shorter than the scheduling delay still ends after it is scheduled."""
    store = TaskStore(retention=86_400)
    task = make_task(delay=0.06, duration=0.0)
    store.create(task, T0, cap=None, reject=False)
    assert task.ended == task.scheduled


def test_over_cap_tasks_wait_in_fifo_order():
    """Beyond the cap, tasks stay PENDING and start in submission order as slots free."""
    store = TaskStore(retention=86_400)
    tasks = [make_task(submitted=T0 + i, duration=10.0) for i in range(4)]
    for task in tasks:
        store.create(task, task.submitted, cap=2, reject=False)
    assert [None, None] == [tasks[2].scheduled, tasks[3].scheduled]
    store.advance(T0 + 10.0)  # the first slot frees at T0+10
    assert (T0 + 10.0 + 0.05, None) == (tasks[2].scheduled, tasks[3].scheduled)
    store.advance(T0 + 11.0)
    assert T0 + 11.0 + 0.05 == tasks[3].scheduled
    assert (2, 4) == (store.in_flight, store.peak_in_flight)


def test_slots_free_in_event_order_even_when_advanced_late():
    """Advancing far ahead processes every end in time order, chaining queued tasks."""
    store = TaskStore(retention=86_400)
    tasks = [make_task(duration=10.0, delay=0.0) for _ in range(5)]
    for task in tasks:
        store.create(task, T0, cap=1, reject=False)
    store.advance(T0 + 1000.0)
    assert [T0 + 10.0 * i for i in range(5)] == [t.scheduled for t in tasks]
    assert 0 == store.in_flight


def test_reject_mode_refuses_with_the_time_to_the_next_slot():
    """With reject, a create beyond the cap raises with the wait and stores nothing."""
    store = TaskStore(retention=86_400)
    store.create(make_task(duration=8.0), T0, cap=1, reject=True)
    late = make_task()
    with pytest.raises(CapExceeded) as caught:
        store.create(late, T0 + 3.0, cap=1, reject=True)
    assert (5.0, None, 1) == (caught.value.wait, store.get(late.task_id, T0 + 3), len(store))


def test_cancel_only_from_pending():
    """Cancel succeeds on a PENDING task, fails on RUNNING or finished ones."""
    store = TaskStore(retention=86_400)
    pending, running = make_task(delay=1.0), make_task(delay=0.0)
    store.create(pending, T0, cap=None, reject=False)
    store.create(running, T0, cap=None, reject=False)
    assert (True, False) == (
        store.cancel(pending.task_id, T0 + 0.5),
        store.cancel(running.task_id, T0 + 0.5),
    )
    assert TaskStatus.CANCELED == pending.status_at(T0 + 100)
    assert (False, False) == (store.cancel(pending.task_id, T0 + 1), store.cancel("nope", T0))


def test_cancelling_a_queued_task_skips_it():
    """A canceled task waiting for a slot never starts; the next one takes the slot."""
    store = TaskStore(retention=86_400)
    first, queued, after = (make_task(duration=10.0, delay=0.0) for _ in range(3))
    for task in (first, queued, after):
        store.create(task, T0, cap=1, reject=False)
    assert store.cancel(queued.task_id, T0 + 1)
    store.advance(T0 + 10.0)
    assert (None, T0 + 10.0, 1) == (queued.scheduled, after.scheduled, store.in_flight)


def test_cancelling_a_task_in_its_scheduling_delay_frees_its_slot():
    """A slot held by a task still PENDING is released at once by its cancel."""
    store = TaskStore(retention=86_400)
    holder, waiter = make_task(delay=5.0), make_task(delay=0.0)
    store.create(holder, T0, cap=1, reject=False)
    store.create(waiter, T0, cap=1, reject=False)
    assert store.cancel(holder.task_id, T0 + 1.0)
    assert (T0 + 1.0, TaskStatus.RUNNING) == (waiter.scheduled, waiter.status_at(T0 + 1.5))
    store.advance(T0 + 100)  # the holder's stale end must not free a second slot
    assert 0 == store.in_flight


def test_tasks_expire_after_retention():
    """After the retention period a task is gone (UNKNOWN) but stays in the history."""
    store = TaskStore(retention=60.0)
    task = make_task(duration=1.0)
    store.create(task, T0, cap=None, reject=False)
    assert (task, None) == (store.get(task.task_id, T0 + 59.9), store.get(task.task_id, T0 + 60))
    assert ([task], []) == (list(store.history()), store.tasks(T0 + 61))


def test_clear_forgets_everything():
    """clear() empties the store and its counters."""
    store = TaskStore(retention=60.0)
    store.create(make_task(), T0, cap=None, reject=False)
    store.clear()
    assert (0, 0, 0, []) == (
        len(store),
        store.in_flight,
        store.peak_in_flight,
        list(store.history()),
    )
    assert "<TaskStore tasks=0 in_flight=0>" == repr(store)


@settings(max_examples=60, deadline=None)
@given(
    cap=st.integers(1, 4),
    plan=st.lists(
        st.tuples(st.floats(0, 50), st.floats(0, 30), st.booleans()), min_size=1, max_size=25
    ),
)
def test_in_flight_never_exceeds_the_cap(cap: int, plan: list[tuple[float, float, bool]]):
    """At any moment at most `cap` tasks of a model are RUNNING, whatever the arrivals."""
    store = TaskStore(retention=86_400)
    now = T0
    tasks = []
    for gap, duration, cancel in plan:
        now += gap
        task = make_task(submitted=now, duration=duration, delay=0.02)
        store.create(task, now, cap=cap, reject=False)
        tasks.append(task)
        if cancel:
            store.cancel(task.task_id, now)
    store.advance(now + 10_000)
    moments = sorted({t.scheduled for t in tasks if t.scheduled is not None})
    for moment in moments:
        running = sum(t.status_at(moment) is TaskStatus.RUNNING for t in tasks)
        assert (True, moment) == (running <= cap, moment)
    assert 0 == store.in_flight
    assert all(t.status_at(now + 10_000).terminal for t in tasks)


def test_in_flight_by_model_counts_queued_tasks_until_they_end_or_are_cancelled():
    """Per model: tasks PENDING or RUNNING, those waiting for a slot too; and the most at once."""
    store = TaskStore(retention=86_400)
    plus = [make_task(duration=10.0, delay=0.0) for _ in range(3)]
    wan = make_task(model="wan2.6-t2i", duration=5.0, delay=0.0)
    for task in (*plus, wan):
        store.create(task, T0, cap=2, reject=False)
    assert {"qwen-image-plus": (3, 3), "wan2.6-t2i": (1, 1)} == store.in_flight_by_model()

    assert store.cancel(plus[2].task_id, T0 + 1)  # queued behind the cap: cancelled in PENDING
    store.advance(T0 + 10.0)  # both running plus tasks and the wan task end
    assert {"qwen-image-plus": (0, 3), "wan2.6-t2i": (0, 1)} == store.in_flight_by_model()

    store.create(make_task(duration=1.0), T0 + 11, cap=2, reject=False)
    assert (1, 3) == store.in_flight_by_model()["qwen-image-plus"]
    store.clear()
    assert {} == store.in_flight_by_model()


def test_a_rejected_create_is_not_in_flight():
    """A create refused by the cap (reject mode) never counts as in flight."""
    store = TaskStore(retention=86_400)
    store.create(make_task(duration=8.0), T0, cap=1, reject=True)
    with pytest.raises(CapExceeded):
        store.create(make_task(), T0 + 1, cap=1, reject=True)
    assert {"qwen-image-plus": (1, 1)} == store.in_flight_by_model()


@settings(max_examples=60, deadline=None)
@given(
    cap=st.integers(1, 3),
    plan=st.lists(
        st.tuples(st.sampled_from(["a", "b"]), st.floats(0, 20), st.floats(0, 30), st.booleans()),
        min_size=1,
        max_size=20,
    ),
)
def test_peak_in_flight_by_model_is_the_most_live_tasks_at_any_moment(
    cap: int, plan: list[tuple[str, float, float, bool]]
):
    """The per-model peak equals the most tasks of that model between creation and end."""
    store = TaskStore(retention=86_400)
    now = T0
    tasks = []
    for model, gap, duration, cancel in plan:
        now += gap
        task = make_task(model=model, submitted=now, duration=duration, delay=0.02)
        store.create(task, now, cap=cap, reject=False)
        tasks.append(task)
        if cancel:
            store.cancel(task.task_id, now)
    store.advance(now + 10_000)

    def live_after_creating(i: int) -> int:
        # The peak is reached at a creation: then its model's earlier tasks not yet ended are in
        # flight (an end at that very moment frees first; a cancel came right after its create).
        new = tasks[i]
        return 1 + sum(
            t.model == new.model and (t.ended is None or t.ended > new.submitted) for t in tasks[:i]
        )

    expected = {
        model: (0, max(live_after_creating(i) for i, t in enumerate(tasks) if t.model == model))
        for model in sorted({t.model for t in tasks})
    }
    assert expected == store.in_flight_by_model()
