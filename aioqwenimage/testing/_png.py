"""
A tiny PNG writer: real, decodable result images of any size, from the standard library only.

Results are a vertical gradient: every row is one repeated pixel, and runs of rows share a shade,
so the image is built from at most 256 distinct blocks and zlib shrinks even a 2048*2048 image to
a few kilobytes. Each size is encoded once and cached, since the emulator serves the same few
sizes again and again.
"""

from __future__ import annotations

import functools
import struct
import zlib
from typing import Final

__all__ = ["encode_png"]

_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
# Far beyond any size the catalog accepts (2048*2048 pixels), yet a bound on memory.
_MAX_PIXELS: Final = 1 << 26
# Bit depth 8, colour type 2 (truecolour RGB), deflate, adaptive filtering, no interlace.
_IHDR_TAIL: Final = bytes((8, 2, 0, 0, 0))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


@functools.lru_cache(maxsize=32)
def encode_png(width: int, height: int) -> bytes:
    """
    A ``width`` x ``height`` RGB PNG (a vertical gradient), cached per size.

    Raises:
        ValueError: A side is below 1, or the image is beyond 2**26 pixels.
    """
    if width < 1 or height < 1 or width * height > _MAX_PIXELS:
        msg = f"PNG sides must be positive and the image at most {_MAX_PIXELS} pixels"
        raise ValueError(msg)
    compressor = zlib.compressobj(6)
    parts: list[bytes] = []
    span = max(height - 1, 1)
    y = 0
    while y < height:
        shade = 255 * y // span
        # Rows [y, until) share this shade: ceil((shade + 1) * span / 255) is the next change.
        until = min(height, -(-(shade + 1) * span // 255))
        # Filter byte 0 (None), then one repeated pixel per row.
        row = b"\x00" + bytes((shade, 96, 255 - shade)) * width
        parts.append(compressor.compress(row * (until - y)))
        y = until
    parts.append(compressor.flush())
    header = struct.pack(">II", width, height) + _IHDR_TAIL
    return (
        _SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", b"".join(parts))
        + _chunk(b"IEND", b"")
    )
