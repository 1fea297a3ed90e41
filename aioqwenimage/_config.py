"""
Where the client connects and with which key: arguments first, then the environment, then defaults.

Environment variables: ``DASHSCOPE_API_KEY``, ``DASHSCOPE_REGION``, ``DASHSCOPE_HTTP_BASE_URL``
(the official SDK's names, so one environment serves both), and ``AIOQWENIMAGE_TIME_SCALE``, which
lets an app that builds its own ``Client()`` run in an emulator's compressed time under test. It is
honoured only for a loopback API root, so a stray variable can never compress production's time.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
from typing import Final
from urllib.parse import urlsplit

import attrs

from aioqwenimage._errors import AuthenticationError

__all__ = [
    "REGIONS",
    "TIME_SCALE_ENV",
    "Secret",
    "resolve_base_url",
    "resolve_key",
    "resolve_region",
    "resolve_time_scale",
]

logger = logging.getLogger("aioqwenimage")

TIME_SCALE_ENV: Final = "AIOQWENIMAGE_TIME_SCALE"

REGIONS: Final = {
    "singapore": "https://dashscope-intl.aliyuncs.com/api/v1",
    "beijing": "https://dashscope.aliyuncs.com/api/v1",
    "virginia": "https://dashscope-us.aliyuncs.com/api/v1",
}
# The official SDK and the console name regions by their ids; accept those too.
_REGION_ALIASES: Final = {
    "ap-southeast-1": "singapore",
    "intl": "singapore",
    "international": "singapore",
    "cn-beijing": "beijing",
    "china": "beijing",
    "us-east-1": "virginia",
    "us": "virginia",
}


@attrs.frozen(repr=False)
class Secret:
    """A string that never shows itself in a repr, a log line or an exception."""

    _value: str = attrs.field(alias="value")

    def reveal(self) -> str:
        """The secret itself, for the one header that needs it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


def resolve_region(region: str | None) -> str:
    """
    The canonical region name from the argument, ``$DASHSCOPE_REGION``, or ``"singapore"``.

    Raises:
        ValueError: The region is not one of DashScope's image-generation regions.
    """
    raw = region if region is not None else os.environ.get("DASHSCOPE_REGION") or "singapore"
    name = raw.strip().lower()
    name = _REGION_ALIASES.get(name, name)
    if name not in REGIONS:
        choices = ", ".join(sorted(REGIONS))
        msg = f"region must be one of {choices} (or their ids, e.g. 'ap-southeast-1'), not {raw!r}"
        raise ValueError(msg)
    return name


def resolve_base_url(base_url: str | None, region: str) -> str:
    """
    The API root (ending in ``/api/v1``) from the argument, ``$DASHSCOPE_HTTP_BASE_URL`` or the
    region's host.

    Raises:
        ValueError: The URL is not http(s), or is plain HTTP to anything but a loopback address
            (the API key would cross the network in clear).
    """
    url = base_url or os.environ.get("DASHSCOPE_HTTP_BASE_URL") or REGIONS[region]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        msg = f"base_url must be an http(s) URL such as {REGIONS[region]!r}, not {url!r}"
        raise ValueError(msg)
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        msg = (
            f"refusing plain HTTP to {parts.hostname!r}: the API key would travel unencrypted; "
            "use https:// (plain http is allowed only for loopback addresses such as 127.0.0.1)"
        )
        raise ValueError(msg)
    return url.rstrip("/")


def resolve_time_scale(time_scale: float | None, base_url: str) -> float:
    """
    The client's time scale: the argument, else ``$AIOQWENIMAGE_TIME_SCALE`` for a loopback
    `base_url` (an emulator), else 1.

    Raises:
        ValueError: The variable is set for a loopback API root but is not a positive number.
    """
    if time_scale is not None:
        return time_scale
    raw = os.environ.get(TIME_SCALE_ENV, "").strip()
    if not raw:
        return 1.0
    host = urlsplit(base_url).hostname or ""
    if not _is_loopback(host):
        logger.warning(
            "$%s is ignored: the API root %s is not a loopback address, and compressed time "
            "is for emulators only",
            TIME_SCALE_ENV,
            host,
        )
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        msg = f"${TIME_SCALE_ENV} must be a positive number, not {raw!r}"
        raise ValueError(msg)
    return value


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_key(api_key: str | None) -> Secret | None:
    """The API key from the argument or ``$DASHSCOPE_API_KEY``; ``None`` when there is none."""
    key = api_key if api_key is not None else os.environ.get("DASHSCOPE_API_KEY")
    return Secret(key.strip()) if key and key.strip() else None


def missing_key_error() -> AuthenticationError:
    """The error for a client used with no key configured."""
    return AuthenticationError(
        "no API key: pass Client(api_key=...) or set the DASHSCOPE_API_KEY environment variable",
        code="NoApiKey",
    )
