"""The `aioqwenimage` logger: what each level shows, and `$AIOQWENIMAGE_LOG` to switch it on."""

from __future__ import annotations

import logging
import os
import re
import sys

import anyio
import pytest

from aioqwenimage import _logging
from aioqwenimage.testing import Fault, FaultKind
from tests.conftest import make_client


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "aioqwenimage" and r.levelno == level
    ]


@pytest.fixture
def restore_logger():
    """Whatever a test configures on the package logger is undone after it."""
    logger = logging.getLogger("aioqwenimage")
    handlers, level = list(logger.handlers), logger.level
    yield logger
    logger.handlers[:] = handlers
    logger.setLevel(level)


async def test_debug_shows_request_lines_without_the_key(fake, caplog):
    """DEBUG has one line per API request and download; no key, no download signature."""
    caplog.set_level(logging.DEBUG, logger="aioqwenimage")
    async with make_client(fake) as client:
        result = await client.generate("a fox", model="qwen-image-plus")
        await result.images[0].read()

    debug = records(caplog, logging.DEBUG)
    assert any(
        re.search(r"^POST http://\S+/image-synthesis -> 200 \(request id ", m) for m in debug
    )
    assert any(re.search(r"^GET http://\S+/tasks/\S+ -> 200", m) for m in debug)
    (download,) = [m for m in debug if m.startswith("GET") and "/api/v1/" not in m]
    assert "?" not in download
    assert fake.api_key not in caplog.text
    assert "Signature" not in caplog.text


@pytest.mark.parametrize(
    ("fault", "event"), [(FaultKind.THROTTLE, "throttled"), (FaultKind.INTERNAL_ERROR, "retried")]
)
async def test_info_shows_throttling_and_retries_but_no_request_lines(fake, caplog, fault, event):
    """INFO reports a throttled or retried poll, and leaves request lines to DEBUG."""
    caplog.set_level(logging.INFO, logger="aioqwenimage")
    fake.faults.add(Fault(kind=fault, endpoints="query", times=1))
    async with make_client(fake) as client:
        await client.generate("a fox", model="qwen-image-plus")

    assert [event] == [m.split(" ")[0] for m in records(caplog, logging.INFO)]
    assert [] == records(caplog, logging.DEBUG)


async def test_info_shows_retries_of_idempotent_calls(fake, caplog):
    """A list call retried after a 500 says so at INFO, with the attempt and the delay."""
    caplog.set_level(logging.INFO, logger="aioqwenimage")
    fake.faults.add(Fault(kind=FaultKind.INTERNAL_ERROR, endpoints="list", times=1))
    async with make_client(fake) as client:
        [task async for task in client.list_tasks()]

    assert any(
        re.fullmatch(r"GET /tasks: HTTP 500; retry 1 of \d+ in [\d.]+ s", m)
        for m in records(caplog, logging.INFO)
    )


async def test_warning_shows_a_malformed_answer(fake, caplog):
    """A 200 whose body is not JSON is an anomaly: WARNING, with the request it answered."""
    caplog.set_level(logging.WARNING, logger="aioqwenimage")
    fake.faults.add(Fault(kind=FaultKind.MALFORMED, endpoints="query", times=1))
    async with make_client(fake) as client:
        await client.generate("a fox", model="qwen-image-plus")

    (warning,) = records(caplog, logging.WARNING)
    assert re.match(r"GET http://\S+/tasks/\S+ answered 200 with a body that is not JSON", warning)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("debug", logging.DEBUG), ("INFO", logging.INFO), (" warning ", logging.WARNING)],
)
def test_the_switch_sets_the_level_and_one_handler(monkeypatch, restore_logger, value, expected):
    """$AIOQWENIMAGE_LOG sets the level and one handler, however often it is applied."""
    monkeypatch.setenv("AIOQWENIMAGE_LOG", value)

    _logging.configure_from_env()
    _logging.configure_from_env()

    assert expected == restore_logger.level
    assert 1 == sum(isinstance(h, _logging._Handler) for h in restore_logger.handlers)


def test_an_unknown_switch_value_warns_and_changes_nothing(monkeypatch, restore_logger):
    """A typo in $AIOQWENIMAGE_LOG is a RuntimeWarning naming the choices, not a crash."""
    monkeypatch.setenv("AIOQWENIMAGE_LOG", "verbose")

    with pytest.warns(RuntimeWarning, match="'verbose' is not one of debug, info, warning"):
        _logging.configure_from_env()

    assert restore_logger.handlers == [
        h for h in restore_logger.handlers if not isinstance(h, _logging._Handler)
    ]


async def test_the_switch_works_at_import_in_a_fresh_process(fake):
    """A program run with AIOQWENIMAGE_LOG=debug prints request lines on stderr, never the key."""
    script = (
        "import asyncio, aioqwenimage\n"
        "async def main():\n"
        f"    async with aioqwenimage.Client(api_key={fake.api_key!r}, base_url={fake.base_url!r})"
        " as client:\n"
        "        [t async for t in client.list_tasks()]\n"
        "asyncio.run(main())\n"
    )
    env = {**os.environ, "AIOQWENIMAGE_LOG": "debug"}

    # The emulator answers from this test's loop, so the child is awaited, not waited for.
    run = await anyio.run_process([sys.executable, "-c", script], env=env, check=False)
    stderr = run.stderr.decode()

    assert 0 == run.returncode, stderr
    assert re.search(r"DEBUG aioqwenimage: GET http://\S+/tasks\S* -> 200", stderr)
    assert fake.api_key not in stderr
