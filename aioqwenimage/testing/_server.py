"""
`FakeDashScope`: the emulator's lifecycle, its two listening hosts, and its routes.

The API host serves ``/api/v1`` and the ``/__emulator__/`` admin endpoints; the file host, on a
second port (another origin, like the real OSS host), serves result images. Both count the TCP
connections they accept by wrapping aiohttp's protocol factory.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from aioqwenimage._catalog import Protocol
from aioqwenimage._config import is_loopback
from aioqwenimage.testing._api import Handlers
from aioqwenimage.testing._config import EmulatorLimits, build_limits
from aioqwenimage.testing._engine import Engine
from aioqwenimage.testing._sites import CountingSite, QuietLogger
from aioqwenimage.testing._thread import EmulatorThread
from aioqwenimage.testing._wire import Endpoint, public

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from types import TracebackType

    from typing_extensions import Self

    from aioqwenimage import Client, SyncClient
    from aioqwenimage.testing._bodies import UnknownModels
    from aioqwenimage.testing._faults import Fault, Faults
    from aioqwenimage.testing._notify import NotificationTarget
    from aioqwenimage.testing._stats import Stats

__all__ = ["DEFAULT_API_KEY", "FakeDashScope", "fake_from_options"]

DEFAULT_API_KEY: Final = "sk-fake-aioqwenimage"
DEFAULT_MAX_BODY: Final = 48 * 1024 * 1024
_API: Final = "/api/v1"
_DOCUMENTED: Final = EmulatorLimits()
_SHUTDOWN_GRACE: Final = 0.25  # seconds held sync calls get before close() cuts them


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


@public
class FakeDashScope:
    """
    A local DashScope image-generation service, on 127.0.0.1.

    Use it as ``async with FakeDashScope() as fake:`` on the caller's event loop, or as
    ``with FakeDashScope() as fake:`` from synchronous code, which serves it from a background
    thread with its own loop. `client` gives a client pointed at it; `environ` the environment
    variables that point a ``Client()`` built elsewhere at it. Every option is keyword-only.

    Args:
        api_key: The one API key accepted.
        host: The address to bind: loopback only, unless `allow_remote`.
        port: The API port; 0 picks a free one.
        files_port: The file host's port; 0 picks a free one.
        time_scale: Real seconds per simulated second, for every duration, limit window,
            retention and URL lifetime (``0.001``: a simulated second lasts 1 ms). Reported
            timestamps stay real wall-clock times.
        seed: Seeds drawn durations and probabilistic faults.
        durations_by_prompt: Derive each duration from (seed, model, prompt), so two clients
            sending the same prompts meet the same durations.
        durations: Per model name (or ``"*"`` for all), the (low, high) simulated seconds of a
            generation; default the catalog's typical durations.
        limits: Account limits (default: the documented ones); ``None`` switches all off.
        retention: Simulated seconds a task stays queryable (24 h).
        url_ttl: Simulated seconds a result URL stays valid (24 h).
        faults: Faults armed from the start; see `faults` to change them while running.
        unknown_models: ``"resolve"`` serves names the catalog knows only by family prefix
            (new dated snapshots) with the family's rules; ``"reject"`` answers "Model not exist.".
        max_body_bytes: Larger request bodies get 413 ``BadRequest.TooLarge``.
        clock: The wall clock in epoch seconds (default `time.time`); tests may pass a fake one
            to step over retention and URL expiry.
        allow_remote: Permit a non-loopback `host`.
        notifications: Publish task-completion events there, as EventBridge would (see
            `notify` to set it while running).

    Raises:
        ValueError: An option is out of range, or `host` is not loopback.
    """

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        host: str = "127.0.0.1",
        port: int = 0,
        files_port: int = 0,
        time_scale: float = 1.0,
        seed: int = 0,
        durations_by_prompt: bool = False,
        durations: Mapping[str, tuple[float, float]] | None = None,
        limits: EmulatorLimits | None = _DOCUMENTED,
        retention: float = 86_400.0,
        url_ttl: float = 86_400.0,
        faults: Iterable[Fault] = (),
        unknown_models: UnknownModels = "resolve",
        max_body_bytes: int = DEFAULT_MAX_BODY,
        clock: Callable[[], float] = time.time,
        allow_remote: bool = False,
        notifications: NotificationTarget | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("api_key must not be empty")
        if not time_scale > 0:
            msg = f"time_scale must be positive, got {time_scale!r}"
            raise ValueError(msg)
        if not allow_remote and not is_loopback(host):
            msg = f"refusing to bind {host!r}: the emulator serves loopback only"
            raise ValueError(msg)
        for model, (low, high) in (durations or {}).items():
            if not 0 <= low <= high:
                msg = f"durations[{model!r}] must be (low, high) with 0 <= low <= high"
                raise ValueError(msg)
        if retention <= 0 or url_ttl <= 0 or max_body_bytes < 1:
            raise ValueError("retention, url_ttl and max_body_bytes must be positive")
        if unknown_models not in ("resolve", "reject"):
            msg = f"unknown_models must be 'resolve' or 'reject', got {unknown_models!r}"
            raise ValueError(msg)
        self._api_key = api_key
        self._host = host
        self._port = port
        self._files_port = files_port
        self._engine = Engine(
            time_scale=time_scale,
            seed=seed,
            durations_by_prompt=durations_by_prompt,
            durations=durations or {},
            limits=limits,
            retention=retention,
            url_ttl=url_ttl,
            unknown_models=unknown_models,
            clock=clock,
        )
        self._engine.faults.add(*faults)
        self._engine.publisher.target = notifications
        self._publishing: asyncio.Task[None] | None = None
        self._handlers = Handlers(self._engine, api_key=api_key, max_body_bytes=max_body_bytes)
        self._max_body = max_body_bytes
        self._state = _State.NEW
        self._runners: list[web.AppRunner] = []
        self._api_site: CountingSite | None = None
        self._files_site: CountingSite | None = None
        self._thread: EmulatorThread | None = None

    def __repr__(self) -> str:
        where = self.base_url if self._state is _State.RUNNING else self._state.value
        return (
            f"<FakeDashScope {where} time_scale={self._engine.time_scale:g} "
            f"tasks={len(self._engine.store)} in_flight={self._engine.store.in_flight}>"
        )

    # --- public surface ----------------------------------------------------------------------

    @property
    def api_key(self) -> str:
        """The API key the emulator accepts."""
        return self._api_key

    @property
    def base_url(self) -> str:
        """The API root, e.g. ``http://127.0.0.1:PORT/api/v1`` (running emulators only)."""
        return self._require(self._api_site) + _API

    @property
    def admin_url(self) -> str:
        """The root of the admin endpoints, ``http://127.0.0.1:PORT/__emulator__``."""
        return self._require(self._api_site) + "/__emulator__"

    @property
    def files_base_url(self) -> str:
        """The origin of result URLs: a different port than the API."""
        return self._require(self._files_site)

    @property
    def stats(self) -> Stats:
        """Live counters and the per-task report."""
        return self._engine.stats

    @property
    def faults(self) -> Faults:
        """The armed faults: ``fake.faults.add(Fault(...))``, ``fake.faults.clear()``."""
        return self._engine.faults

    @property
    def time_scale(self) -> float:
        """Real seconds per simulated second."""
        return self._engine.time_scale

    @property
    def environ(self) -> dict[str, str]:
        """
        The environment variables that point a ``Client()`` at this emulator, in its time.

        ``DASHSCOPE_API_KEY``, ``DASHSCOPE_HTTP_BASE_URL``, ``DASHSCOPE_REGION`` and
        ``AIOQWENIMAGE_TIME_SCALE`` (which clients honour for loopback API roots only).
        """
        limits = self._engine.limits
        return {
            "DASHSCOPE_API_KEY": self.api_key,
            "DASHSCOPE_HTTP_BASE_URL": self.base_url,
            "DASHSCOPE_REGION": limits.region if limits is not None else "singapore",
            "AIOQWENIMAGE_TIME_SCALE": repr(self.time_scale),
        }

    def client(self, **overrides: Any) -> Client:
        """
        A `Client` pointed at this emulator, in its compressed time (not yet opened).

        Args:
            overrides: Any `Client` option, replacing the emulator's key, URL or time scale.
        """
        from aioqwenimage import Client

        return Client(**self._client_options(overrides))

    def sync_client(self, **overrides: Any) -> SyncClient:
        """
        A `SyncClient` pointed at this emulator, in its compressed time.

        Args:
            overrides: Any `SyncClient` option, as for `client`.
        """
        from aioqwenimage import SyncClient

        return SyncClient(**self._client_options(overrides))

    def _client_options(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        options = {
            "api_key": self.api_key,
            "base_url": self.base_url,
            "time_scale": self.time_scale,
        }
        return options | dict(overrides)

    def notify(self, target: NotificationTarget | None) -> None:
        """Publish the ends of tasks started from now on to `target` (``None``: stop)."""
        self._engine.publisher.target = target

    def reset(self) -> None:
        """Forget every task and zero the stats; the configuration and armed faults stay."""
        if self._thread is not None:
            self._thread.call(self._engine.reset)
        else:
            self._engine.reset()

    def _require(self, site: CountingSite | None) -> str:
        if self._state is not _State.RUNNING or site is None:
            msg = f"the emulator is {self._state.value}, not running"
            raise RuntimeError(msg)
        return site.name

    # --- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def __enter__(self) -> Self:
        self.start_in_thread()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop_thread()

    def start_in_thread(self) -> None:
        """
        Start serving from a background thread with its own event loop; returns once serving.

        For synchronous code: tests that never run an event loop of their own, Django's
        ``setUpClass``. `stop_thread` (or leaving a ``with`` block) stops it.

        Raises:
            RuntimeError: Already started, or closed.
            OSError: A port could not be bound.
        """
        if self._state is not _State.NEW:
            msg = f"the emulator is {self._state.value}; an emulator starts once"
            raise RuntimeError(msg)
        self._thread = EmulatorThread(self)
        self._thread.start()

    def stop_thread(self) -> None:
        """Stop an emulator started by `start_in_thread` and end its thread. Idempotent."""
        if self._thread is not None:
            self._thread.stop()

    async def start(self) -> None:
        """
        Bind both hosts and start serving.

        Raises:
            RuntimeError: Already started, or closed.
            OSError: A port could not be bound.
        """
        if self._state is not _State.NEW:
            msg = f"the emulator is {self._state.value}; an emulator starts once"
            raise RuntimeError(msg)
        self._state = _State.RUNNING
        stats = self._engine.stats
        try:
            api = await self._runner(self._api_app())
            self._api_site = CountingSite(api, self._host, self._port, stats.count_connection)
            await self._api_site.start()
            files = await self._runner(self._files_app())
            self._files_site = CountingSite(
                files, self._host, self._files_port, stats.count_file_connection
            )
            await self._files_site.start()
        except BaseException:
            await self.close()
            raise
        self._engine.files_base_url = self._files_site.name
        self._publishing = asyncio.get_running_loop().create_task(self._engine.publisher.run())

    async def close(self) -> None:
        """Stop serving and release every socket; held synchronous calls are cut. Idempotent."""
        if self._thread is not None and not self._thread.in_loop():
            # Served from its own thread: its sockets belong to that loop, not the caller's.
            await asyncio.to_thread(self._thread.stop)
            return
        self._state = _State.CLOSED
        publishing, self._publishing = self._publishing, None
        if publishing is not None:
            publishing.cancel()
            await asyncio.gather(publishing, return_exceptions=True)
        runners, self._runners = self._runners, []
        for runner in runners:
            await runner.cleanup()

    async def _runner(self, app: web.Application) -> web.AppRunner:
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=_SHUTDOWN_GRACE,
            logger=QuietLogger(logging.getLogger("aioqwenimage.testing.server"), {}),
        )
        await runner.setup()
        self._runners.append(runner)
        return runner

    def _api_app(self) -> web.Application:
        h = self._handlers
        app = web.Application(client_max_size=self._max_body)
        get = ("GET",)
        routes: list[tuple[str, Any]] = [
            (
                f"{_API}/services/aigc/text2image/image-synthesis",
                h.guard(Endpoint.CREATE, h.create(Protocol.TEXT2IMAGE)),
            ),
            (
                f"{_API}/services/aigc/image-generation/generation",
                h.guard(Endpoint.CREATE, h.create(Protocol.IMAGE_GENERATION)),
            ),
            (
                f"{_API}/services/aigc/multimodal-generation/generation",
                h.guard(Endpoint.SYNC, h.sync),
            ),
            (f"{_API}/tasks", h.guard(Endpoint.LIST, h.list_tasks, methods=get)),
            (f"{_API}/tasks/", h.guard(Endpoint.LIST, h.list_tasks, methods=get)),
            (f"{_API}/tasks/{{task_id}}", h.guard(Endpoint.QUERY, h.query, methods=get)),
            (f"{_API}/tasks/{{task_id}}/", h.guard(Endpoint.QUERY, h.query, methods=get)),
            (f"{_API}/tasks/{{task_id}}/cancel", h.guard(Endpoint.CANCEL, h.cancel)),
            ("/__emulator__/stats", h.guard(Endpoint.ADMIN, h.admin_stats, methods=get)),
            (
                "/__emulator__/faults",
                h.guard(Endpoint.ADMIN, h.admin_faults, methods=("GET", "POST", "DELETE")),
            ),
            ("/__emulator__/reset", h.guard(Endpoint.ADMIN, h.admin_reset)),
            (
                "/{tail:.*}",
                h.guard(
                    Endpoint.OTHER,
                    h.not_found,
                    methods=("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"),
                ),
            ),
        ]
        for path, handler in routes:
            app.router.add_route("*", path, handler)
        return app

    def _files_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{key:.+}", self._handlers.file)
        return app


def fake_from_options(options: Mapping[str, Any], *, time_scale: float) -> FakeDashScope:
    """
    An emulator from loose options: `FakeDashScope` keywords plus two shortcuts.

    ``over_cap="queue"|"reject"`` sets `EmulatorLimits.over_cap`; ``no_limits=True`` (or
    ``limits=None``) switches every limit off. `time_scale` is the default when none is given.
    Used by the pytest marker and the command line.
    """
    kwargs = dict(options)
    limits = kwargs.pop("limits", EmulatorLimits())
    no_limits = bool(kwargs.pop("no_limits", False)) or limits is None
    over_cap = kwargs.pop("over_cap", None)
    kwargs.setdefault("time_scale", time_scale)
    return FakeDashScope(
        limits=build_limits(limits, over_cap=over_cap, no_limits=no_limits), **kwargs
    )
