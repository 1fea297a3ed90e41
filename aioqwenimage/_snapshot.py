"""
One answer about a task, parsed: a task query (E1, E3 tasks) or a synchronous response (E2).

Internal to the client: the poller (``_polling``) reads statuses from it, `_outcomes` turns terminal
ones into results and errors. Results come as ``output.results[]`` (one ``url`` or
``code``/``message`` per image) or ``output.choices[].message.content[]``; anything else in an
answer is ignored.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from aioqwenimage._models import ImageFailure, TaskStatus
from aioqwenimage._parsing import MAX_IMAGES, is_count, opt_str, parse_server_time

__all__ = ["TaskSnapshot"]


@attrs.frozen(kw_only=True)
class TaskSnapshot:
    """
    One parsed answer about a task: a query (E4) or a synchronous call (E2).

    Internal to the client: users see `GenerationResult` and the errors.
    """

    task_id: str | None
    status: TaskStatus
    request_id: str | None = None
    submitted_at: dt.datetime | None = None
    scheduled_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    urls: tuple[tuple[int, str, str | None], ...] = ()
    failures: tuple[ImageFailure, ...] = ()
    code: str | None = None
    message: str | None = None
    prompt: str | None = None
    usage: Mapping[str, Any] = attrs.field(factory=dict)
    body: Mapping[str, Any] = attrs.field(factory=dict, repr=False)
    headers: Mapping[str, str] = attrs.field(factory=dict, repr=False)

    @property
    def duration(self) -> float | None:
        """Seconds from submission to end by the server's own clock, when both are known."""
        if self.submitted_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.submitted_at).total_seconds()

    @classmethod
    def from_json(
        cls,
        body: Mapping[str, Any],
        *,
        task_id: str | None = None,
        requested: object = None,
        headers: Mapping[str, str] | None = None,
    ) -> TaskSnapshot:
        """
        Parse a task query or a synchronous response.

        Results come as ``output.results[]`` (E1 tasks: ``url`` or ``code``/``message`` per
        image) or ``output.choices[0].message.content[]`` (E2 responses and E3 tasks), whose
        items may be failures too. An answer of choices (synchronous, or a wan2.6 task) with
        fewer images than `requested` (or than its ``task_metric(s)`` total) reports the missing
        ones as failures, as ``results`` would.
        """
        output = body.get("output")
        output = output if isinstance(output, Mapping) else {}
        raw_status = output.get("task_status")
        # A synchronous response has no status: its images are the success.
        status = TaskStatus.parse(raw_status) if raw_status is not None else TaskStatus.SUCCEEDED
        urls: list[tuple[int, str, str | None]] = []
        failures: list[ImageFailure] = []
        prompt: str | None = None
        results = output.get("results")
        if isinstance(results, Sequence):
            for index, item in enumerate(results):
                if not isinstance(item, Mapping):
                    continue
                prompt = prompt or opt_str(item.get("orig_prompt"))
                url = item.get("url")
                if isinstance(url, str) and url:
                    urls.append((index, url, opt_str(item.get("actual_prompt"))))
                else:
                    failures.append(
                        ImageFailure(
                            index=index,
                            code=opt_str(item.get("code")),
                            message=opt_str(item.get("message")),
                        )
                    )
        for index, item in enumerate(_choice_items(output)):
            if isinstance(item.get("image"), str) and item["image"]:
                urls.append((index, item["image"], None))
            else:
                failures.append(_failure(index, item))
        if status is TaskStatus.SUCCEEDED and not isinstance(results, Sequence):
            failures.extend(_missing(output, len(urls) + len(failures), requested))
        usage = body.get("usage")
        return cls(
            task_id=opt_str(output.get("task_id")) or task_id,
            status=status,
            request_id=opt_str(body.get("request_id")),
            submitted_at=parse_server_time(output.get("submit_time")),
            scheduled_at=parse_server_time(output.get("scheduled_time")),
            finished_at=parse_server_time(output.get("end_time")),
            urls=tuple(urls),
            failures=tuple(failures),
            code=opt_str(output.get("code")),
            message=opt_str(output.get("message")),
            prompt=prompt,
            usage=dict(usage) if isinstance(usage, Mapping) else {},
            body=body,
            headers=headers or {},
        )


def _choice_items(output: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The image items (``image``) and per-image failures (``code``) of every choice."""
    choices = output.get("choices")
    if not isinstance(choices, Sequence) or not choices:
        return []
    found: list[Mapping[str, Any]] = []
    for choice in choices:
        message = choice.get("message") if isinstance(choice, Mapping) else None
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, Sequence):
            found.extend(
                item
                for item in content
                if isinstance(item, Mapping)
                and (isinstance(item.get("image"), str) or isinstance(item.get("code"), str))
            )
    return found


def _failure(index: int, item: Mapping[str, Any]) -> ImageFailure:
    return ImageFailure(
        index=index, code=opt_str(item.get("code")), message=opt_str(item.get("message"))
    )


def _missing(output: Mapping[str, Any], seen: int, requested: object) -> list[ImageFailure]:
    """
    Images an answer of choices left out: it drops failed images silently, and says so only
    in its ``task_metric(s)`` (max/plus) or not at all (the 2.0 series, wan2.6; then
    `requested` tells).
    """
    metric = output.get("task_metric", output.get("task_metrics"))
    total = metric.get("TOTAL") if isinstance(metric, Mapping) else None
    if not is_count(total) or total > MAX_IMAGES:  # type: ignore[operator]
        total = requested
    if not is_count(total) or total <= seen:  # type: ignore[operator]
        return []
    message = f"the service returned {seen} of {total} images and did not say why"
    return [
        ImageFailure(index=index, code=None, message=message)
        for index in range(seen, total)  # type: ignore[arg-type]
    ]
