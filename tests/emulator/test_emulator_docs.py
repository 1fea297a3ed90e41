"""docs/testing.md: its quick start runs, and its pytest examples pass as written."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

PAGE = Path(__file__).parents[2] / "docs" / "testing.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.DOTALL)


def test_quick_start_runs(capsys):
    """The quick-start script runs end to end and prints a finished task and its PNG."""
    (script,) = [block for block in _blocks() if "asyncio.run(main())" in block]
    exec(compile(script, str(PAGE), "exec"), {"__name__": "__docs__"})  # noqa: S102 - our own page
    out = capsys.readouterr().out
    assert re.match(r"SUCCEEDED \d+ bytes of PNG\n", out)


def test_pytest_examples_pass(tmp_path: Path):
    """The plugin examples pass under pytest, through the installed entry point."""
    (examples,) = [block for block in _blocks() if "def test_" in block]
    (tmp_path / "test_docs_example.py").write_text(textwrap.dedent(examples))
    result = subprocess.run(  # noqa: S603 - our own interpreter and pytest
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "asyncio_mode=auto",
            "-o",
            "asyncio_default_fixture_loop_scope=function",
            "-W",
            "error",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert (0, True) == (result.returncode, "3 passed" in result.stdout)


def test_every_public_name_is_documented():
    """Each public class of aioqwenimage.testing has an API entry on the page."""
    from aioqwenimage import testing

    page = PAGE.read_text(encoding="utf-8")
    documented = set(re.findall(r"^::: aioqwenimage\.testing\.(\w+)$", page, re.MULTILINE))
    public = {name for name in testing.__all__ if name[0].isupper() and not name.isupper()}
    assert public == documented
