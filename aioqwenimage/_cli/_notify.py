"""
``--notify-listen HOST:PORT`` and ``--notify-token``: a batch learns completions from EventBridge.

With both flags the batch's client gets a `Notifications` receiver, served on HOST:PORT for the
length of the job (``Notifications.listen``); EventBridge's HTTP target points there (through
TLS on a public address). The token comes from ``--notify-token`` or, so that it stays out of the
process list, ``$AIOQWENIMAGE_NOTIFY_TOKEN``. With ``--emulator`` the in-process emulator publishes
its tasks' ends to the listener, so the whole path runs offline.
"""

from __future__ import annotations

import argparse
import os
from typing import Final

import attrs

__all__ = ["TOKEN_VARIABLE", "NotifyListen", "add_notify_options", "resolve_notify"]

TOKEN_VARIABLE: Final = "AIOQWENIMAGE_NOTIFY_TOKEN"  # noqa: S105 - a variable's name


@attrs.frozen(kw_only=True)
class NotifyListen:
    """Where the receiver listens, and the token EventBridge sends (never shown)."""

    host: str
    port: int
    token: str = attrs.field(repr=False)


def add_notify_options(parser: argparse.ArgumentParser) -> None:
    """The notification flags (``batch`` only: a single generation gains nothing from them)."""
    group = parser.add_argument_group("completion notifications (EventBridge)")
    group.add_argument(
        "--notify-listen",
        metavar="HOST:PORT",
        help="receive task-completion events from EventBridge's HTTP target on HOST:PORT for "
        "the length of the job; polling becomes the fallback",
    )
    group.add_argument(
        "--notify-token",
        metavar="TOKEN",
        help=f"the HTTP target's fixed token; default: ${TOKEN_VARIABLE}",
    )


def _address(text: str) -> tuple[str, int] | None:
    host, _, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:  # noqa: PLR2004
        return None
    return host, int(port)


def resolve_notify(args: argparse.Namespace) -> NotifyListen | str | None:
    """The listener the flags describe, ``None`` without ``--notify-listen``, or why not."""
    listen = getattr(args, "notify_listen", None)
    token = getattr(args, "notify_token", None) or os.environ.get(TOKEN_VARIABLE)
    if listen is None:
        return (
            "--notify-token needs --notify-listen" if getattr(args, "notify_token", None) else None
        )
    address = _address(listen)
    if address is None:
        return f"--notify-listen wants HOST:PORT (e.g. 0.0.0.0:8080), got {listen!r}"
    if not token:
        return f"--notify-listen needs the target's token: --notify-token or ${TOKEN_VARIABLE}"
    return NotifyListen(host=address[0], port=address[1], token=token)
