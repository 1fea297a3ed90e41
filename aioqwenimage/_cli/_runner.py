"""
The batch runner: takes a journal to completion, resuming whatever an earlier run left.

At start every item is sorted by its journal state: finished ones are skipped (their files
checked), created ones re-attached by task id, succeeded ones downloaded from their stored URLs,
uncertain ones reconciled against the task list, pending ones queued for submission. Then
`concurrency` workers submit, follow and download, writing each transition to the journal.

Ctrl-C once: stop submitting (items waiting for the limits are let go, still ``pending``), cancel
the tasks still pending remotely, let running ones finish and download, exit 130. Twice: write the
manifest and exit at once; the journal is consistent, since no transaction spans an ``await``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, Any, Final

import anyio
import attrs

from aioqwenimage._cli._journal import Journal, JournalError, Row, State
from aioqwenimage._cli._ledger import Ledger
from aioqwenimage._cli._manifest import MANIFEST_NAME, write_manifest
from aioqwenimage._cli._messages import in_words
from aioqwenimage._cli._options import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_STORAGE,
    Connection,
    connect,
    error,
    note,
)
from aioqwenimage._cli._progress import Display, Phase, Tally, make_display, plural
from aioqwenimage._cli._reconcile import (
    Listing,
    Uncertain,
    decide,
    list_orphans,
    settle_orphans,
    uncertain_entry,
)
from aioqwenimage._cli._resume import plan
from aioqwenimage._cli._saving import Saver
from aioqwenimage._cli._summary import build_summary, render_summary_plain, render_summary_rich
from aioqwenimage._errors import (
    APIError,
    AuthenticationError,
    PermissionDeniedError,
    QuotaExceededError,
    QwenImageError,
    RateLimitError,
    ServerError,
    SubmissionUncertainError,
    TaskCanceledError,
    TaskExpiredError,
    TaskFailedError,
    TransportError,
)
from aioqwenimage._models import EventKind, TaskEvent, TaskStatus

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from pathlib import Path

    from anyio.streams.memory import MemoryObjectSendStream

    from aioqwenimage import Client, GenerationResult, TaskHandle

__all__ = ["BatchOptions", "BatchRunner"]

_MANIFEST_EVERY: Final = 5.0  # seconds between manifest rewrites while running
_TICK: Final = 0.25
# Refused for every item alike: stop the batch rather than fail it item by item.
_FATAL: Final = (AuthenticationError, PermissionDeniedError, QuotaExceededError)
# The journal or the directory failed us (disk full, unwritable, damaged): no image is paid for
# that could not be recorded or saved, so the batch stops submitting at the first one.
_STORAGE: Final = (JournalError, OSError)


class _StoppedError(Exception):  # a signal, raised from on_sending so that nothing is sent
    """Submissions stopped (Ctrl-C) after the limits admitted the request."""


@attrs.frozen(kw_only=True)
class BatchOptions:
    """How the batch runs; none of these is part of the journal's fingerprint."""

    input_name: str
    out_dir: Path
    concurrency: int
    resend_uncertain: bool = False
    retry_failed: bool = False
    plain: bool = False
    quiet: bool = False
    seed: int | None = None


@attrs.frozen
class _Live:
    """What exists only while the batch runs: the client, the work group, the submit queue."""

    client: Client
    work: anyio.abc.TaskGroup
    queue: MemoryObjectSendStream[int]


@attrs.define
class _Admission:
    """An item inside ``submit()``: cancellable until its create is about to be sent."""

    scope: anyio.CancelScope
    sending: bool = False


class BatchRunner:
    """Runs one batch to the end (or to an interrupt); `run` returns the exit code."""

    def __init__(
        self,
        journal: Journal,
        connection: Connection,
        options: BatchOptions,
        *,
        stream: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.journal = journal
        self.connection = connection
        self.options = options
        self.out = options.out_dir
        self.clock = clock
        self.tally = Tally(total=len(journal.rows()))
        self.ledger = Ledger(journal, self.tally, self._log)
        self.stream = stream if stream is not None else sys.stdout
        self.display: Display | None = None
        self.console: Any = None
        self._live: _Live | None = None
        self.stopping = False
        self.stop_reason = "interrupted before it was sent"
        self.interrupts = 0
        self.fatal: QwenImageError | None = None
        self.storage: Exception | None = None
        self.admissions: dict[int, _Admission] = {}
        self.handles: dict[int, TaskHandle] = {}
        self.by_task: dict[str, int] = {}

    @property
    def rows(self) -> dict[int, Row]:
        """Every item as the journal last said (the ledger keeps them current)."""
        return self.ledger.rows

    @property
    def why(self) -> dict[int, str]:
        """Per item, why this run could not finish it, for the summary."""
        return self.ledger.why

    @property
    def live(self) -> _Live:
        """The running batch's client, work group and queue."""
        if self._live is None:
            msg = "the batch is not running"
            raise RuntimeError(msg)
        return self._live

    @property
    def client(self) -> Client:
        """The running batch's client."""
        return self.live.client

    # --- the run ---------------------------------------------------------------------------------

    async def run(self) -> int:
        """Run the batch; the exit code (0 all done, 1 some not, 130 interrupted)."""
        models = sorted({row.model for row in self.rows.values()})
        title = self._title(models)
        self.display, self.console = make_display(
            self.tally,
            title=title,
            plain=self.options.plain,
            quiet=self.options.quiet,
            stream=self.stream,
        )
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, self._on_interrupt)
        try:
            async with connect(
                self.connection, models=models, event_hooks=[self._on_event], seed=self.options.seed
            ) as client:
                try:
                    await self._run(client)
                except _STORAGE as exc:  # before or after the work group (plan, listing)
                    self._storage_failed(exc)
        finally:
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(signal.SIGINT)
            self.display.close()
        try:
            write_manifest(self.out, self.journal.rows())
        except _STORAGE as exc:
            self._storage_failed(exc)
        self._print_summary()
        if self.storage is not None:
            error(
                f"stopped: {_describe_storage(self.storage)}. Every change before it is in the "
                "journal: free some space (or make the directory writable again), then run the "
                "same command to resume; nothing is paid for twice."
            )
            return EXIT_STORAGE
        if self.fatal is not None:
            self._log(f"stopped: {self.fatal}")
            return EXIT_FAILED
        if self.interrupts:
            return EXIT_INTERRUPTED
        return EXIT_OK if self.tally.done == self.tally.total else EXIT_FAILED

    def _title(self, models: Sequence[str]) -> str:
        where = f" [emulator x{self.connection.time_scale:g}]" if self.connection.emulator else ""
        return (
            f"{self.options.input_name} -> {self.out}: {len(self.rows)} items, "
            f"{', '.join(models)}{where}"
        )

    async def _run(self, client: Client) -> None:
        send, receive = anyio.create_memory_object_stream[int](max_buffer_size=len(self.rows) + 1)
        todo = plan(
            self.journal,
            self.tally,
            out=self.out,
            now=self.clock(),
            emulator=self.connection.emulator,
            retry_failed=self.options.retry_failed,
            log=self._log,
        )
        self.ledger.reload()
        uncertain = [uncertain_entry(row, self.clock()) for row in todo.uncertain]
        # Listed before this run creates anything, so that no task of ours passes for an orphan.
        listing = await self._list(client, uncertain) if uncertain else None
        async with anyio.create_task_group() as outer:
            outer.start_soon(self._ticker)
            # Everything with an end runs in `work`; when it is all over, so is the batch.
            async with anyio.create_task_group() as work, receive:
                self._live = _Live(client=client, work=work, queue=send)
                for seq in todo.submit:
                    send.send_nowait(seq)
                for seq in todo.attach:
                    work.start_soon(
                        self._guarded, seq, self._follow(seq, self._attach(self.rows[seq]))
                    )
                for seq in todo.download:
                    work.start_soon(self._guarded, seq, self._download(seq))
                if listing is not None:
                    work.start_soon(self._guarded, None, self._reconcile(uncertain, listing))
                else:
                    send.close()
                for _ in range(min(self.options.concurrency, len(self.rows))):
                    work.start_soon(self._worker, receive.clone())
            self._live = None  # the work group is closed: nothing may be started in it now
            outer.cancel_scope.cancel()

    async def _list(self, client: Client, uncertain: Sequence[Uncertain]) -> Listing:
        listing = await list_orphans(client, uncertain, self.journal.known_task_ids(), self.clock())
        if listing.error is not None:
            self._log(f"could not list the tasks to reconcile: {listing.error}")
        self._log(
            f"reconciling {plural(len(uncertain), 'item')} whose create was cut short: "
            f"{plural(len(listing.orphans), 'task')} since {listing.since:%H:%M:%S} UTC unknown to "
            "the journal"
        )
        return listing

    def _attach(self, row: Row) -> TaskHandle:
        if row.task_id is None:
            msg = f"item {row.item_id} has no task to attach to"
            raise RuntimeError(msg)
        return self.client.attach(row.task_id, model=row.model)

    async def _ticker(self) -> None:
        last_manifest = time.monotonic()
        while True:
            await anyio.sleep(_TICK)
            if self.display is not None:
                self.display.refresh()
            if time.monotonic() - last_manifest >= _MANIFEST_EVERY and self.storage is None:
                last_manifest = time.monotonic()
                try:
                    write_manifest(self.out, self.journal.rows())
                except _STORAGE as exc:
                    self._storage_failed(exc)

    # --- submitting ------------------------------------------------------------------------------

    async def _worker(self, receive: anyio.abc.ObjectReceiveStream[int]) -> None:
        async with receive:
            async for seq in receive:
                if self.stopping:
                    self.ledger.not_sent(seq, self.stop_reason)
                    continue
                await self._guarded(seq, self._submit(seq))

    async def _guarded(self, seq: int | None, work: Awaitable[None]) -> None:
        """Run one item's work; a storage failure stops the batch instead of crashing it."""
        try:
            await work
        except _STORAGE as exc:
            self._storage_failed(exc)
            if seq is not None:
                # Whatever the journal last holds for it is what the next run resumes from.
                self.ledger.not_finished(seq, f"stopped: {_describe_storage(exc)}")

    def _storage_failed(self, exc: Exception) -> None:
        if self.storage is not None:
            return
        self.storage = exc
        self._log(f"stopped: {_describe_storage(exc)}; no new submissions")
        self._stop_submitting("not sent: the batch stopped (the journal or directory failed)")

    async def _submit(self, seq: int) -> None:
        client = self.client
        row = self.rows[seq]
        admission = _Admission(scope=anyio.CancelScope())
        self.admissions[seq] = admission
        self.tally.set(seq, Phase.WAITING)

        async def on_sending() -> None:
            # No await in here: the state is on disk before the request can leave, and an
            # interrupt cannot land between the check and the write.
            if self.stopping:
                raise _StoppedError
            admission.sending = True
            self.journal.sending(seq)
            self.tally.set(seq, Phase.SENDING)

        handle: TaskHandle | None = None
        try:
            with admission.scope:
                handle = await client.submit(
                    row.prompt, model=row.model, on_sending=on_sending, **row.params
                )
        except _StoppedError:
            if self.journal.state(seq) is State.SENDING:
                # on_sending runs again only before a re-send, and the client re-sends only
                # when the last attempt provably created nothing (429, 503, refused connect).
                self.journal.pending(seq, "stopped before a re-send; nothing was created")
            self.ledger.not_sent(seq, self.stop_reason)
        except SubmissionUncertainError as exc:
            self.ledger.uncertain(seq, _lost(exc))
        except _FATAL as exc:
            self.ledger.refused_before_creation(seq, exc)
            if self.fatal is None:
                self.fatal = exc
                self._stop_submitting(f"not sent: the batch stopped ({type(exc).__name__})")
        except (RateLimitError, ServerError, TransportError) as exc:
            # Throttled past the retry budget, 503, or the connection never opened: the client
            # re-sends creates only in those cases, which create nothing (§6), so nothing exists.
            self.ledger.refused_before_creation(seq, exc)
        except APIError as exc:  # 400s: the service refused this request for good
            self.ledger.failed(seq, exc.code, exc.message)
        except QwenImageError as exc:  # anything else after sending: we cannot know
            if admission.sending:
                self.ledger.uncertain(seq, _lost(exc))
            else:
                self.ledger.not_sent(seq, str(exc))
        finally:
            self.admissions.pop(seq, None)
        if handle is None:
            if admission.scope.cancelled_caught:
                self.ledger.not_sent(seq, self.stop_reason)
            return
        if handle.task_id is not None:
            self.journal.created(seq, handle.task_id)
            self.by_task[handle.task_id] = seq
        self.tally.created += 1
        self.tally.set(seq, Phase.RUNNING)
        await self._follow(seq, handle)

    def _stop_submitting(self, reason: str) -> None:
        self.stopping = True
        self.stop_reason = reason
        for admission in list(self.admissions.values()):
            if not admission.sending:
                admission.scope.cancel()

    # --- following a task to its end -------------------------------------------------------------

    async def _follow(self, seq: int, handle: TaskHandle) -> None:
        client = self.client
        row = self.rows[seq]
        if handle.task_id is not None:
            self.by_task[handle.task_id] = seq
        while True:
            self.handles[seq] = handle
            try:
                result = await handle
            except TaskCanceledError as exc:
                if handle.task_id is None:  # an abandoned synchronous call may still be billed
                    self.ledger.uncertain(
                        seq, "the synchronous call was abandoned before it answered"
                    )
                    return
                if handle.status is not TaskStatus.CANCELED:
                    # Our interrupt asked to cancel it, but it was already running: the service
                    # finishes (and bills) it, so follow it to the end and keep the images.
                    handle = client.attach(handle.task_id, model=row.model)
                    continue
                self.ledger.canceled(seq, str(exc), quietly=bool(self.interrupts))
                return
            except TaskExpiredError:
                self.ledger.expired(
                    seq, "the service no longer knows the task (older than 24 hours?)"
                )
                return
            except TaskFailedError as exc:
                self.ledger.failed(seq, exc.code, exc.message)
                return
            except SubmissionUncertainError as exc:  # a synchronous call that lost its answer
                self.ledger.uncertain(seq, _lost(exc))
                return
            except APIError as exc:
                if handle.task_id is None:  # a synchronous call refused: nothing was made
                    self.ledger.failed(seq, exc.code, exc.message)
                else:  # the task goes on; the journal keeps its id for the next run
                    self.ledger.not_finished(seq, f"could not follow task {handle.task_id}: {exc}")
                return
            except QwenImageError as exc:
                self.ledger.not_finished(seq, f"could not follow the task: {exc}")
                return
            finally:
                self.handles.pop(seq, None)
            break
        self.ledger.succeeded(seq, result)
        await self._download(seq, result)

    # --- downloads -------------------------------------------------------------------------------

    async def _download(self, seq: int, result: GenerationResult | None = None) -> None:
        """Save every image of a succeeded item (see `Saver.download`)."""
        announce = self.console is None and not self.options.quiet
        saver = Saver(client=self.client, ledger=self.ledger, out=self.out, clock=self.clock)
        await saver.download(seq, result, announce=announce)

    # --- reconciliation --------------------------------------------------------------------------

    async def _reconcile(self, uncertain: Sequence[Uncertain], listing: Listing) -> None:
        """Settle the orphans, then adopt, re-send or report each uncertain item."""
        try:
            outcomes, results = await settle_orphans(self.client, listing.orphans)
            decision = decide(uncertain, outcomes, listed=listing.listed, now=self.clock())
            for seq, orphan in decision.adopt.items():
                created = orphan.created_at.timestamp() if orphan.created_at else None
                self.journal.adopted(seq, orphan.task_id, created, decision.reasons[seq])
                self.rows[seq] = self.journal.row(seq)
                self.by_task[orphan.task_id] = seq
                self._log(f"{self.rows[seq].item_id}: {decision.reasons[seq]}; adopted")
                self.ledger.succeeded(seq, results[orphan.task_id])
                self.tally.set(seq, Phase.DOWNLOADING)
                self.live.work.start_soon(
                    self._guarded, seq, self._download(seq, results[orphan.task_id])
                )
            for seq in decision.resend:
                self.journal.pending(seq, decision.reasons[seq])
                self._log(f"{self.rows[seq].item_id}: {decision.reasons[seq]}; safe to send again")
                self._queue(seq)
            for seq in decision.unresolved:
                why = decision.reasons[seq]
                if self.options.resend_uncertain:
                    self.journal.pending(seq, f"{why}; sent again (--resend-uncertain)")
                    self._log(
                        f"{self.rows[seq].item_id}: {why}; sending again (--resend-uncertain)"
                    )
                    self._queue(seq)
                else:
                    self.ledger.uncertain(seq, why)
            self.tally.reconciled += len(decision.adopt) + len(decision.resend)
        finally:
            self.live.queue.close()

    def _queue(self, seq: int) -> None:
        self.rows[seq] = self.journal.row(seq)
        self.tally.set(seq, Phase.QUEUED)
        self.live.queue.send_nowait(seq)

    # --- outcomes --------------------------------------------------------------------------------

    # --- events and signals ----------------------------------------------------------------------

    def _on_event(self, event: TaskEvent) -> None:
        if event.kind is not EventKind.RUNNING or event.task_id is None:
            return
        seq = self.by_task.get(event.task_id)
        if seq is not None and self.journal.state(seq) is State.CREATED:
            try:
                self.journal.running(seq)
            except JournalError as exc:  # only a hint for the next run: the task goes on
                self._storage_failed(exc)

    def _on_interrupt(self) -> None:
        self.interrupts += 1
        if self.interrupts > 1:
            self._exit_now()
            return
        self._log(
            "interrupted: no new submissions; cancelling tasks still pending; waiting for running "
            "ones to finish and download. Press Ctrl-C again to exit now (the journal is safe)."
        )
        self._stop_submitting("interrupted before it was sent")
        if self._live is not None:
            self._live.work.start_soon(self._cancel_pending)

    async def _cancel_pending(self) -> None:
        async with anyio.create_task_group() as tg:
            for handle in list(self.handles.values()):
                # Only PENDING can be cancelled; as far as we know, since the last poll.
                pending = handle.status is TaskStatus.PENDING and not handle.done()
                if handle.task_id is not None and pending:
                    tg.start_soon(handle.cancel)

    def _exit_now(self) -> None:
        """Second Ctrl-C: leave at once. Every journal write is already committed."""
        if self.display is not None:
            self.display.close()
        with contextlib.suppress(OSError):
            write_manifest(self.out, self.journal.rows())
        self.journal.close()
        sys.stdout.flush()
        note(
            "aioqwenimage: interrupted twice: exiting now. The journal is consistent; run the "
            "same command again to resume (created tasks are re-attached, not created again)."
        )
        os._exit(EXIT_INTERRUPTED)

    # --- the end ---------------------------------------------------------------------------------

    def _log(self, line: str) -> None:
        if self.display is not None:
            self.display.log(line)

    def _print_summary(self) -> None:
        summary = build_summary(
            self.tally,
            self.rows,
            self.why,
            out_dir=str(self.out),
            manifest=str(self.out / MANIFEST_NAME),
            interrupted=bool(self.interrupts),
        )
        if self.console is not None:
            render_summary_rich(summary, self.console)
        else:
            self.stream.write(render_summary_plain(summary) + "\n")
            self.stream.flush()


def _lost(exc: QwenImageError) -> str:
    """Why a create's outcome is unknown, short: the network error at the root of the client's."""
    root: BaseException = exc
    while root.__cause__ is not None:
        root = root.__cause__
    # The root's words, not its class: "Server disconnected", not ServerDisconnectedError.
    detail = in_words(str(root)) or (
        "timed out" if isinstance(root, TimeoutError) else type(root).__name__
    )
    return (
        f"the create was sent but its answer was lost ({detail}); a re-run reconciles it "
        "against the task list"
    )


def _describe_storage(exc: Exception) -> str:
    """A storage failure in one line: the journal's own message, or the file and the reason."""
    if isinstance(exc, OSError):
        # A rename names the temporary file first; the file the user knows is the target.
        name = exc.filename2 or exc.filename
        where = f" {name}" if name else ""
        return f"cannot write{where}: {exc.strerror or exc}"
    return str(exc)
