"""Where results may be written: `_safety.target_in`."""

from __future__ import annotations

import pytest

from aioqwenimage import InvalidRequestError, UnsafeResultError
from aioqwenimage._safety import target_in


def test_a_plain_name_lands_inside_the_directory(tmp_path):
    assert tmp_path / "task-1-0.png" == target_in(tmp_path, "task-1-0.png")


@pytest.mark.parametrize("name", ["", ".", "..", "a/b.png", "..\\x.png", "nul\0.png"])
def test_a_name_that_is_not_a_plain_file_name_is_refused(tmp_path, name):
    with pytest.raises(InvalidRequestError, match="plain file name"):
        target_in(tmp_path, name)


def test_a_symbolic_link_leading_outside_the_directory_is_refused(tmp_path):
    """The name is plain, but the file there is a link elsewhere: nothing is written through it."""
    inside, outside = tmp_path / "images", tmp_path / "elsewhere"
    inside.mkdir()
    outside.mkdir()
    (inside / "task-1-0.png").symlink_to(outside / "task-1-0.png")

    with pytest.raises(UnsafeResultError, match="resolves outside"):
        target_in(inside, "task-1-0.png")
    assert not (outside / "task-1-0.png").exists()
