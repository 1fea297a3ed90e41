"""
Saving a succeeded item's images into the output directory, the last step of an item.

The URLs come from the task's result (or, on resume, from the journal). They are signed for 24
hours, so an item resumed late may find them expired: the task is then queried once for fresh
ones while the service still keeps it. A failed download leaves the item ``succeeded`` in the
journal (its URLs kept), so the next run tries again without a new task; an ``OSError`` (a full
disk, an unwritable file) is raised to the runner, which stops the batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import attrs

from aioqwenimage._cli._files import image_name
from aioqwenimage._cli._progress import Phase
from aioqwenimage._cli._resume import too_old
from aioqwenimage._errors import ImageExpiredError, QwenImageError, TaskExpiredError

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from aioqwenimage import Client, GenerationResult
    from aioqwenimage._cli._ledger import Ledger
    from aioqwenimage._cli._records import Row

__all__ = ["Saver"]

_GONE = "the result URLs expired and the task is gone"


@attrs.frozen(kw_only=True)
class Saver:
    """Downloads the images of succeeded items and records them through the ledger."""

    client: Client
    ledger: Ledger
    out: Path
    clock: Callable[[], float]

    async def download(
        self, seq: int, result: GenerationResult | None = None, *, announce: bool = True
    ) -> None:
        """
        Save every image of item `seq`; fresh URLs from a re-poll if they expired.

        Raises:
            OSError: An image could not be written (the batch stops).
        """
        ledger = self.ledger
        ledger.tally.set(seq, Phase.DOWNLOADING)
        row = ledger.rows[seq]
        urls = list(row.urls) if result is None else [(i.index, i.url) for i in result.images]
        for fresh in (False, True):
            try:
                files = await self._save_all(row, urls)
            except ImageExpiredError:
                if fresh or row.task_id is None or too_old(row, self.clock()):
                    ledger.expired(seq, _GONE)
                    return
                refreshed = await self._repoll(seq, row)
                if refreshed is None:
                    return
                urls = [(image.index, image.url) for image in refreshed.images]
                continue
            except QwenImageError as exc:
                ledger.not_downloaded(
                    seq,
                    f"download failed: {exc}",
                    say=f"download failed ({exc}); the next run tries again",
                )
                return
            ledger.downloaded(seq, files, announce=announce)
            return

    async def _save_all(self, row: Row, urls: list[tuple[int, str]]) -> list[str]:
        """Download every image concurrently; raises the first failure (disk, then expiry)."""
        files: list[str] = [""] * len(urls)
        errors: list[Exception] = []

        async def save(position: int, index: int, url: str) -> None:
            name = image_name(row.stem, row.images, index)
            try:
                await self.client.download_image(url, self.out / name)
            except (QwenImageError, OSError) as exc:
                errors.append(exc)
                return
            files[position] = name

        async with anyio.create_task_group() as tg:
            for position, (index, url) in enumerate(urls):
                tg.start_soon(save, position, index, url)
        if errors:
            # A full disk stops the batch, so it goes first; then expiry (URLs to refresh).
            raise next(
                (e for e in errors if isinstance(e, OSError)),
                next((e for e in errors if isinstance(e, ImageExpiredError)), errors[0]),
            )
        return files

    async def _repoll(self, seq: int, row: Row) -> GenerationResult | None:
        if row.task_id is None:  # pragma: no cover - download() checks it first
            return None
        try:
            result = await self.client.attach(row.task_id, model=row.model)
        except TaskExpiredError:
            self.ledger.expired(seq, _GONE)
            return None
        except QwenImageError as exc:
            self.ledger.not_downloaded(seq, f"could not refresh expired URLs: {exc}")
            return None
        self.ledger.succeeded(seq, result)
        return result
