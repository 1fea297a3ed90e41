"""``batch --notify-listen``: a batch learns its tasks' ends from completion events."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DASHSCOPE_")}
    environment.update(env or {})
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "aioqwenimage", *args],
        capture_output=True,
        text=True,
        timeout=90,
        env=environment,
        check=False,
    )


def test_a_batch_receives_the_emulators_events(tmp_path: Path):
    """With --emulator, the emulator publishes to the batch's listener; each event is used."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("a fox\na cat\na heron\n")
    token = "a-token-from-the-environment"
    result = cli(
        "batch",
        str(prompts),
        "--out",
        str(tmp_path / "out"),
        "--emulator",
        "--plain",
        "--notify-listen",
        "127.0.0.1:0",
        env={"AIOQWENIMAGE_NOTIFY_TOKEN": token, "AIOQWENIMAGE_LOG": "debug"},
    )
    assert 0 == result.returncode, result.stderr
    assert "receiving completion notifications at http://127.0.0.1:" in result.stderr
    # Polls may still see a task first (10 ms simulated seconds on a loaded machine): at least
    # one of the three is learned from its event.
    assert 1 <= result.stderr.count("notified task=")
    assert token not in result.stderr + result.stdout


def test_notification_flags_are_checked(tmp_path: Path):
    """A malformed address, a missing token, or a token alone: usage errors, nothing sent."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("a fox\n")
    base = ["batch", str(prompts), "--out", str(tmp_path / "out"), "--emulator"]
    for flags, message in [
        (["--notify-listen", "8080"], "wants HOST:PORT"),
        (["--notify-listen", "[::1]:99999"], "wants HOST:PORT"),
        (["--notify-listen", "127.0.0.1:8080"], "needs the target's token"),
        (["--notify-token", "abc"], "needs --notify-listen"),
    ]:
        result = cli(*base, *flags)
        assert 2 == result.returncode, (flags, result.stderr)
        assert message in result.stderr
