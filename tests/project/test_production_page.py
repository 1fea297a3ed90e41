"""docs/production.md stays true: its code runs or compiles, and its names are the code's."""

from __future__ import annotations

import ast
import logging
import re
from pathlib import Path

import pytest

import aioqwenimage
from aioqwenimage import _config, _logging

PAGE = (Path(__file__).parents[2] / "docs" / "production.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", PAGE, re.DOTALL)


@pytest.fixture
def restore_log_level():
    """The logging block sets the package logger's level: undo it (setLevel clears the cache)."""
    logger = logging.getLogger("aioqwenimage")
    level = logger.level
    yield
    logger.setLevel(level)


@pytest.mark.parametrize("source", BLOCKS)
def test_python_blocks_compile_and_the_synchronous_ones_run(source, monkeypatch, restore_log_level):
    """Each block compiles (top-level await allowed); one without await runs as written."""
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-docs")
    code = compile(source, "production.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)

    if "await" not in source:
        exec(code, {"aioqwenimage": aioqwenimage})  # noqa: S102 - our own documentation


def test_the_logging_switch_and_its_levels_are_the_code_s():
    """The page names the environment variable and exactly the levels it accepts."""
    assert f"`{_logging.ENV_VARIABLE}=debug`, `info` or `warning`" in PAGE
    assert ["debug", "info", "warning"] == list(_logging.LEVELS)


def test_the_region_table_is_the_code_s():
    """Every region and host in the table is one the client resolves."""
    for name, url in _config.REGIONS.items():
        host = url.removeprefix("https://").removesuffix("/api/v1")
        assert re.search(rf"\| `{name}`.*\| `{re.escape(host)}` \|", PAGE), name
