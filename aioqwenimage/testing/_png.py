"""
A tiny PNG writer: real, decodable result images of any size, from the standard library only.

Results are a smooth gradient, so every row is one repeated pixel and zlib shrinks even a
2048*2048 image to a few kilobytes; each size is encoded once and cached, since the emulator serves
the same few sizes again and again.
"""

from __future__ import annotations

import functools
import struct
import zlib
from typing import Final

__all__ = ["encode_png"]

_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
_MAX_SIDE: Final = 16_384
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
        ValueError: A side is not in [1, 16384].
    """
    if not (1 <= width <= _MAX_SIDE and 1 <= height <= _MAX_SIDE):
        msg = f"PNG sides must be in [1, {_MAX_SIDE}], got {width}*{height}"
        raise ValueError(msg)
    compressor = zlib.compressobj(6)
    parts: list[bytes] = []
    span = max(height - 1, 1)
    for y in range(height):
        shade = 255 * y // span
        # Filter byte 0 (None), then one repeated pixel: cheap to build and to deflate.
        row = b"\x00" + bytes((shade, 96, 255 - shade)) * width
        parts.append(compressor.compress(row))
    parts.append(compressor.flush())
    header = struct.pack(">II", width, height) + _IHDR_TAIL
    return (
        _SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", b"".join(parts))
        + _chunk(b"IEND", b"")
    )
