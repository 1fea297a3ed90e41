"""
An item's image files in the output directory: what they are named, and when they count as saved.

One place for both because a resume (`aioqwenimage._cli._resume`), a rebuilt journal
(`aioqwenimage._cli._recovery`) and the downloads (`aioqwenimage._cli._saving`) must agree on
them: a file named differently, or an empty one counted as saved, would make an item look done
that is not (or lose one that is).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

__all__ = ["all_saved", "image_name", "image_names", "non_empty"]


def image_name(stem: str, images: int, index: int) -> str:
    """``{stem}.png``, or ``{stem}-{index}.png`` for items of several images."""
    return f"{stem}.png" if images == 1 else f"{stem}-{index}.png"


def image_names(stem: str, images: int) -> list[str]:
    """The names of every image of an item, in image order."""
    return [image_name(stem, images, index) for index in range(images)]


def non_empty(path: Path) -> bool:
    """Whether `path` is a file with something in it (a file cut short at 0 bytes is not)."""
    return path.is_file() and path.stat().st_size > 0


def all_saved(directory: Path, names: Sequence[str]) -> bool:
    """Whether there are files named and every one is in `directory`, not empty."""
    return bool(names) and all(non_empty(directory / name) for name in names)
