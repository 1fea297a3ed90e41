"""
The ``aioqwenimage`` logger, and ``$AIOQWENIMAGE_LOG`` to see it without writing logging setup.

A library must not configure logging for its application, so nothing here runs unless asked: by
the environment variable (the way ``OPENAI_LOG`` works for the openai client), or by a command line
tool. What each level shows is a promise documented in ``docs/production.md``: request lines at
DEBUG (never a header, so never the key), retries and throttling at INFO, anomalies at WARNING.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Final

__all__ = ["ENV_VARIABLE", "LEVELS", "configure", "configure_from_env", "logger"]

logger: Final = logging.getLogger("aioqwenimage")

ENV_VARIABLE: Final = "AIOQWENIMAGE_LOG"
LEVELS: Final = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Ours, so that configuring twice replaces it instead of printing every line twice."""

    def emit(self, record: logging.LogRecord) -> None:
        # Looked up per record (under the handler's lock): a redirected sys.stderr is honoured.
        self.stream = sys.stderr
        super().emit(record)


def configure(level: int) -> None:
    """Show the ``aioqwenimage`` logger's records from `level` up on standard error."""
    for handler in [h for h in logger.handlers if isinstance(h, _Handler)]:
        logger.removeHandler(handler)
    handler = _Handler()
    handler.setFormatter(logging.Formatter(_FORMAT))
    logger.addHandler(handler)
    logger.setLevel(level)


def configure_from_env() -> None:
    """Apply ``$AIOQWENIMAGE_LOG`` (``debug``, ``info`` or ``warning``) if it is set."""
    value = os.environ.get(ENV_VARIABLE, "").strip()
    if not value:
        return
    level = LEVELS.get(value.lower())
    if level is None:
        # A warning, not an exception: a typo in a debugging switch must not break the import.
        choices = ", ".join(LEVELS)
        warnings.warn(
            f"${ENV_VARIABLE}={value!r} is not one of {choices}; ignored",
            RuntimeWarning,
            stacklevel=2,
        )
        return
    configure(level)
