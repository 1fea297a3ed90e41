"""
Success bodies: task outputs (E1/E3 creates, E4 queries, E5 list items) and sync answers (E2).

Shapes follow ``dashscope-api.md`` §5 field for field. A terminal task's output never changes, so
it is rendered once and kept as bytes; each answer then only splices in its own ``request_id``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from aioqwenimage._catalog import Protocol, format_size
from aioqwenimage.testing._tasks import Task, TaskStatus
from aioqwenimage.testing._wire import dumps, epoch_ms, format_time

if TYPE_CHECKING:
    from aioqwenimage.testing._bodies import GenerationRequest

__all__ = ["create_body", "list_item", "query_body", "sync_body"]

UrlsFor = Callable[[Task], list[str]]

_ACCOUNT: Final = "1000000000000000"
_API_KEY_ID: Final = "10001"
_UNIQUE_KEY_PATHS: Final = {
    Protocol.TEXT2IMAGE: "aigc:text2image:image-synthesis",
    Protocol.IMAGE_GENERATION: "aigc:image-generation:generation",
}


def _metrics(total: int, succeeded: int, failed: int) -> dict[str, int]:
    return {"TOTAL": total, "SUCCEEDED": succeeded, "FAILED": failed}


def _wants_metrics(task: Task) -> bool:
    # Wan answers carry task_metrics; qwen-image examples omit them (§5.2).
    return task.family.startswith("wan")


def _results(task: Task, urls: list[str]) -> list[dict[str, str]]:
    results: list[dict[str, str]] = []
    for failure, url in zip(task.image_failures, urls, strict=True):
        if failure is not None:
            results.append({"code": failure[0], "message": failure[1]})
            continue
        item = {"orig_prompt": task.prompt}
        if task.actual_prompt is not None:
            item["actual_prompt"] = task.actual_prompt
        item["url"] = url
        results.append(item)
    return results


def _choices(images: Sequence[dict[str, str]]) -> list[dict[str, Any]]:
    return [{"finish_reason": "stop", "message": {"role": "assistant", "content": list(images)}}]


def _wan26_usage(size: tuple[int, int], count: int) -> dict[str, Any]:
    return {
        "size": format_size(size),
        "total_tokens": 0,
        "image_count": count,
        "output_tokens": 0,
        "input_tokens": 0,
    }


def task_output(task: Task, status: TaskStatus, urls: UrlsFor) -> dict[str, Any]:
    """The ``output`` (and ``usage``, if any) of a query for `task` in `status`."""
    output: dict[str, Any] = {
        "task_id": task.task_id,
        "task_status": status.value,
        "submit_time": format_time(task.submitted),
    }
    body: dict[str, Any] = {"output": output}
    if status is TaskStatus.PENDING:
        return body
    assert task.ended is not None  # noqa: S101 - only a waiting (PENDING) task lacks times
    if status is TaskStatus.CANCELED:
        output["end_time"] = format_time(task.ended)
        return body
    assert task.scheduled is not None  # noqa: S101 - likewise
    output["scheduled_time"] = format_time(task.scheduled)
    n = task.n
    if status is TaskStatus.RUNNING:
        if _wants_metrics(task):
            output["task_metrics"] = _metrics(n, 0, 0)
        return body
    output["end_time"] = format_time(task.ended)
    wan26 = task.protocol is Protocol.IMAGE_GENERATION
    if wan26:
        output["finished"] = True
    if status is TaskStatus.FAILED:
        assert task.failure is not None  # noqa: S101 - FAILED means a failure was set
        output["code"], output["message"] = task.failure
        if _wants_metrics(task):
            output["task_metrics"] = _metrics(n, 0, n)
        return body
    succeeded = task.succeeded_images
    if wan26:
        images = [
            {"image": url, "type": "image"}
            for url, failure in zip(urls(task), task.image_failures, strict=True)
            if failure is None
        ]
        output["choices"] = _choices(images)
        body["usage"] = _wan26_usage(task.size, succeeded)
        return body
    output["results"] = _results(task, urls(task))
    if _wants_metrics(task):
        output["task_metrics"] = _metrics(n, succeeded, n - succeeded)
    body["usage"] = {"image_count": succeeded}
    return body


def query_body(task: Task, now: float, request_id: str, urls: UrlsFor) -> bytes:
    """The answer to ``GET /tasks/{id}`` for `task` at `now`."""
    status = task.status_at(now)
    cached = task.rendered
    if cached is not None and cached[0] is status:
        tail = cached[1]
    else:
        # Everything after the request id, so the bytes can be reused verbatim.
        tail = dumps(task_output(task, status, urls))[1:]
        task.rendered = (status, tail)
    return b'{"request_id":"' + request_id.encode() + b'",' + tail


def unknown_body(task_id: str, request_id: str) -> bytes:
    """The answer for a task that never existed or has expired (§5.2: HTTP 200, UNKNOWN)."""
    return dumps(
        {"request_id": request_id, "output": {"task_id": task_id, "task_status": "UNKNOWN"}}
    )


def create_body(task: Task, request_id: str) -> bytes:
    """The answer to a task-creating POST (§5.1)."""
    return dumps(
        {
            "output": {"task_status": "PENDING", "task_id": task.task_id},
            "request_id": request_id,
        }
    )


def list_item(task: Task, status: TaskStatus, region: str) -> dict[str, Any]:
    """One entry of ``GET /tasks`` (§5.4): epoch-millisecond times, no ``output`` wrapper."""
    item: dict[str, Any] = {
        "api_key_id": _API_KEY_ID,
        "caller_parent_id": _ACCOUNT,
        "caller_uid": _ACCOUNT,
        "gmt_create": epoch_ms(task.submitted),
        "model_name": task.model,
        "region": region,
        "request_id": task.request_id,
        "status": status.value,
        "task_id": task.task_id,
        "user_api_unique_key": f"apikey:v1:{_UNIQUE_KEY_PATHS[task.protocol]}:{task.model}",
    }
    if status is not TaskStatus.PENDING and task.scheduled is not None and not task.canceled:
        item["start_time"] = epoch_ms(task.scheduled)
    if status.terminal and task.ended is not None:
        item["end_time"] = epoch_ms(task.ended)
    return item


def sync_body(
    request: GenerationRequest,
    request_id: str,
    urls: Sequence[str],
    failures: Sequence[tuple[str, str] | None],
) -> bytes:
    """The answer of a synchronous generation (§5.3): one choice, one content item per image."""
    kept = [url for url, failure in zip(urls, failures, strict=True) if failure is None]
    count = len(kept)
    # Only Qwen-Image answers synchronously: "Wan supports only asynchronous calls" (the guide).
    output: dict[str, Any] = {"choices": _choices([{"image": u} for u in kept])}
    # Singular task_metric, on max/plus answers only, never on the 2.0 series (§5.3).
    if request.spec.family != "qwen-image-2.0":
        output["task_metric"] = _metrics(len(failures), count, len(failures) - count)
    usage = {"height": request.size[1], "image_count": count, "width": request.size[0]}
    return dumps({"output": output, "usage": usage, "request_id": request_id})
