"""Parsing at the boundary: the documented task, sync and list shapes become typed records."""

from __future__ import annotations

import datetime as dt

from aioqwenimage._models import TaskInfo, TaskStatus, parse_server_time
from aioqwenimage._snapshot import TaskSnapshot

UTC = dt.timezone.utc


def test_server_time_is_beijing_time_with_or_without_millis():
    """Task timestamps are UTC+8, sometimes without milliseconds; list times are epoch ms."""
    assert dt.datetime(2025, 1, 8, 8, 3, 59, 840000, tzinfo=UTC) == parse_server_time(
        "2025-01-08 16:03:59.840"
    )
    assert dt.datetime(2025, 1, 8, 8, 4, 10, tzinfo=UTC) == parse_server_time("2025-01-08 16:04:10")
    assert dt.datetime(2024, 3, 1, 2, 38, 4, 485000, tzinfo=UTC) == parse_server_time(1709260684485)
    assert parse_server_time("yesterday") is None
    assert parse_server_time(None) is None


def test_succeeded_text2image_task_with_partial_failure():
    """results[] mixes urls and per-image failures; the duration comes from server stamps."""
    body = {
        "request_id": "r",
        "output": {
            "task_id": "t",
            "task_status": "SUCCEEDED",
            "submit_time": "2025-01-08 16:03:59.840",
            "scheduled_time": "2025-01-08 16:03:59.863",
            "end_time": "2025-01-08 16:04:10.660",
            "results": [
                {"url": "https://a/1.png", "actual_prompt": "better"},
                {"code": "DataInspectionFailed", "message": "Output data may..."},
            ],
        },
        "usage": {"image_count": 1},
    }

    snapshot = TaskSnapshot.from_json(body)

    assert TaskStatus.SUCCEEDED == snapshot.status
    assert ((0, "https://a/1.png", "better"),) == snapshot.urls
    assert 1 == snapshot.failures[0].index
    assert "DataInspectionFailed" == snapshot.failures[0].code
    assert 10.82 == round(snapshot.duration or 0, 2)
    assert {"image_count": 1} == snapshot.usage


def test_sync_multimodal_response_is_a_success_without_status():
    """E2 answers carry images in choices[0].message.content and no task status."""
    body = {
        "output": {
            "choices": [
                {
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": [{"image": "u1"}, {"image": "u2"}]},
                }
            ]
        },
        "usage": {"width": 1664, "height": 928, "image_count": 2},
        "request_id": "r2",
    }

    snapshot = TaskSnapshot.from_json(body)

    assert (TaskStatus.SUCCEEDED, None, "r2") == (
        snapshot.status,
        snapshot.task_id,
        snapshot.request_id,
    )
    assert ((0, "u1", None), (1, "u2", None)) == snapshot.urls
    assert snapshot.duration is None


def test_failed_and_unknown_and_undocumented_statuses():
    """FAILED carries code/message in output; UNKNOWN is terminal; SUSPENDED counts as running."""
    failed = TaskSnapshot.from_json(
        {
            "output": {
                "task_id": "t",
                "task_status": "FAILED",
                "code": "InvalidParameter",
                "message": "m",
            }
        }
    )
    assert ("InvalidParameter", "m") == (failed.code, failed.message)
    assert TaskStatus.UNKNOWN.is_terminal
    assert (
        TaskStatus.RUNNING
        == TaskSnapshot.from_json({"output": {"task_status": "SUSPENDED"}}).status
    )
    assert not TaskStatus.PENDING.is_terminal


def test_garbage_shapes_do_not_raise():
    """Unexpected shapes parse to empty fields rather than crash the poller."""
    snapshot = TaskSnapshot.from_json(
        {"output": {"task_status": "SUCCEEDED", "results": ["x", {"url": ""}], "choices": [3]}},
        task_id="t",
    )
    assert "t" == snapshot.task_id
    assert () == snapshot.urls
    assert 1 == len(snapshot.failures)
    assert TaskSnapshot.from_json({"output": []}).urls == ()


def test_list_row():
    """A list row has epoch-ms times and the model name."""
    info = TaskInfo.from_json(
        {
            "task_id": "t",
            "model_name": "wanx2.1-t2i-turbo",
            "status": "SUCCEEDED",
            "gmt_create": 1709260684485,
            "start_time": 1709260684527,
            "end_time": 1709260685184,
            "region": "cn-beijing",
            "request_id": "r",
        }
    )
    assert ("t", "wanx2.1-t2i-turbo", TaskStatus.SUCCEEDED, "cn-beijing") == (
        info.task_id,
        info.model,
        info.status,
        info.region,
    )
    assert info.ended_at is not None and info.started_at is not None
    assert 0.657 == round((info.ended_at - info.started_at).total_seconds(), 3)
