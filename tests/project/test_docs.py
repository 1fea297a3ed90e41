"""The docs agree with the code: the models page is the catalog; the README's two commands."""

from __future__ import annotations

import re
from pathlib import Path

from aioqwenimage import _catalog, _catalog_docs

ROOT = Path(__file__).parents[2]


def test_models_page_is_generated_from_the_catalog():
    """docs/models.md carries exactly the catalog's generated sections, sources included."""
    page = (ROOT / "docs" / "models.md").read_text(encoding="utf-8")
    assert _catalog_docs.models_markdown() in page


def test_models_page_shows_every_model_with_its_sources():
    """Each catalog model has its section, and every cited source appears on the page."""
    page = (ROOT / "docs" / "models.md").read_text(encoding="utf-8")
    assert all(f"`{name}`" in page for name in _catalog.MODELS)
    cited = {text for spec in _catalog.MODELS.values() for text in spec.sources.values()}
    assert all(text.replace("|", "\\|") in page for text in cited)


def test_readme_quick_start_has_the_two_commands():
    """The Quick start gives one command for the main job and one for the tests, as CI runs it."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Quick start.*?```bash\n(.*?)```", readme, re.DOTALL)
    assert block is not None
    commands = [line for line in block.group(1).splitlines() if line and not line.startswith("#")]
    assert 2 == len(commands)
    assert commands[1] in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def _runnable_blocks(page: Path) -> list[str]:
    """The Python blocks of a page marked ``<!-- docs-test: run -->`` on the line before."""
    text = page.read_text(encoding="utf-8")
    return re.findall(r"<!-- docs-test: run -->\n```python\n(.*?)```", text, re.DOTALL)


def test_resolving_an_uncertain_create_runs_as_written(capsys):
    """docs/how-to/errors.md: the resolver example finds the dropped create's task, once."""
    page = ROOT / "docs" / "how-to" / "errors.md"
    (script,) = _runnable_blocks(page)
    exec(compile(script, str(page), "exec"), {"__name__": "__docs__"})  # noqa: S102 - our page
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("created - 1 task(s) of 'wan2.2-t2i-flash' listed since")
    assert re.fullmatch(r"1 image\(s\) of task [0-9a-f-]{36}", out[1])
    assert "1 task(s) created" == out[2]
