"""
A batch script: every line of a prompt file to images, saved into a directory.

    python examples/batch.py prompts.txt out/

``client.map`` runs the prompts concurrently within the model's limits and yields each outcome as
it completes; a failed prompt is reported and never stops the others.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import anyio

import aioqwenimage


async def run(
    prompt_file: Path,
    out_dir: Path,
    *,
    model: str = "qwen-image-plus",
    client_factory: Callable[[], aioqwenimage.Client] = aioqwenimage.Client,
) -> int:
    """Generate every prompt; returns the number of failures."""
    text = await anyio.Path(prompt_file).read_text(encoding="utf-8")
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    failures = 0
    async with client_factory() as client:
        async for outcome in client.map(prompts, model=model, save_to=out_dir):
            if outcome.ok:
                print(f"[{outcome.index}] ok  {outcome.prompt!r} -> task {outcome.task_id}")
            else:
                failures += 1
                print(f"[{outcome.index}] ERR {outcome.prompt!r}: {outcome.error}")
    print(f"{len(prompts) - failures} done, {failures} failed; images in {out_dir}")
    return failures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("prompt_file", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--model", default="qwen-image-plus")
    args = parser.parse_args(argv)
    return 1 if asyncio.run(run(args.prompt_file, args.out_dir, model=args.model)) else 0


if __name__ == "__main__":
    sys.exit(main())
