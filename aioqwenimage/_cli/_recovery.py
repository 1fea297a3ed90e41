"""
A journal that cannot be trusted: refuse to run on it, and rebuild it from what is left.

The journal is the only record of which prompts were already paid for. When it is missing, empty
(0 bytes) or damaged while the output directory shows earlier work (``manifest.jsonl``, images of
this batch), running on would treat every item as new and pay for it again. So the batch stops
before sending anything and says how to recover; `recover` is that recovery (``--recover``).

`recover` trusts only evidence that cannot cost money when wrong: an item whose image files are
all on disk is done; an item the manifest saw with a task id is re-attached to that task; every
other item is marked ``sending`` from the earliest time the remains allow, so the runner reconciles
it against the service's task list like a create cut short (adopted when a task echoes its prompt,
sent again only when no task can be its own). The manifest may be up to a few seconds older than
the journal was; an item it shows ``pending`` may have been sent since, which is why pending items
are reconciled too rather than sent.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import TYPE_CHECKING, Any, Final

from aioqwenimage._cli._files import all_saved, non_empty
from aioqwenimage._cli._journal import JOURNAL_NAME, Journal, JournalError, State
from aioqwenimage._cli._manifest import MANIFEST_NAME
from aioqwenimage._cli._reconcile import MARGIN, RETENTION

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    from aioqwenimage._cli._inputs import Item

__all__ = ["RECOVER_HINT", "earlier_work", "recover", "untrusted_journal", "untrusted_message"]

_SIDE_FILES: Final = ("-journal", "-wal", "-shm")
# The newest send the listing may start from still leaves the margin inside the retention.
_OLDEST: Final = RETENTION - 2 * MARGIN

RECOVER_HINT: Final = (
    "Nothing was sent. To recover, run the same command with --recover: the journal is rebuilt "
    "from manifest.jsonl and the images in the directory, and every item without its images is "
    "reconciled against the service's task list (a task that echoes its prompt is adopted, not "
    "paid for again). To start a new batch instead, use another --out directory."
)


def earlier_work(
    directory: Path, items: Sequence[Item], *, manifest_name: str = MANIFEST_NAME
) -> str | None:
    """What in `directory` shows that this batch ran before, in words; ``None`` if nothing."""
    found: list[str] = []
    if non_empty(directory / manifest_name):
        found.append(manifest_name)
    images = sum(1 for item in items if _item_files(directory, item))
    if images:
        found.append(f"images of {images} item{'s' if images > 1 else ''}")
    return " and ".join(found) or None


def untrusted_journal(
    directory: Path,
    items: Sequence[Item],
    *,
    journal_name: str = JOURNAL_NAME,
    manifest_name: str = MANIFEST_NAME,
) -> str | None:
    """
    Why the journal cannot be used although this batch ran here before; ``None`` when it can.

    A missing or 0-byte journal in a directory without earlier work is a new batch. A journal
    with content is opened (and checked) by `Journal.open`. The names are a ``--shard``'s files.
    """
    path = directory / journal_name
    if non_empty(path):
        return None
    work = earlier_work(directory, items, manifest_name=manifest_name)
    if work is None:
        return None
    state = "empty (0 bytes)" if path.exists() else "missing"
    return untrusted_message(f"the journal {path} is {state}", directory, work)


def untrusted_message(problem: str, directory: Path, work: str | None) -> str:
    """The whole refusal: what is wrong, what shows earlier work, how to recover."""
    evidence = f" although {directory} holds earlier work of this batch ({work})" if work else ""
    return (
        f"{problem}{evidence}: running on would send items that may already be paid for. "
        f"{RECOVER_HINT}"
    )


def recover(
    directory: Path,
    *,
    fingerprint: Mapping[str, Any],
    items: Sequence[Item],
    now: float | None = None,
    journal_name: str = JOURNAL_NAME,
    manifest_name: str = MANIFEST_NAME,
) -> tuple[Journal, str]:
    """
    Move the untrusted journal aside and rebuild it from the manifest and the files.

    Returns:
        The new journal, and one line saying what was restored.

    Raises:
        JournalError: The new journal cannot be written either.
    """
    now = time.time() if now is None else now
    aside = _move_aside(directory, now, journal_name)
    journal = Journal.open(directory, fingerprint=fingerprint, items=items, name=journal_name)
    try:
        entries = _manifest_entries(directory / manifest_name)
        since = _earliest_send(entries.values(), now)
        counts = {"done": 0, "re-attached": 0, "failed": 0, "to reconcile": 0}
        for item in items:
            entry = entries.get(item.item_id)
            if entry is not None and entry.get("prompt") != item.prompt:
                entry = None  # another batch's line under the same id: no evidence for this one
            counts[
                _restore(journal, directory, item, entry, since, manifest_name=manifest_name)
            ] += 1
    except BaseException:
        journal.close()
        raise
    moved = f"; the old journal is kept as {aside.name}" if aside is not None else ""
    summary = ", ".join(f"{count} {what}" for what, count in counts.items() if count)
    return journal, f"journal rebuilt from the files and {manifest_name}: {summary}{moved}"


def _restore(
    journal: Journal,
    directory: Path,
    item: Item,
    entry: Mapping[str, Any] | None,
    since: float,
    *,
    manifest_name: str,
) -> str:
    note = f"restored by --recover from {manifest_name} and the files"
    task_id = entry.get("task_id") if entry is not None else None
    task_id = task_id if isinstance(task_id, str) and task_id else None
    files = _item_files(directory, item, entry)
    if files:
        state = State.DOWNLOADED if task_id else State.DONE
        journal.restore(item.seq, state, note, task_id=task_id, files=files, sending_at=since)
        return "done"
    status = entry.get("status") if entry is not None else None
    if task_id is not None and status == "failed":
        error = entry.get("error") if entry is not None else None
        error = error if isinstance(error, dict) else {}
        journal.restore(
            item.seq,
            State.FAILED,
            note,
            task_id=task_id,
            sending_at=since,
            error_code=error.get("code"),
            error_message=str(error.get("message") or "failed in an earlier run"),
        )
        return "failed"
    if task_id is not None:
        # The task is followed to its end (or found expired): it is never created again.
        journal.restore(item.seq, State.CREATED, note, task_id=task_id, sending_at=since)
        return "re-attached"
    journal.restore(item.seq, State.SENDING, f"{note}; may have been sent", sending_at=since)
    return "to reconcile"


def _item_files(
    directory: Path, item: Item, entry: Mapping[str, Any] | None = None
) -> list[str] | None:
    """The item's image files when every one is on disk (and not empty), else ``None``."""
    listed = entry.get("files") if entry is not None else None
    if isinstance(listed, list) and listed and all(isinstance(name, str) for name in listed):
        names = [name for name in listed if "/" not in name]
    else:
        names = item.file_names()
    return names if all_saved(directory, names) else None


def _manifest_entries(path: Path) -> dict[str, dict[str, Any]]:
    """The manifest's lines by item id; lines that do not parse are no evidence."""
    entries: dict[str, dict[str, Any]] = {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return entries
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            entries[entry["id"]] = entry
    return entries


def _earliest_send(entries: Any, now: float) -> float:
    """
    From when a lost create may date: the manifest's earliest send, within the retention.

    Every item the manifest shows unsent was sent, if at all, after the manifest was written, so
    after every send it records. Without any, the whole retention is searched.
    """
    oldest = now - _OLDEST.total_seconds()
    sent: list[float] = []
    for entry in entries:
        timings = entry.get("timings")
        value = timings.get("sent") if isinstance(timings, dict) else None
        if isinstance(value, str):
            try:
                sent.append(dt.datetime.fromisoformat(value).timestamp())
            except ValueError:
                continue
    return max(oldest, min(sent, default=oldest))


def _move_aside(directory: Path, now: float, name: str) -> Path | None:
    """Rename the journal and its side files out of the way; the new name, if there was one."""
    stamp = dt.datetime.fromtimestamp(now, tz=dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = directory / name
    aside = directory / f"{name}.untrusted-{stamp}"
    moved = None
    try:
        if path.exists():
            path.replace(aside)
            moved = aside
        for suffix in _SIDE_FILES:
            side = directory / f"{name}{suffix}"
            if side.exists():
                side.replace(directory / f"{aside.name}{suffix}")
    except OSError as exc:
        msg = f"cannot move the journal {path} aside: {exc.strerror or exc}"
        raise JournalError(msg) from exc
    return moved
