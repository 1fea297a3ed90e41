"""
``batch --coordinator URL``: the batch shares the account's limits with other processes.

With a Redis URL (or ``$AIOQWENIMAGE_COORDINATOR``) the batch's client gets a
`aioqwenimage.redis.RedisCoordinator`, so that several batches (``--shard`` workers on one or
more machines) and any other client on the same key keep to the account's limits together. The
coordinator comes from the ``redis`` extra; it is imported only when the flag is given, and its
absence is a usage error before anything is sent. The URL may carry a password: it is never
printed.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import argparse

    from aioqwenimage.redis import RedisCoordinator

__all__ = ["COORDINATOR_VARIABLE", "make_coordinator", "resolve_coordinator"]

COORDINATOR_VARIABLE: Final = "AIOQWENIMAGE_COORDINATOR"
_SCHEMES: Final = ("redis://", "rediss://", "unix://")
_EXTRA: Final = "pip install 'aioqwenimage[redis]'"


def resolve_coordinator(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """
    The coordinator's URL (``None``: this process keeps its own limits), or why it cannot work.

    Returns:
        ``(url, None)``, or ``(None, message)`` for a usage error.
    """
    if not hasattr(args, "coordinator"):  # a command without the flag ignores the variable too
        return None, None
    url = args.coordinator or os.environ.get(COORDINATOR_VARIABLE) or None
    if url is None:
        return None, None
    where = "--coordinator" if args.coordinator else f"${COORDINATOR_VARIABLE}"
    if not url.lower().startswith(_SCHEMES):
        # Not echoed: a Redis URL may hold a password.
        return None, f"{where} wants a redis://, rediss:// or unix:// URL"
    try:
        import aioqwenimage.redis  # noqa: F401 - the extra, only when asked for
    except ImportError as exc:
        if not (exc.name or "").startswith("redis"):
            raise
        return None, f"{where} needs the redis extra: {_EXTRA}"
    return url, None


def make_coordinator(url: str) -> RedisCoordinator:
    """A coordinator for `url` (checked by `resolve_coordinator`)."""
    from aioqwenimage.redis import RedisCoordinator

    return RedisCoordinator(url)
