"""
The recipes of docs/testing.md, run as a downstream project runs them.

Each recipe folder of ``examples/testing/`` (the files the page includes) is copied into an empty
directory and tested there by pytest in a subprocess: no configuration of ours, the installed
plugin found through its entry point, pytest-asyncio in its default strict mode.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

RECIPES = Path(__file__).parents[2] / "examples" / "testing"
PER_TEST = 3.0
"""Seconds one recipe test may take on a loaded machine; on an idle one they take 0.3-0.6 s."""


def run_pytest(project: Path) -> subprocess.CompletedProcess[str]:
    """pytest on `project`, as its owner would run it, reporting every test's duration."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-W",
            "error",
            "-o",
            "asyncio_default_fixture_loop_scope=function",
            "--durations=0",
            "--durations-min=0",
        ],
        capture_output=True,
        text=True,
        cwd=project,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("recipe", "tests"), [("fastapi_service", 3), ("aiohttp_service", 2), ("blocking_job", 1)]
)
def test_recipe_passes_downstream(tmp_path, recipe, tests):
    """The recipe's own tests pass in a fresh project, each in compressed time."""
    project = tmp_path / recipe
    shutil.copytree(RECIPES / recipe, project)
    result = run_pytest(project)
    calls = [float(s) for s in re.findall(r"^([\d.]+)s call ", result.stdout, re.MULTILINE)]
    passed = re.findall(r"(\d+) passed", result.stdout)
    assert (0, [str(tests)]) == (result.returncode, passed), result.stdout + result.stderr
    assert [] == [s for s in calls if s > PER_TEST]
