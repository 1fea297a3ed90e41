"""
How the CLI writes a moment in JSON and in the journal: ISO 8601 with milliseconds.

One format for ``tasks show --json`` and the server times the journal keeps for the manifest, so
that a script reading both compares like with like.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import datetime as dt

__all__ = ["iso_milliseconds"]


def iso_milliseconds(value: dt.datetime | None) -> str | None:
    """``2025-01-02T03:04:05.678+00:00``; ``None`` stays ``None``."""
    return None if value is None else value.isoformat(timespec="milliseconds")
