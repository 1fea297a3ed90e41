"""
One task-completion notification as EventBridge delivers it: reading the envelope, and
remembering which events were seen.

Model Studio publishes a CloudEvents 1.0 envelope when an async task ends (``source``
``acs.dashscope``, ``type`` ``dashscope:System:AsyncTaskFinish``), its ``data`` naming the task
and its status. Everything in it is only a hint to the client, which confirms the task with one
query, so reading is strict about shape (a malformed body is refused, 400) and lenient about
content (an event of another type or source is accepted and ignored: refusing it would only make
EventBridge retry it). Delivery is at least once, so the same event can come again: `SeenEvents`
remembers the latest event ids in bounded memory.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any, Final

import attrs

__all__ = ["FINISH_TYPE", "SOURCE", "FinishEvent", "MalformedEventError", "SeenEvents", "parse"]

SOURCE: Final = "acs.dashscope"
FINISH_TYPE: Final = "dashscope:System:AsyncTaskFinish"


class MalformedEventError(ValueError):
    """The body is not a CloudEvents envelope of a task's end (answered 400)."""


@attrs.frozen(kw_only=True)
class FinishEvent:
    """
    What a task-completion event says.

    Attributes:
        event_id: The envelope's ``id`` (the same for every redelivery of one event).
        task_id: ``data.task_id``.
        status: ``data.task_status`` as sent (``SUCCEEDED``, ``FAILED``...).
        model: The last segment of ``data.user_api_unique_key``, when present.
    """

    event_id: str
    task_id: str
    status: str
    model: str | None


def _text(mapping: dict[str, Any], key: str, where: str) -> str:
    value = mapping.get(key)
    if not isinstance(value, str) or not value or len(value) > 256:  # noqa: PLR2004
        msg = f"{where}{key} must be a non-empty string"
        raise MalformedEventError(msg)
    return value


def parse(body: bytes) -> FinishEvent | None:
    """
    The task-completion event in `body`, or ``None`` for a well-formed event of another kind.

    Raises:
        MalformedEventError: Not a JSON object with a string ``id``, ``source`` and ``type``;
            or a task-completion event without a string ``data.task_id`` and ``task_status``.
    """
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise MalformedEventError("the body is not JSON") from None
    if not isinstance(envelope, dict):
        raise MalformedEventError("the body is not a JSON object")
    event_id = _text(envelope, "id", "")
    source = _text(envelope, "source", "")
    kind = _text(envelope, "type", "")
    if source != SOURCE or kind != FINISH_TYPE:
        return None
    data = envelope.get("data")
    if not isinstance(data, dict):
        raise MalformedEventError("data must be an object")
    key = data.get("user_api_unique_key")
    model = key.rsplit(":", 1)[-1] or None if isinstance(key, str) else None
    return FinishEvent(
        event_id=event_id,
        task_id=_text(data, "task_id", "data."),
        status=_text(data, "task_status", "data."),
        model=model,
    )


class SeenEvents:
    """
    The latest `capacity` event ids, oldest forgotten first.

    A redelivery comes within EventBridge's retry window (a day at most), long after its task
    was confirmed; an id forgotten by then costs what any event about an ended task costs:
    nothing, since the registry no longer knows its task.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            msg = f"capacity must be at least 1, got {capacity!r}"
            raise ValueError(msg)
        self._capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, event_id: str) -> bool:
        """Remember `event_id`; whether it is new."""
        if event_id in self._ids:
            self._ids.move_to_end(event_id)
            return False
        self._ids[event_id] = None
        if len(self._ids) > self._capacity:
            self._ids.popitem(last=False)
        return True
