"""The docs agree with the code: the models table is the catalog; the README's two commands."""

from __future__ import annotations

import re
from pathlib import Path

from aioqwenimage import _catalog

ROOT = Path(__file__).parent.parent


def models_table() -> str:
    """The Markdown table of docs/models.md, built from the catalog."""
    rows = [
        "| model | endpoint | sizes | n | prompt | documented limits (default region) |",
        "|---|---|---|---|---|---|",
    ]
    for name, spec in _catalog.MODELS.items():
        limits = spec.default_limits("singapore")
        per = "s" if limits.period == 1 else f"{limits.period:g} s"
        in_flight = "unlimited" if limits.in_flight is None else f"{limits.in_flight} in flight"
        low, high = spec.n_range
        mode = " + ".join("async task" if p.is_async else "sync" for p in spec.protocols)
        n = low if low == high else f"{low}-{high}"
        size = f"{spec.size.describe()} (default {_catalog.format_size(spec.size.default)})"
        rows.append(
            f"| `{name}` | {mode} | {size} | {n} (default {spec.n_default}) | "
            f"{spec.prompt_limit} | {limits.submits}/{per}, {in_flight} |"
        )
    return "\n".join(rows)


def test_models_page_lists_the_catalog():
    """docs/models.md carries exactly the catalog's table."""
    page = (ROOT / "docs" / "models.md").read_text(encoding="utf-8")
    assert models_table() in page


def test_readme_quick_start_has_the_two_commands():
    """The Quick start gives one command for the main job and one for the tests, as CI runs it."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Quick start.*?```bash\n(.*?)```", readme, re.DOTALL)
    assert block is not None
    commands = [line for line in block.group(1).splitlines() if line and not line.startswith("#")]
    assert 2 == len(commands)
    assert commands[1] in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
