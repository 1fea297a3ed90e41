"""The standalone emulator (`aioqwenimage emulator`) in a process of its own, for CLI tests."""

from __future__ import annotations

import contextlib
import select
import signal
import subprocess
import sys
from collections.abc import Iterator


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
