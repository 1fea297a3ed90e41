"""
The standalone emulator (`aioqwenimage emulator`) in a process of its own, and `Emulator`, what
a test knows of it: its API root, its key, its time scale and its admin endpoints.
"""

from __future__ import annotations

import contextlib
import json
import select
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from typing import Any

import attrs


@attrs.frozen
class Emulator:
    """An emulator serving in another process: its API root, its key, and its admin endpoints."""

    base_url: str
    api_key: str = attrs.field(repr=False)
    time_scale: float = 1.0

    @property
    def admin(self) -> str:
        return self.base_url.replace("/api/v1", "/__emulator__")

    def call(self, method: str, path: str, body: object = None) -> Any:
        """One admin request (``stats``, ``reset``, ``faults``); its JSON answer."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.admin}/{path}", data=data, method=method)  # noqa: S310
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return json.loads(response.read())

    def stats(self) -> dict[str, Any]:
        """`aioqwenimage.testing.Stats.to_dict`, with the per-task reports."""
        return self.call("GET", "stats")  # type: ignore[no-any-return]

    def reset(self) -> None:
        """Forget every task and counter."""
        self.call("POST", "reset")

    def created(self) -> int:
        """Tasks created so far, over all models."""
        return sum(self.stats()["tasks_created"].values())

    def fault(self, **fault: object) -> None:
        """Arm one fault (see `aioqwenimage.testing.Fault`)."""
        self.call("POST", "faults", fault)

    def flags(self) -> list[str]:
        """The CLI flags that point a command at this emulator, at its time scale."""
        scale = f"{self.time_scale:g}"
        return ["--base-url", self.base_url, "--api-key", self.api_key, "--time-scale", scale]


@contextlib.contextmanager
def emulator_process(*flags: str, stop_timeout: float = 30) -> Iterator[tuple[str, str]]:
    """Serve the emulator on a free loopback port; yields its base URL and API key."""
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "aioqwenimage", "emulator", "--port", "0", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    # It prints one line, DASHSCOPE_HTTP_BASE_URL=... DASHSCOPE_API_KEY=..., once serving.
    ready, _, _ = select.select([process.stdout], [], [], 30)
    line = process.stdout.readline() if ready else ""
    env = dict(part.split("=", 1) for part in line.split())
    try:
        yield env["DASHSCOPE_HTTP_BASE_URL"], env["DASHSCOPE_API_KEY"]
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=stop_timeout)
