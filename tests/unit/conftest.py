"""Shared setup for the CLI's unit tests: real journals in `tmp_path`, closed at the end."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from aioqwenimage._cli._inputs import Item
from aioqwenimage._cli._journal import Journal

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

FINGERPRINT = {"input": {"path": "/data/p.txt", "sha256": "abc"}, "options": {"model": "m"}}


def items(count: int, *, images: int = 1, model: str = "qwen-image-plus") -> list[Item]:
    """`count` valid items of `model`, prompts ``a fox 0``, ``a fox 1``..."""
    return [
        Item(
            seq=seq,
            item_id=f"{seq + 1:04d}",
            line=seq + 1,
            prompt=f"a fox {seq}",
            model=model,
            params={"n": images} if images > 1 else {},
            stem=f"{seq + 1:04d}-a-fox",
            size=(1328, 1328),
            images=images,
        )
        for seq in range(count)
    ]


@pytest.fixture
def make_journal(tmp_path: Path) -> Iterator[Callable[..., Journal]]:
    """A function opening a new journal of `count` items in a directory of its own."""
    opened: list[Journal] = []

    def make(count: int = 3, *, images: int = 1, name: str = "out") -> Journal:
        directory = tmp_path / name
        directory.mkdir(exist_ok=True)
        journal = Journal.open(
            directory, fingerprint=FINGERPRINT, items=items(count, images=images)
        )
        opened.append(journal)
        return journal

    yield make
    for journal in opened:
        journal.close()
