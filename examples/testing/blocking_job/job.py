"""A blocking job (a script, a Celery task, a Django view): aioqwenimage.SyncClient."""

from pathlib import Path

import aioqwenimage


def render(prompts: list[str], out: Path) -> int:
    """Generate one image per prompt into `out`; returns how many failed."""
    failed = 0
    with aioqwenimage.SyncClient() as client:
        for outcome in client.map(prompts, save_to=out):
            if not outcome.ok:
                failed += 1
    return failed
