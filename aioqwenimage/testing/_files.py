"""
Result URLs: OSS-style signed links to PNGs on the emulator's file host, and their checks.

A URL looks like the real ones (§8): ``{files}/{YYYYMMDD}/{id}-{i}-{W}x{H}.png?Expires=...&
OSSAccessKeyId=...&Signature=...``. The signature is an HMAC over the expiry and the object key, so
the file host needs no state: the key names the size to draw, the signature proves the emulator
issued it, and ``Expires`` says until when.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
from typing import TYPE_CHECKING, Final
from urllib.parse import quote
from xml.sax.saxutils import escape

import attrs

from aioqwenimage.testing._wire import format_time

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["FileRequest", "UrlSigner", "oss_error"]

ACCESS_KEY_ID: Final = "LTAI5tEmulatorFakeKeyId"
_BUCKET: Final = "dashscope-result-emulator"
_KEY: Final = re.compile(r"^\d{8}/[\w-]{1,64}-\d{1,2}-(\d{1,9})x(\d{1,9})\.png$")


@attrs.frozen(kw_only=True)
class FileRequest:
    """What the file host was asked for: the object key and the three signed-URL parameters."""

    key: str
    expires: str | None
    access_key_id: str | None
    signature: str | None


class UrlSigner:
    """
    Issues and checks result URLs.

    Args:
        secret: The HMAC key (random per emulator, so URLs of one run fail on another).
        time_scale: Under compressed time ``Expires`` carries milliseconds, since a whole second
            could be most of a scaled day.
    """

    def __init__(self, secret: bytes, *, time_scale: float) -> None:
        self._secret = secret
        self._precise = time_scale < 1

    def _signature(self, key: str, expires: str) -> str:
        text = f"GET\n\n\n{expires}\n/{_BUCKET}/{key}"
        digest = hmac.new(self._secret, text.encode(), hashlib.sha1).digest()
        return base64.b64encode(digest).decode()

    def url(
        self, base: str, *, owner: str, index: int, size: tuple[int, int], expires: float
    ) -> str:
        """The signed URL of image `index` of task (or request) `owner`."""
        day = dt.datetime.fromtimestamp(expires, dt.timezone.utc).strftime("%Y%m%d")
        key = f"{day}/{owner}-{index}-{size[0]}x{size[1]}.png"
        stamp = f"{expires:.3f}" if self._precise else str(int(expires))
        signature = quote(self._signature(key, stamp), safe="")
        return f"{base}/{key}?Expires={stamp}&OSSAccessKeyId={ACCESS_KEY_ID}&Signature={signature}"

    def check(self, request: FileRequest, now: float) -> tuple[int, int]:
        """
        The size to serve for a valid, unexpired URL.

        Raises:
            OssError: The answer OSS would give instead (403 or 404).
        """
        match = _KEY.match(request.key)
        if match is None:
            raise OssError(404, "NoSuchKey", "The specified key does not exist.")
        if request.expires is None or request.signature is None or request.access_key_id is None:
            raise OssError(
                403,
                "AccessDenied",
                "You have no right to access this object because of bucket acl.",
            )
        expected = self._signature(request.key, request.expires)
        if request.access_key_id != ACCESS_KEY_ID or not hmac.compare_digest(
            expected, request.signature
        ):
            raise OssError(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        expires = float(request.expires)
        if now > expires:
            raise OssError(
                403,
                "AccessDenied",
                "Request has expired.",
                extra={"Expires": format_time(expires), "ServerTime": format_time(now)},
            )
        return int(match[1]), int(match[2])


class OssError(Exception):
    """An OSS refusal, rendered as OSS's XML error document."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        extra: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.extra: Mapping[str, str] = extra or {}
        self.headers: Mapping[str, str] = headers or {}


def oss_error(error: OssError, request_id: str) -> bytes:
    """The XML body OSS answers errors with."""
    fields = {
        "Code": error.code,
        "Message": error.message,
        "RequestId": request_id,
        "HostId": f"{_BUCKET}.oss-emulator.aliyuncs.com",
        **error.extra,
    }
    inner = "".join(f"  <{k}>{escape(v)}</{k}>\n" for k, v in fields.items())
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<Error>\n{inner}</Error>\n'.encode()
