"""The Recorder: each fact counted once, snapshots that stay put, hooks isolated from each other."""

from __future__ import annotations

import logging

import pytest

from aioqwenimage._events import Recorder
from aioqwenimage._models import EventKind, TaskEvent, TaskStatus


def test_requests_are_counted_by_kind_with_downloads_always_shown():
    """`sent` counts per kind; downloads show as 0 before any is made."""
    recorder = Recorder()
    assert {"download": 0} == dict(recorder.requests)
    recorder.sent("create")
    recorder.sent("poll")
    recorder.sent("poll")
    assert {"download": 0, "create": 1, "poll": 2} == dict(recorder.requests)


def test_a_throttled_retry_counts_as_a_retry_and_a_throttle():
    """`retried` counts every retry, and a throttle only when told so."""
    recorder = Recorder()
    recorder.retried()
    recorder.retried(throttled=True)
    assert (2, 1) == (recorder.retries, recorder.throttled)


def test_snapshot_copies_the_counters_and_the_slots():
    """A snapshot holds the counters of its moment: later facts do not change it."""
    recorder = Recorder()
    recorder.sent("create")
    recorder.finished["SUCCEEDED"] += 1
    recorder.submitted = 1
    recorder.polls = 3
    recorder.uncertain = 1
    slots = {"qwen-image-plus": 1}
    stats = recorder.snapshot(slots)
    recorder.sent("create")
    recorder.finished["SUCCEEDED"] += 1
    slots["qwen-image-plus"] = 5
    assert {"download": 0, "create": 1} == stats.requests
    assert {"SUCCEEDED": 1} == stats.finished
    assert {"qwen-image-plus": 1} == stats.in_flight
    assert (1, 3, 1) == (stats.submitted, stats.polls, stats.uncertain)


def test_report_gives_every_hook_the_event():
    """Each hook gets one `TaskEvent` carrying what was reported."""
    seen: list[TaskEvent] = []
    recorder = Recorder([seen.append, seen.append])
    recorder.report(EventKind.POLLED, "m", "t-1", TaskStatus.RUNNING, {"status": "RUNNING"})
    assert 2 == len(seen)
    event = seen[0]
    assert (EventKind.POLLED, "m", "t-1", TaskStatus.RUNNING) == (
        event.kind,
        event.model,
        event.task_id,
        event.status,
    )
    assert {"status": "RUNNING"} == dict(event.detail)


def test_a_raising_hook_is_logged_and_the_next_hook_still_runs(caplog):
    """A hook that raises is logged and skipped; the report does not raise, later hooks run."""
    seen: list[EventKind] = []

    def broken(event: TaskEvent) -> None:
        raise RuntimeError("hook bug")

    recorder = Recorder([broken, lambda event: seen.append(event.kind)])
    with caplog.at_level(logging.ERROR, logger="aioqwenimage"):
        recorder.report(EventKind.FINISHED, "m", "t-1", TaskStatus.SUCCEEDED, {})
    assert [EventKind.FINISHED] == seen
    assert ["an event hook raised; ignoring it"] == [r.getMessage() for r in caplog.records]
    assert isinstance(caplog.records[0].exc_info[1], RuntimeError)


@pytest.mark.parametrize(
    ("kind", "level"),
    [
        (EventKind.THROTTLED, logging.INFO),
        (EventKind.RETRIED, logging.INFO),
        (EventKind.SUBMITTED, logging.DEBUG),
        (EventKind.POLLED, logging.DEBUG),
    ],
)
def test_retries_and_throttles_log_at_info_the_rest_at_debug(caplog, kind, level):
    """What an operator tunes limits by is INFO; the rest is DEBUG."""
    with caplog.at_level(logging.DEBUG, logger="aioqwenimage"):
        Recorder().report(kind, "m", "t-9", None, {})
    assert [level] == [r.levelno for r in caplog.records]
    assert "task=t-9" in caplog.records[0].getMessage()


def test_repr_shows_requests_and_hooks():
    """The repr sums the requests and counts the hooks."""
    recorder = Recorder([print])
    recorder.sent("list")
    recorder.sent("cancel")
    assert "<Recorder requests=2 hooks=1>" == repr(recorder)
