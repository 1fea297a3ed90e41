"""
Flags shared by the commands, and the client (or in-process emulator plus client) they describe.

Three groups: generation defaults (``generate``, ``batch``), connection (key, base URL, region,
workspace) and limits (in flight, submissions and queries per second, the client's time scale).
``--emulator`` replaces the connection with a `FakeDashScope` in this process, in compressed time,
with its limits matched to the client's, so every command works offline.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import tempfile
from typing import TYPE_CHECKING, Any, Final

import attrs

from aioqwenimage._cli._coordinator import make_coordinator, resolve_coordinator
from aioqwenimage._cli._notify import NotifyListen, resolve_notify
from aioqwenimage._config import resolve_key
from aioqwenimage._errors import QwenImageError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable, Mapping
    from pathlib import Path

    from aioqwenimage import Client, EventHook, Limits
    from aioqwenimage.testing import EmulatorLimits

__all__ = [
    "DEFAULT_MODEL",
    "EMULATOR_TIME_SCALE",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_STORAGE",
    "EXIT_USAGE",
    "Connection",
    "add_connection_options",
    "add_generation_options",
    "check_output_dir",
    "connect",
    "error",
    "generation_defaults",
    "missing_key_message",
    "note",
    "resolve_connection",
    "say",
]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_STORAGE: Final = 3
"""The journal or the output directory cannot be used: damaged, untrusted, full, unwritable."""
EXIT_INTERRUPTED: Final = 130  # 128 + SIGINT, what shells report for Ctrl-C

DEFAULT_MODEL: Final = "qwen-image-plus"
EMULATOR_TIME_SCALE: Final = 0.01
"""``--emulator`` runs a hundred times faster than the real service unless told otherwise."""


def say(line: object) -> None:
    """Print a result line to stdout (what scripts read)."""
    sys.stdout.write(f"{line}\n")
    sys.stdout.flush()


def note(line: object) -> None:
    """Print a diagnostic line to stderr."""
    sys.stderr.write(f"{line}\n")
    sys.stderr.flush()


def error(message: str) -> None:
    """Print one error line to stderr, the way argparse does."""
    note(f"aioqwenimage: error: {message}")


def missing_key_message() -> str:
    """The one line that tells how to provide a key."""
    return (
        "no API key: set the DASHSCOPE_API_KEY environment variable or pass --api-key "
        "(or add --emulator to run offline against a local emulator)"
    )


# --- flags ---------------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        msg = f"expected a positive integer, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if value < 1:
        msg = f"expected a positive integer, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        msg = f"expected a positive number, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def add_generation_options(parser: argparse.ArgumentParser, *, batch: bool) -> None:
    """The generation flags: model, size, n, seed, negative prompt, prompt extend, watermark."""
    title = "generation defaults (an item's own values win)" if batch else "generation"
    group = parser.add_argument_group(title)
    group.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"the model; default: {DEFAULT_MODEL}"
    )
    group.add_argument("--size", metavar="WxH", help="output size, e.g. 1328x1328 (or 1328*1328)")
    group.add_argument("-n", "--n", dest="n", type=_positive_int, help="images per request")
    group.add_argument("--seed", type=int, help="seed in [0, 2147483647]")
    group.add_argument("--negative-prompt", metavar="TEXT", help="what to avoid")
    group.add_argument(
        "--prompt-extend",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="let the service rewrite the prompt (the service's default: on)",
    )
    group.add_argument(
        "--watermark",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="add the model's watermark (the service's default: off)",
    )


def generation_defaults(args: argparse.Namespace) -> dict[str, Any]:
    """The generation flags that were given, as `Client.submit` keywords."""
    values = {
        "size": args.size,
        "n": args.n,
        "seed": args.seed,
        "negative_prompt": args.negative_prompt,
        "prompt_extend": args.prompt_extend,
        "watermark": args.watermark,
    }
    return {key: value for key, value in values.items() if value is not None}


_ALL_LIMITS: Final = ("in_flight", "submits_per_second", "queries_per_second", "time_scale")


def add_connection_options(
    parser: argparse.ArgumentParser,
    *,
    limits: tuple[str, ...] = _ALL_LIMITS,
    emulator: bool = True,
) -> None:
    """
    Connection, limits and ``--emulator`` flags.

    Args:
        parser: The command's parser.
        limits: The limit flags that do something for this command (the others are not offered).
        emulator: Whether ``--emulator`` is offered; when not, the flag is refused with `why`.
    """
    group = parser.add_argument_group("connection")
    group.add_argument("--api-key", help="DashScope API key; default: $DASHSCOPE_API_KEY")
    group.add_argument(
        "--base-url",
        help="API root incl. /api/v1; default: $DASHSCOPE_HTTP_BASE_URL, else the region's host",
    )
    group.add_argument(
        "--region",
        help="singapore, beijing or virginia; default: $DASHSCOPE_REGION, else singapore",
    )
    group.add_argument("--workspace", help="workspace id, sent as X-DashScope-WorkSpace")
    if emulator:
        group.add_argument(
            "--emulator",
            action="store_true",
            help=(
                "run offline against a local emulator started in this process, in compressed "
                f"time (--time-scale, default {EMULATOR_TIME_SCALE:g}); no key needed"
            ),
        )
    else:
        group.add_argument("--emulator", action=_NoEmulator, nargs=0, help=argparse.SUPPRESS)
    parser.set_defaults(emulator=False, **dict.fromkeys(_ALL_LIMITS))
    if not limits:
        return
    group = parser.add_argument_group("limits (for accounts with raised quotas)")
    if "in_flight" in limits:
        group.add_argument(
            "--in-flight",
            type=_positive_int,
            metavar="N",
            help="tasks of each model in flight at once; default: the documented limit (e.g. 2)",
        )
    if "submits_per_second" in limits:
        group.add_argument(
            "--submits-per-second",
            type=_positive_float,
            metavar="R",
            help="task submissions per second for each model; default: the documented limit",
        )
    if "queries_per_second" in limits:
        group.add_argument(
            "--queries-per-second",
            type=_positive_float,
            metavar="Q",
            help="task queries (polls, lists, cancels) per second, all models; default: 15 of 20",
        )
    if "time_scale" in limits:
        group.add_argument(
            "--time-scale",
            type=_positive_float,
            metavar="X",
            help=(
                "for emulators only: multiply every delay the client waits for (poll schedule, "
                "rate windows, backoffs) by X to match an emulator's compressed time; default 1"
                + (f" ({EMULATOR_TIME_SCALE:g} with --emulator)" if emulator else "")
                + ". Never set it against the real service"
            ),
        )


class _NoEmulator(argparse.Action):
    """``--emulator`` where an emulator started for the command could not hold anything."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object, **__: object) -> None:
        parser.error(
            "--emulator is not available here: an emulator started for one command has no tasks "
            "to list, show or cancel. Serve one with `aioqwenimage emulator` and point "
            "--base-url and --api-key (or DASHSCOPE_HTTP_BASE_URL and DASHSCOPE_API_KEY) at it"
        )


# --- resolving -----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Connection:
    """What the connection flags resolve to."""

    emulator: bool
    api_key: str | None
    base_url: str | None
    region: str | None
    workspace: str | None
    time_scale: float
    in_flight: int | None
    submits_per_second: float | None
    queries_per_second: float | None
    notify: NotifyListen | None = None  # --notify-listen: completions from EventBridge
    # --coordinator: the Redis URL the account's limits are shared through (it may hold a
    # password, so it is never shown)
    coordinator: str | None = attrs.field(default=None, repr=False)

    @property
    def target(self) -> str:
        """Where tasks live: ``"emulator"``, or the API root (tasks are per region and account)."""
        if self.emulator:
            return "emulator"
        from aioqwenimage._config import resolve_base_url, resolve_region

        return resolve_base_url(self.base_url, resolve_region(self.region))


def resolve_connection(args: argparse.Namespace) -> Connection | str:
    """
    The connection the flags describe, or the message of why they cannot work.

    Checked before anything is sent: the key, the region and the base URL.
    """
    from aioqwenimage._config import resolve_base_url, resolve_region

    emulator = bool(args.emulator)
    if not emulator and resolve_key(args.api_key) is None:
        return missing_key_message()
    try:
        region = resolve_region(args.region)
        if not emulator:
            resolve_base_url(args.base_url, region)
    except (ValueError, QwenImageError) as exc:
        return str(exc)
    scale = args.time_scale or (EMULATOR_TIME_SCALE if emulator else 1.0)
    notify = resolve_notify(args)
    if isinstance(notify, str):
        return notify
    coordinator, problem = resolve_coordinator(args)
    if problem is not None:
        return problem
    return Connection(
        emulator=emulator,
        api_key=args.api_key,
        base_url=args.base_url,
        region=args.region,
        workspace=args.workspace,
        time_scale=scale,
        in_flight=args.in_flight,
        submits_per_second=args.submits_per_second,
        queries_per_second=args.queries_per_second,
        notify=notify,
        coordinator=coordinator,
    )


def client_limits(connection: Connection, models: Iterable[str]) -> Limits:
    """The client's limits: the documented ones, with the flags applied to every model used."""
    from aioqwenimage import Limits, ModelLimits

    overrides: dict[str, ModelLimits] = {}
    if connection.in_flight is not None or connection.submits_per_second is not None:
        per_model = ModelLimits(
            in_flight=connection.in_flight, submits_per_second=connection.submits_per_second
        )
        overrides = dict.fromkeys(models, per_model)
    if connection.queries_per_second is not None:
        return Limits(queries_per_second=connection.queries_per_second, models=overrides)
    return Limits(models=overrides)


def emulator_limits(connection: Connection, models: Iterable[str]) -> EmulatorLimits:
    """The in-process emulator's limits: the documented ones, raised where the flags raise ours."""
    from aioqwenimage._config import resolve_region
    from aioqwenimage._settings import rate_window
    from aioqwenimage.testing import EmulatorLimits, ModelQuota

    quotas: dict[str, Any] = {}
    if connection.in_flight is not None or connection.submits_per_second is not None:
        fields: dict[str, Any] = {}
        if connection.in_flight is not None:
            fields["in_flight"] = connection.in_flight
        if connection.submits_per_second is not None:
            fields["submits"], fields["period"] = rate_window(connection.submits_per_second)
        quotas = dict.fromkeys(models, ModelQuota(**fields))
    queries = 20
    if connection.queries_per_second is not None:
        queries = max(queries, math.ceil(connection.queries_per_second))
    return EmulatorLimits(
        region=resolve_region(connection.region), task_queries_per_second=queries, models=quotas
    )


@contextlib.asynccontextmanager
async def connect(
    connection: Connection,
    *,
    models: Iterable[str] = (),
    event_hooks: Iterable[EventHook] = (),
    seed: int | None = None,
) -> AsyncIterator[Client]:
    """
    An open client for `connection` (and its emulator, with ``--emulator``).

    Args:
        connection: The resolved flags.
        models: The models the command will use, which the limit flags apply to.
        event_hooks: Passed to the client.
        seed: Seeds the client's jitter (and the emulator), for reproducible runs.
    """
    from aioqwenimage import Client, Notifications

    models = tuple(dict.fromkeys(models))
    limits = client_limits(connection, models)
    notify = connection.notify
    notifications = None if notify is None else Notifications(token=notify.token)
    # Passed only when asked for, so that a client without it keeps its limits in this process.
    shared: dict[str, Any] = {}
    if connection.coordinator is not None:
        shared["coordinator"] = make_coordinator(connection.coordinator)
    async with contextlib.AsyncExitStack() as stack:
        if connection.emulator:
            from aioqwenimage.testing import FakeDashScope

            fake = await stack.enter_async_context(
                FakeDashScope(
                    time_scale=connection.time_scale,
                    seed=seed or 0,
                    limits=emulator_limits(connection, models),
                )
            )
            client = Client(
                api_key=fake.api_key,
                base_url=fake.base_url,
                limits=limits,
                time_scale=connection.time_scale,
                event_hooks=event_hooks,
                seed=seed,
                notifications=notifications,
                **shared,
            )
        else:
            client = Client(
                api_key=connection.api_key,
                base_url=connection.base_url,
                region=connection.region,
                workspace=connection.workspace,
                limits=limits,
                time_scale=connection.time_scale,
                event_hooks=event_hooks,
                seed=seed,
                notifications=notifications,
                **shared,
            )
        opened = await stack.enter_async_context(client)
        if shared:
            note("sharing the account's limits with other processes through Redis")
        if notify is not None and notifications is not None:
            url = await stack.enter_async_context(notifications.listen(notify.host, notify.port))
            note(f"receiving completion notifications at {url}")
            if connection.emulator:  # the emulator publishes its tasks' ends there
                from aioqwenimage.testing import NotificationTarget

                fake.notify(NotificationTarget(url=url, token=notify.token, latency=(0.0, 0.5)))
        yield opened


def check_output_dir(directory: Path) -> str | None:
    """
    Make sure `directory` exists and takes files; the reason it does not, else ``None``.

    Checked before the first submission, so no image is paid for that could not be saved.
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".aioqwenimage-probe-"):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return f"cannot write to the output directory {str(directory)!r}: {reason}"
    if not os.access(directory, os.W_OK | os.X_OK):  # pragma: no cover - caught by the probe
        return f"cannot write to the output directory {str(directory)!r}"
    return None


def describe_models(models: Mapping[str, int]) -> str:
    """``qwen-image-plus`` or ``qwen-image-plus (480), wan2.2-t2i-flash (20)``."""
    if len(models) == 1:
        return next(iter(models))
    return ", ".join(f"{model} ({count})" for model, count in models.items())
