"""
The distributions as a user gets them: built from this tree, installed into a clean environment.

The wheel must work with its runtime dependencies alone (no test or CLI extra), and the sdist
must carry everything its own tests import. Marked ``packaging``: it builds and installs for real
(about 10 s; pip resolves the three runtime dependencies from its cache or the index).
"""

from __future__ import annotations

import ast
import email
import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from email.message import Message
from pathlib import Path

import pytest
import tomllib

import aioqwenimage
from tests.conftest import MACHINE_PROXY_ENV

ROOT = Path(__file__).parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

pytestmark = pytest.mark.packaging

# Runs inside the clean environment: one generation against the emulator, and what got imported.
SMOKE = """
import asyncio, json, sys
import aioqwenimage
from aioqwenimage.testing import FakeDashScope

async def main():
    async with FakeDashScope(time_scale=0.001) as fake:
        async with aioqwenimage.Client(
            api_key=fake.api_key, base_url=fake.base_url, time_scale=fake.time_scale
        ) as client:
            result = await client.generate("a red fox in snow", model="qwen-image-plus")
            data = await result.images[0].read()
    heavy = sorted({"rich", "pytest", "aioresponses", "hypothesis", "redis"} & set(sys.modules))
    print(json.dumps({"png": data[:8] == b"\\x89PNG\\r\\n\\x1a\\n", "task": result.task_id,
                      "version": aioqwenimage.__version__, "heavy": heavy}))

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(  # noqa: S603 - our own interpreter and build backend
        [sys.executable, "-m", "hatchling", "build", "-d", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return out


def wheel_metadata(dist: Path) -> Message:
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return email.message_from_bytes(archive.read(name))


def test_metadata_is_complete_and_consistent(dist):
    """Version, URLs and classifiers: what a package index page shows is right."""
    meta = wheel_metadata(dist)
    classifiers = meta.get_all("Classifier") or []
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])

    assert PYPROJECT["project"]["version"] == meta["Version"] == aioqwenimage.__version__
    assert {"Source", "Issues", "Documentation", "Changelog"} <= set(urls)
    assert "Framework :: Pytest" in classifiers
    assert "MIT" == meta["License-Expression"]
    assert [] == [c for c in classifiers if c.startswith("License ::")]


def test_declared_python_versions_are_the_tested_ones(dist):
    """Requires-Python starts at the lowest classifier, and the suite runs on a declared one."""
    meta = wheel_metadata(dist)
    versions = [
        c.rsplit(" :: ", 1)[1]
        for c in meta.get_all("Classifier") or []
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    ]

    assert ["3.11"] == versions
    assert f">={versions[0]}" == meta["Requires-Python"]
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in versions


def test_readme_links_are_absolute(dist):
    """The long description has no relative links: they break on a package index page."""
    description = wheel_metadata(dist).get_payload()
    assert isinstance(description, str)
    targets = re.findall(r"\]\(([^)]+)\)", description)

    assert targets
    assert [] == [t for t in targets if not t.startswith("https://")]


def test_sdist_carries_what_its_tests_import(dist):
    """Every first-party module that tests/ imports is in the sdist, as are the docs they read."""
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    first_party = set(PYPROJECT["tool"]["ruff"]["lint"]["isort"]["known-first-party"])
    imported = set()
    for test in (ROOT / "tests").rglob("*.py"):
        for node in ast.walk(ast.parse(test.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)

    assert {"aioqwenimage", "tests", "benchmarks"} == imported & first_party
    for package in imported & first_party:
        assert f"{package}/__init__.py" in names or f"{package}/conftest.py" in names
    read_by_tests = {"README.md", "mkdocs.yml", "pyproject.toml", ".ci/run", "examples/prompts.txt"}
    assert read_by_tests <= names
    assert {"docs/models.md", "docs/testing.md", "docs/production.md"} <= names


def test_wheel_holds_only_the_package(dist):
    """The wheel installs `aioqwenimage` and nothing else at the top level."""
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        tops = {n.split("/", 1)[0] for n in archive.namelist()}

    assert {"aioqwenimage", f"aioqwenimage-{aioqwenimage.__version__}.dist-info"} == tops


def test_wheel_generates_in_a_clean_environment(dist, tmp_path):
    """The wheel with its runtime dependencies only runs one emulator generation."""
    (wheel,) = dist.glob("*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)  # noqa: S603
    python = venv / "bin" / "python"
    subprocess.run(  # noqa: S603 - pip installing the wheel just built
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", str(wheel)],
        check=True,
        capture_output=True,
        env={**os.environ, **MACHINE_PROXY_ENV},  # pip may need the machine's proxy
    )
    run = subprocess.run(  # noqa: S603 - the fresh environment's own interpreter
        [str(python), "-c", SMOKE], check=True, capture_output=True, text=True, cwd=tmp_path
    )
    report = json.loads(run.stdout)

    assert report["png"] is True
    assert report["task"]
    assert aioqwenimage.__version__ == report["version"]
    assert [] == report["heavy"]
