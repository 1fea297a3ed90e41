"""
Reading values out of untrusted answers: each helper takes any JSON value and never raises.

Parsing is lenient about what the documentation leaves open (missing millisecond parts, absent
``task_metrics``) and refuses quietly what no real answer holds: NaN, infinities, dates out of
any calendar, counts beyond what a model makes. An unusable value is ``None``, never an
exception: a hostile answer must end in a typed error, not in a crash of the poll loop.

The times the service reads and writes are in its zone, `SERVER_TZ`, defined here once (the
emulator writes them with it too); `list_time` and `iso_time` are the two forms the package
writes times in: the list's filter, and the ISO text of records and manifests.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

__all__ = [
    "MAX_IMAGES",
    "SERVER_TZ",
    "is_count",
    "iso_time",
    "list_time",
    "opt_str",
    "parse_server_time",
]

# Task timestamps are Beijing time without a zone marker (dashscope-api.md §5.2).
SERVER_TZ: Final = dt.timezone(dt.timedelta(hours=8))


def list_time(value: dt.datetime | float) -> str:
    """
    A time as the task list's ``start_time``/``end_time`` take it: Beijing time as
    ``YYYYMMDDhhmmss`` (dashscope-api.md §5.4). A naive datetime means UTC; a float is epoch
    seconds.
    """
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    else:
        aware = dt.datetime.fromtimestamp(value, dt.timezone.utc)
    return aware.astimezone(SERVER_TZ).strftime("%Y%m%d%H%M%S")


def iso_time(value: dt.datetime | float | None) -> str | None:
    """
    A time as ISO 8601 text to the millisecond (``None`` stays ``None``): a datetime keeps its
    zone; a float is epoch seconds, written in UTC.
    """
    if value is None:
        return None
    if not isinstance(value, dt.datetime):
        value = dt.datetime.fromtimestamp(value, tz=dt.timezone.utc)
    return value.isoformat(timespec="milliseconds")


def parse_server_time(value: object) -> dt.datetime | None:
    """
    A task timestamp (``YYYY-MM-DD HH:mm:ss[.SSS]``, UTC+8) or epoch milliseconds, as UTC;
    ``None`` when absent or unusable (NaN, infinities, a date outside what datetime holds).
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            seconds = float(value) / 1000
            return dt.datetime.fromtimestamp(seconds, tz=dt.timezone.utc)
        except (OverflowError, ValueError, OSError):  # NaN, inf, 1e300: not a time
            return None
    if not isinstance(value, str) or not value or len(value) > 64:  # noqa: PLR2004
        return None
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            parsed = dt.datetime.strptime(value, fmt).replace(tzinfo=SERVER_TZ)
            return parsed.astimezone(dt.timezone.utc)
        except (OverflowError, ValueError):  # noqa: PERF203 - "0001-01-01" overflows in UTC
            continue
    return None


# More images than any model makes in one request: a count beyond it is not believed.
MAX_IMAGES = 16


def is_count(value: object) -> bool:
    """A non-negative int (bools are not counts)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def opt_str(value: object) -> str | None:
    """`value` if it is a string, else ``None``."""
    return value if isinstance(value, str) else None
