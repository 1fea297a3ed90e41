"""The batch's brake: waiting items let go, the first fatal refusal and storage failure kept."""

from __future__ import annotations

import errno

from aioqwenimage._cli._database import JournalWriteError
from aioqwenimage._cli._stopping import Stopping, describe_storage
from aioqwenimage._errors import AuthenticationError, QuotaExceededError


async def test_stopping_lets_waiting_items_go_but_not_one_being_sent():
    """An admission still waiting is cancelled; one whose create is leaving is not."""
    stop = Stopping()
    with stop.admitting(0) as waiting, stop.admitting(1) as sending:
        sending.sending = True
        stop.stop_submitting("interrupted")
        assert (True, False) == (waiting.scope.cancel_called, sending.scope.cancel_called)
    assert (True, "interrupted") == (stop.stopping, stop.reason)


async def test_an_admission_ends_with_its_block():
    """Stopping after an item left ``submit()`` touches nothing of it."""
    stop = Stopping()
    with stop.admitting(0) as admission:
        pass
    stop.stop_submitting("later")
    assert not admission.scope.cancel_called


def test_the_first_fatal_refusal_is_the_one_reported():
    """The batch stops at the first refusal for every item; later ones change nothing."""
    stop = Stopping()
    first = AuthenticationError("bad key")
    stop.refused(first)
    stop.refused(QuotaExceededError("no quota"))
    assert (first, True) == (stop.fatal, stop.stopping)
    assert "AuthenticationError" in stop.reason


def test_only_the_first_storage_failure_is_news():
    """`storage_failed` says whether to report it: once."""
    stop = Stopping()
    assert stop.storage_failed(OSError(errno.ENOSPC, "No space left on device"))
    assert not stop.storage_failed(OSError(errno.EROFS, "Read-only file system"))
    assert stop.stopping
    assert "journal or directory" in stop.reason


def test_a_storage_failure_names_the_file_the_user_knows():
    """A rename's target, not its temporary file; the journal's own message as it is."""
    rename = OSError(errno.ENOSPC, "No space left on device", "/o/.a.png.part", None, "/o/a.png")
    assert "cannot write /o/a.png: No space left on device" == describe_storage(rename)
    assert "cannot write: boom" == describe_storage(OSError("boom"))
    assert "journal full" == describe_storage(JournalWriteError("journal full"))
