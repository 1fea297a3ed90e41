"""
Where the client connects and with which key: arguments first, then the environment, then defaults.

Environment variables: ``DASHSCOPE_API_KEY``, ``DASHSCOPE_REGION``, ``DASHSCOPE_HTTP_BASE_URL``
(the official SDK's names, so one environment serves both), and ``AIOQWENIMAGE_TIME_SCALE``, which
lets an app that builds its own ``Client()`` run in an emulator's compressed time under test. It is
honoured only for a loopback API root, so a stray variable can never compress production's time.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import os
from typing import Final, NoReturn
from urllib.parse import urlsplit

import attrs

from aioqwenimage._errors import AuthenticationError, InvalidRequestError

__all__ = [
    "REGIONS",
    "TIME_SCALE_ENV",
    "Secret",
    "is_loopback",
    "is_loopback_url",
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
        InvalidRequestError: The URL is malformed (spaces or control characters, a backslash,
            a bad port, a query or fragment), carries userinfo (``user:pw@``), is not http(s),
            or is plain HTTP to anything but a loopback address (the API key would cross the
            network in clear).
    """
    url = base_url or os.environ.get("DASHSCOPE_HTTP_BASE_URL") or REGIONS[region]
    example = REGIONS[region]
    parts = urlsplit(url)
    # Parsers disagree on backslashes and userinfo ("http://a.example\\@127.0.0.1" has two
    # readings): refuse what could send the key to another host than the one we checked.
    if any(ch.isspace() or not ch.isprintable() or ch == "\\" for ch in url):
        _refuse("contains spaces, control characters or a backslash", example)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        _refuse("must be an http(s) URL with a host", example)
    if "@" in parts.netloc:
        _refuse("must not contain user information (user:password@): send the key as api_key")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        _refuse("must not have a query or a fragment", example)
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in 0..65535
    except ValueError:
        _refuse("has an invalid port", example)
    if parts.scheme == "http" and not is_loopback(parts.hostname or ""):
        msg = (
            f"refusing plain HTTP to {parts.hostname!r}: the API key would travel unencrypted; "
            "use https:// (plain http is allowed only for loopback addresses such as 127.0.0.1)"
        )
        raise InvalidRequestError(msg, parameter="base_url")
    return url.rstrip("/")


def _refuse(why: str, example: str | None = None) -> NoReturn:
    # The URL itself is not echoed: it may hold a password.
    hint = f"; for example {example!r}" if example else ""
    msg = f"base_url {why}{hint}"
    raise InvalidRequestError(msg, parameter="base_url")


def is_loopback_url(url: str) -> bool:
    """Whether `url`'s host is a loopback address (an emulator on this machine)."""
    return is_loopback(urlsplit(url).hostname or "")


def resolve_time_scale(time_scale: float | None, base_url: str) -> float:
    """
    The client's time scale: the argument, else ``$AIOQWENIMAGE_TIME_SCALE`` for a loopback
    `base_url` (an emulator), else 1.

    Raises:
        ValueError: `time_scale` is not a positive number, or the variable is set for a
            loopback API root but is not one.
    """
    if time_scale is not None:
        given: object = time_scale  # untyped callers may pass anything
        if (
            not isinstance(given, int | float)
            or isinstance(given, bool)
            or not (math.isfinite(given) and given > 0)
        ):
            msg = f"time_scale must be a positive number, got {time_scale!r}"
            raise ValueError(msg)
        return float(given)
    raw = os.environ.get(TIME_SCALE_ENV, "").strip()
    if not raw:
        return 1.0
    if not is_loopback_url(base_url):
        host = urlsplit(base_url).hostname or ""
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


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address) is this machine: ``localhost`` or a loopback IP."""
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


def account_name(key: Secret | None) -> str:
    """Names the key's account where it is shared (in Redis): a hash, never the key."""
    if key is None:
        return "no-key"
    return hashlib.sha256(key.reveal().encode()).hexdigest()[:16]


def missing_key_error() -> AuthenticationError:
    """The error for a client used with no key configured."""
    return AuthenticationError(
        "no API key: pass Client(api_key=...) or set the DASHSCOPE_API_KEY environment variable",
        code="NoApiKey",
    )
