"""
The one check of every timeout a user gives, so that each is refused alike and before any I/O.

A NaN or negative deadline would otherwise reach anyio (``ValueError: deadline must not be NaN``)
or aiohttp in the middle of a generation, after a paid create was sent.
"""

from __future__ import annotations

import math

from aioqwenimage._errors import InvalidRequestError

__all__ = ["network_timeout", "wait_timeout"]


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"{name} must be a number of seconds, got {value!r}"
        raise InvalidRequestError(msg, parameter=name)
    if math.isnan(value):
        msg = f"{name} must be a number of seconds, got NaN"
        raise InvalidRequestError(msg, parameter=name)
    return float(value)


def wait_timeout(value: object, name: str = "timeout") -> float:
    """
    How long to wait: `value` seconds, ``inf`` for ``None`` (or ``inf``: no limit).

    Raises:
        InvalidRequestError: `value` is not a number, NaN, or negative.
    """
    if value is None:
        return math.inf
    seconds = _number(value, name)
    if seconds < 0:
        msg = f"{name} must be >= 0 seconds (or None for no limit), got {value!r}"
        raise InvalidRequestError(msg, parameter=name)
    return seconds


def network_timeout(value: object, name: str) -> float:
    """
    A network timeout: a finite, positive number of seconds (no request may hang forever).

    Raises:
        InvalidRequestError: `value` is not a finite positive number.
    """
    seconds = _number(value, name)
    if not (math.isfinite(seconds) and seconds > 0):
        msg = f"{name} must be a finite number of seconds > 0, got {value!r}"
        raise InvalidRequestError(msg, parameter=name)
    return seconds
