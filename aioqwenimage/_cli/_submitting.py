"""
Submitting one item: its create, journaled so that a crash never sends it twice.

``sending`` is committed in ``on_sending``, right before the request leaves, and only while the
batch still submits; then each way ``submit()`` can end is read for what it proves: a task
(``created``), nothing made (back to ``pending``: throttled out, refused, stopped), a refusal for
good (``failed``), or an answer lost after sending (``uncertain``, reconciled by the next run).
The runner follows the task this returns; a refusal that holds for every item stops the batch
through `aioqwenimage._cli._stopping.Stopping`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aioqwenimage._cli._messages import lost_create
from aioqwenimage._cli._progress import Phase
from aioqwenimage._cli._stopping import FATAL, StoppedError
from aioqwenimage._errors import (
    APIError,
    QwenImageError,
    RateLimitError,
    ServerError,
    SubmissionUncertainError,
    TransportError,
)

if TYPE_CHECKING:
    from aioqwenimage import Client, TaskHandle
    from aioqwenimage._cli._ledger import Ledger
    from aioqwenimage._cli._stopping import Stopping

__all__ = ["submit"]


async def submit(client: Client, ledger: Ledger, stop: Stopping, seq: int) -> TaskHandle | None:
    """
    Send item `seq`'s create and journal the outcome; the task's handle when one was made.

    Raises:
        JournalError: A transition could not be committed (the batch stops).
    """
    journal, tally = ledger.journal, ledger.tally
    row = ledger.rows[seq]
    with stop.admitting(seq) as admission:
        tally.set(seq, Phase.WAITING)

        async def on_sending() -> None:
            # No await in here: the state is on disk before the request can leave, and an
            # interrupt cannot land between the check and the write.
            if stop.stopping:
                raise StoppedError
            admission.sending = True
            journal.sending(seq)
            tally.set(seq, Phase.SENDING)

        handle: TaskHandle | None = None
        try:
            with admission.scope:
                handle = await client.submit(
                    row.prompt, model=row.model, on_sending=on_sending, **row.params
                )
        except StoppedError:
            # on_sending runs again only before a re-send, and the client re-sends only when
            # the last attempt provably created nothing (429, 503, refused connect).
            ledger.nothing_created(seq, "stopped before a re-send; nothing was created")
            ledger.not_sent(seq, stop.reason)
        except SubmissionUncertainError as exc:
            ledger.uncertain(seq, lost_create(exc))
        except FATAL as exc:
            ledger.refused_before_creation(seq, exc)
            stop.refused(exc)
        except (RateLimitError, ServerError, TransportError) as exc:
            # Throttled past the retry budget, 503, or the connection never opened: the client
            # re-sends creates only in those cases, which create nothing (§6), so nothing exists.
            ledger.refused_before_creation(seq, exc)
        except APIError as exc:  # 400s: the service refused this request for good
            ledger.failed(seq, exc.code, exc.message)
        except QwenImageError as exc:  # anything else after sending: we cannot know
            if admission.sending:
                ledger.uncertain(seq, lost_create(exc))
            else:
                ledger.not_sent(seq, str(exc))
    if handle is None:
        if admission.scope.cancelled_caught:
            ledger.not_sent(seq, stop.reason)
        return None
    if handle.task_id is not None:
        journal.created(seq, handle.task_id)
    tally.created += 1
    tally.set(seq, Phase.RUNNING)
    return handle
