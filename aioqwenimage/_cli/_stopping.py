"""
Whether the batch still submits, and why not: Ctrl-C, a refusal that holds for every item, storage.

Three things stop submissions, each for its own reason, and each must let the items that wait
for the limits go without sending them: so the flag, the reason the summary gives for the items
not sent, and the cancellable admissions live in one object, shared by the runner (which stops)
and the submissions (which check it right before a create leaves).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Final

import anyio
import attrs

from aioqwenimage._cli._database import JournalError
from aioqwenimage._errors import AuthenticationError, PermissionDeniedError, QuotaExceededError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from aioqwenimage._errors import QwenImageError

__all__ = ["FATAL", "STORAGE", "Admission", "StoppedError", "Stopping", "describe_storage"]

# Refused for every item alike: stop the batch rather than fail it item by item.
FATAL: Final = (AuthenticationError, PermissionDeniedError, QuotaExceededError)
# The journal or the directory failed us (disk full, unwritable, damaged): no image is paid for
# that could not be recorded or saved, so the batch stops submitting at the first one.
STORAGE: Final = (JournalError, OSError)


class StoppedError(Exception):  # a signal, raised from on_sending so that nothing is sent
    """Submissions stopped (Ctrl-C) after the limits admitted the request."""


@attrs.define
class Admission:
    """An item inside ``submit()``: cancellable until its create is about to be sent."""

    scope: anyio.CancelScope
    sending: bool = False


class Stopping:
    """The batch's brake: set once, it lets waiting items go and refuses new sends."""

    def __init__(self) -> None:
        self.stopping = False
        self.reason = "interrupted before it was sent"
        self.interrupts = 0
        self.fatal: QwenImageError | None = None
        self.storage: Exception | None = None
        self._admissions: dict[int, Admission] = {}

    @contextlib.contextmanager
    def admitting(self, seq: int) -> Iterator[Admission]:
        """Item `seq` waits in ``submit()`` for the length of the block."""
        admission = Admission(scope=anyio.CancelScope())
        self._admissions[seq] = admission
        try:
            yield admission
        finally:
            self._admissions.pop(seq, None)

    def stop_submitting(self, reason: str) -> None:
        """No new sends; items still waiting for the limits are let go (`reason` says why)."""
        self.stopping = True
        self.reason = reason
        for admission in list(self._admissions.values()):
            if not admission.sending:
                admission.scope.cancel()

    def refused(self, exc: QwenImageError) -> None:
        """A refusal that holds for every item (see `FATAL`): the first one stops the batch."""
        if self.fatal is None:
            self.fatal = exc
            self.stop_submitting(f"not sent: the batch stopped ({type(exc).__name__})")

    def storage_failed(self, exc: Exception) -> bool:
        """The journal or the directory failed: stop; whether this is the first such failure."""
        if self.storage is not None:
            return False
        self.storage = exc
        self.stop_submitting("not sent: the batch stopped (the journal or directory failed)")
        return True


def describe_storage(exc: Exception) -> str:
    """A storage failure in one line: the journal's own message, or the file and the reason."""
    if isinstance(exc, OSError):
        # A rename names the temporary file first; the file the user knows is the target.
        name = exc.filename2 or exc.filename
        where = f" {name}" if name else ""
        return f"cannot write{where}: {exc.strerror or exc}"
    return str(exc)
