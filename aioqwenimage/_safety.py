"""
What the client accepts from the result host: where it fetches, where it writes, what it keeps.

Result URLs and the ids that name saved files come from the service's answers, so a compromised
or impersonated service (or a man in the middle of a plain-HTTP emulator setup) chooses them.
Against the real service (any API host that is not a loopback address) a result URL must be
``https`` and must not lead, directly or through a redirect, to a loopback, link-local or private
address; an emulator on this machine serves its files over plain HTTP on 127.0.0.1 and keeps
working. File names derived from server data are reduced to a safe character set and must land
inside the caller's directory; bytes are kept only if they start like an image.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import attrs

from aioqwenimage._errors import InvalidRequestError, UnsafeResultError

__all__ = [
    "MAX_REDIRECTS",
    "ResultPolicy",
    "check_image_signature",
    "parse_oss_error",
    "safe_name",
    "target_in",
]

MAX_REDIRECTS: Final = 5
_UNSAFE_CHARS: Final = re.compile(r"(?:[^A-Za-z0-9._-]|\.\.)+")
_MAX_NAME: Final = 120


def safe_name(text: str, *, fallback: str = "image") -> str:
    """
    `text` as a plain file name: letters, digits, ``.``, ``_`` and ``-`` only (runs of
    anything else, and of ``..``, become one ``_``), no leading dot, at most 120 characters.
    """
    name = _UNSAFE_CHARS.sub("_", text).lstrip(".")[:_MAX_NAME]
    return name if name.strip("._-") else fallback


def target_in(directory: Path, name: str) -> Path:
    """
    The path of file `name` inside `directory`.

    Raises:
        InvalidRequestError: `name` is not a single file name (a separator, ``..``, empty).
        UnsafeResultError: The resolved path would lie outside `directory` (a symbolic link).
    """
    if not name or name in (".", "..") or any(ch in name for ch in "/\\\0"):
        msg = f"filename must be a plain file name without directories, not {name!r}"
        raise InvalidRequestError(msg, parameter="filename")
    target = directory / name
    root = directory.resolve()
    if target.resolve().parent != root:
        msg = f"refusing to write {name!r}: it resolves outside {str(directory)!r}"
        raise UnsafeResultError(msg)
    return target


@attrs.frozen
class ResultPolicy:
    """
    Which result URLs may be fetched.

    Attributes:
        strict: The API host is not a loopback address: only ``https``, and never a loopback,
            link-local or private address. Host names are not resolved for the check, so that
            private DNS setups (VPC endpoints) keep working; only literal addresses and
            ``localhost`` names are refused.
    """

    strict: bool

    def check(self, url: str, *, redirected_from: str | None = None) -> None:
        """
        Raises:
            UnsafeResultError: The policy refuses `url`.
        """
        parts = urlsplit(url)
        how = f"a redirect from {_origin(redirected_from)} to" if redirected_from else "the"
        allowed = ("https",) if self.strict else ("http", "https")
        if parts.scheme not in allowed or not parts.hostname:
            msg = (
                f"refusing {how} result URL {_origin(url)}: only {' or '.join(allowed)} result "
                "URLs are fetched"
            )
            raise UnsafeResultError(msg)
        if self.strict and _is_internal(parts.hostname):
            msg = (
                f"refusing {how} result URL {_origin(url)}: it names a loopback, link-local "
                "or private address, which result URLs of the real service never do"
            )
            raise UnsafeResultError(msg)


def _is_internal(host: str) -> bool:
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


def _origin(url: str | None) -> str:
    # Scheme, host and port only: the query is the URL's signature, a credential.
    parts = urlsplit(url or "")
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


_SIGNATURES: Final = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
)
SIGNATURE_BYTES: Final = 12


def check_image_signature(head: bytes) -> None:
    """
    Raises:
        UnsafeResultError: `head` (the first bytes of a download) is not a PNG, JPEG or WebP.
    """
    if any(head.startswith(magic) for magic, _ in _SIGNATURES):
        return
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return
    msg = (
        f"the result host sent something that is not a PNG, JPEG or WebP image "
        f"(it starts with {head[:16]!r}); nothing was kept"
    )
    raise UnsafeResultError(msg)


_XML_FIELD: Final = re.compile(r"<(Code|Message|RequestId|Expires|ServerTime)>([^<]{0,2000})</\1>")


def parse_oss_error(body: bytes) -> dict[str, str]:
    """
    The fields of an OSS XML error document (``Code``, ``Message``, ``RequestId``, and for an
    expired URL ``Expires`` and ``ServerTime``); empty when the body is something else.

    Read with a pattern rather than an XML parser: the body is untrusted, and entity expansion
    is not something an error message needs.
    """
    text = body[: 64 * 1024].decode("utf-8", "replace")
    if "<Error>" not in text:
        return {}
    fields: dict[str, str] = {}
    for name, value in _XML_FIELD.findall(text):
        fields.setdefault(name, _unescape(value.strip()))
    return fields


def _unescape(text: str) -> str:
    for entity, char in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&apos;", "'")):
        text = text.replace(entity, char)
    return text.replace("&amp;", "&")
