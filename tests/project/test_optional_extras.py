"""Optional extras stay optional: importing the package does not import what they bring."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

IMPORTED = """
import json, sys
import aioqwenimage
import aioqwenimage.testing
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in {"redis", "rich"})))
"""


def test_importing_the_package_does_not_import_redis():
    """``import aioqwenimage`` (and its emulator) leaves redis-py (and rich) unloaded."""
    # Installed here (the tests extra), so its absence below is the package's doing.
    assert importlib.util.find_spec("redis") is not None
    run = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", IMPORTED], check=True, capture_output=True, text=True, cwd=ROOT
    )

    assert [] == json.loads(run.stdout)


def test_the_redis_extra_is_declared_and_tested():
    """``pip install aioqwenimage[redis]`` brings redis-py; the tests extra brings it too."""
    extras = PYPROJECT["project"]["optional-dependencies"]

    assert ["redis>=5.0"] == extras["redis"]
    assert "redis>=5.0" in extras["tests"]
    assert "redis" not in str(PYPROJECT["project"]["dependencies"])
