"""
``batch --shard i/N``: one of N workers' share of an input, and the files that share owns.

N workers given the same input and ``--shard 1/N`` ... ``--shard N/N`` split it without overlap
and without talking to each other: worker i takes the records whose position in the file (from
0, counting every record, valid or not) leaves ``i - 1`` when divided by N. Every record keeps
its place in the whole input (its id, its file name, its ``seq`` in the journal), so the shards'
outputs together are exactly what one unsharded run would have written.

Each shard keeps its own journal and manifest (``journal.shard-2-of-3.sqlite``,
``manifest.shard-2-of-3.jsonl``), so shards may share one output directory, and running the same
command again resumes that shard's items only. ``--shard 1/1`` is the whole input, under the
unsharded names.
"""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING, Final

import attrs

from aioqwenimage._cli._journal import JOURNAL_NAME
from aioqwenimage._cli._manifest import MANIFEST_NAME

if TYPE_CHECKING:
    from collections.abc import Iterable

    from aioqwenimage._cli._inputs import Item

__all__ = ["WHOLE", "Shard", "parse_shard"]

_SPEC: Final = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@attrs.frozen
class Shard:
    """Worker `number` (from 1) of `count`."""

    number: int
    count: int

    @property
    def whole(self) -> bool:
        """Whether this shard is the whole input."""
        return self.count == 1

    @property
    def label(self) -> str:
        """``2/3``, as given on the command line."""
        return f"{self.number}/{self.count}"

    def takes(self, item: Item) -> bool:
        """Whether `item` is this shard's."""
        return item.record % self.count == self.number - 1

    def select(self, items: Iterable[Item]) -> tuple[Item, ...]:
        """This shard's items, in input order."""
        return tuple(item for item in items if self.takes(item))

    def _named(self, name: str) -> str:
        if self.whole:
            return name
        stem, dot, suffix = name.rpartition(".")
        return f"{stem}.shard-{self.number}-of-{self.count}{dot}{suffix}"

    @property
    def journal_name(self) -> str:
        """``journal.sqlite``, or ``journal.shard-2-of-3.sqlite``."""
        return self._named(JOURNAL_NAME)

    @property
    def manifest_name(self) -> str:
        """``manifest.jsonl``, or ``manifest.shard-2-of-3.jsonl``."""
        return self._named(MANIFEST_NAME)


WHOLE: Final = Shard(1, 1)


def parse_shard(text: str) -> Shard:
    """``--shard``'s value; an `argparse.ArgumentTypeError` (a usage error) when it is not one."""
    found = _SPEC.match(text)
    if found is not None:
        number, count = int(found[1]), int(found[2])
        if 1 <= number <= count:
            return Shard(number, count)
    msg = f"expected i/N with 1 <= i <= N (e.g. 2/3: the second of three workers), got {text!r}"
    raise argparse.ArgumentTypeError(msg)
