"""An item's image files: one naming rule, and an empty file never counts as saved."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aioqwenimage._cli._files import all_saved, image_name, image_names, non_empty

if TYPE_CHECKING:
    from pathlib import Path


def test_one_image_has_no_index_and_several_are_numbered():
    """``stem.png`` for a single image, ``stem-0.png``... for several."""
    assert ["a.png"] == image_names("a", 1)
    assert ["a-0.png", "a-1.png"] == image_names("a", 2)
    assert "a-3.png" == image_name("a", 4, 3)


def test_saved_means_every_file_there_and_not_empty(tmp_path: Path):
    """A missing or 0-byte file, or no file at all, is not saved."""
    (tmp_path / "a.png").write_bytes(b"png")
    (tmp_path / "b.png").write_bytes(b"")
    assert all_saved(tmp_path, ["a.png"])
    assert not all_saved(tmp_path, ["a.png", "b.png"])
    assert not all_saved(tmp_path, ["a.png", "c.png"])
    assert not all_saved(tmp_path, [])
    assert not non_empty(tmp_path)  # a directory is not a file
