"""The standalone emulator (``aioqwenimage emulator``) and the pytest plugin (fixture, marker)."""

from __future__ import annotations

import json
import select
import signal
import socket
import subprocess
import sys
import textwrap
import urllib.request
from typing import TYPE_CHECKING

import pytest

from aioqwenimage._cli import build_parser, main
from aioqwenimage.testing import EmulatorLimits, FakeDashScope, ModelQuota

if TYPE_CHECKING:
    from pathlib import Path

E1 = "/services/aigc/text2image/image-synthesis"


def _start(*flags: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "aioqwenimage", "emulator", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 30)
    line = process.stdout.readline() if ready else ""
    return process, dict(part.split("=", 1) for part in line.split())


def _get(url: str, key: str | None = None) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url)  # noqa: S310 - a loopback http URL we just printed
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_cli_serves_until_a_signal_then_exits_0(stop: signal.Signals):
    """The command prints base URL and key on one line, serves, and stops cleanly."""
    process, env = _start("--time-scale", "0.001", "--seed", "3", "--api-key", "sk-cli")
    try:
        base = env["DASHSCOPE_HTTP_BASE_URL"]
        assert ("sk-cli", True) == (env["DASHSCOPE_API_KEY"], base.startswith("http://127.0.0.1:"))
        assert 401 == _get(f"{base}/tasks/x")[0]
        assert (200, "UNKNOWN") == (
            _get(f"{base}/tasks/x", "sk-cli")[0],
            _get(f"{base}/tasks/x", "sk-cli")[1]["output"]["task_status"],  # type: ignore[index]
        )
        status, stats = _get(base.replace("/api/v1", "/__emulator__/stats"))
        assert (200, 1) == (status, stats["requests"]["query"]["401"])  # type: ignore[index]
    finally:
        process.send_signal(stop)
        _, err = process.communicate(timeout=20)
    assert (0, "") == (process.returncode, err)


def test_cli_flags_reach_the_emulator():
    """--no-limits, --over-cap and --region are parsed into the run's options."""
    args = build_parser().parse_args(
        ["emulator", "--no-limits", "--over-cap", "reject", "--region", "beijing", "--port", "9"]
    )
    assert (True, "reject", "beijing", 9, 1.0) == (
        args.no_limits,
        args.over_cap,
        args.region,
        args.port,
        args.time_scale,
    )


def test_cli_refuses_a_public_bind(capsys: pytest.CaptureFixture[str]):
    """A non-loopback --host without --force-host exits 1 with a message."""
    assert 1 == main(["emulator", "--host", "0.0.0.0"])  # noqa: S104 - refused
    assert "loopback only" in capsys.readouterr().err


def test_cli_reports_a_busy_port(capsys: pytest.CaptureFixture[str]):
    """A port that cannot be bound exits 1 with a message, not a traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert 1 == main(["emulator", "--port", str(port)])
    assert "cannot start" in capsys.readouterr().err


# --- the pytest plugin -----------------------------------------------------------------------


async def test_fixture_defaults_to_compressed_time(fake_dashscope: FakeDashScope):
    """The fake_dashscope fixture is a running emulator at time_scale 0.01."""
    assert (0.01, True) == (
        fake_dashscope.time_scale,
        fake_dashscope.base_url.startswith("http://127.0.0.1:"),
    )


@pytest.mark.fake_dashscope(
    time_scale=0.001,
    over_cap="reject",
    limits=EmulatorLimits(models={"wan2.2-t2i-flash": ModelQuota(submits=None)}),
    # Long enough (1 s) that the first two tasks are still in flight on a loaded machine.
    durations={"wan2.2-t2i-flash": (1000, 1000)},
)
async def test_marker_configures_the_fixture(fake_dashscope: FakeDashScope):
    """The marker's options (and its over_cap shortcut) configure the emulator."""
    import aiohttp

    headers = {"Authorization": f"Bearer {fake_dashscope.api_key}", "X-DashScope-Async": "enable"}
    body = {"model": "wan2.2-t2i-flash", "input": {"prompt": "x"}, "parameters": {"n": 1}}
    async with aiohttp.ClientSession() as session:
        statuses = []
        for _ in range(3):
            async with session.post(fake_dashscope.base_url + E1, json=body, headers=headers) as r:
                statuses.append(r.status)
    assert ([200, 200, 429], 0.001) == (statuses, fake_dashscope.time_scale)


@pytest.mark.fake_dashscope(no_limits=True)
async def test_marker_can_switch_limits_off(fake_dashscope: FakeDashScope):
    """no_limits=True in the marker switches every limit off."""
    assert fake_dashscope._engine.limits is None


def test_plugin_works_through_its_entry_point_in_strict_mode(tmp_path: Path):
    """Installed, the plugin serves the fixture under pytest-asyncio's strict mode too."""
    (tmp_path / "test_user.py").write_text(
        textwrap.dedent(
            """
            import pytest

            @pytest.mark.asyncio
            @pytest.mark.fake_dashscope(time_scale=0.5)
            async def test_it(fake_dashscope):
                assert 0.5 == fake_dashscope.time_scale
            """
        )
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter and pytest
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "asyncio_mode=strict",
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
    assert (0, True) == (result.returncode, "1 passed" in result.stdout)
