"""
The batch runner: takes a journal to completion, resuming whatever an earlier run left.

At start every item is sorted by its journal state (`aioqwenimage._cli._resume`): finished ones
are skipped (their files checked), created ones re-attached by task id, succeeded ones downloaded
from their stored URLs, uncertain ones reconciled against the task list
(`aioqwenimage._cli._reconcile`), pending ones queued for submission. Then `concurrency` workers
submit (`aioqwenimage._cli._submitting`), follow (`aioqwenimage._cli._following`) and download
(`aioqwenimage._cli._saving`); each step journals its outcome through the ledger and returns what
comes next, and this module only sequences them, keeps the display ticking and answers signals.

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

from aioqwenimage._cli._following import Following
from aioqwenimage._cli._journal import Journal, JournalError, Row, State
from aioqwenimage._cli._ledger import Ledger
from aioqwenimage._cli._manifest import MANIFEST_NAME, write_manifest
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
from aioqwenimage._cli._progress import Display, Phase, Tally, make_display
from aioqwenimage._cli._reconcile import (
    Listing,
    Uncertain,
    list_uncertain,
    record,
    settle,
    uncertain_entry,
)
from aioqwenimage._cli._resume import plan
from aioqwenimage._cli._saving import Saver
from aioqwenimage._cli._stopping import STORAGE, Stopping, describe_storage
from aioqwenimage._cli._submitting import submit
from aioqwenimage._cli._summary import build_summary, render_summary_plain, render_summary_rich
from aioqwenimage._models import EventKind, TaskEvent

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from pathlib import Path

    from anyio.streams.memory import MemoryObjectSendStream

    from aioqwenimage import Client, GenerationResult, TaskHandle

__all__ = ["BatchOptions", "BatchRunner"]

_MANIFEST_EVERY: Final = 5.0  # seconds between manifest rewrites while running
_TICK: Final = 0.25


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
    manifest_name: str = MANIFEST_NAME  # a --shard writes its own


@attrs.frozen
class _Live:
    """What exists only while the batch runs: the client, the work group, the submit queue."""

    client: Client
    work: anyio.abc.TaskGroup
    queue: MemoryObjectSendStream[int]


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
        self.stop = Stopping()
        self.following = Following(self.ledger, self.stop)
        self.stream = stream if stream is not None else sys.stdout
        self.display: Display | None = None
        self.console: Any = None
        self._live: _Live | None = None

    @property
    def rows(self) -> dict[int, Row]:
        """Every item as the journal last said (the ledger keeps them current)."""
        return self.ledger.rows

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
                except STORAGE as exc:  # before or after the work group (plan, listing)
                    self._storage_failed(exc)
        finally:
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(signal.SIGINT)
            self.display.close()
        try:
            write_manifest(self.out, self.journal.rows(), self.options.manifest_name)
        except STORAGE as exc:
            self._storage_failed(exc)
        self._print_summary()
        return self._exit_code()

    def _exit_code(self) -> int:
        stop = self.stop
        if stop.storage is not None:
            error(
                f"stopped: {describe_storage(stop.storage)}. Every change before it is in the "
                "journal: free some space (or make the directory writable again), then run the "
                "same command to resume; nothing is paid for twice."
            )
            return EXIT_STORAGE
        if stop.fatal is not None:
            self._log(f"stopped: {stop.fatal}")
            return EXIT_FAILED
        if stop.interrupts:
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
        listing = (
            await list_uncertain(client, uncertain, self.ledger, self.clock())
            if uncertain
            else None
        )
        async with anyio.create_task_group() as outer:
            outer.start_soon(self._ticker)
            # Everything with an end runs in `work`; when it is all over, so is the batch.
            async with anyio.create_task_group() as work, receive:
                self._live = _Live(client=client, work=work, queue=send)
                for seq in todo.submit:
                    send.send_nowait(seq)
                for seq in todo.attach:
                    handle = self.following.attach(client, self.rows[seq])
                    work.start_soon(self._guarded, seq, self._follow(seq, handle))
                for seq in todo.download:
                    work.start_soon(self._guarded, seq, self._download(seq))
                if listing is not None:
                    work.start_soon(self._guarded, None, self._reconcile(uncertain, listing))
                else:
                    send.close()  # nothing more will be queued: the workers end with the queue
                for _ in range(min(self.options.concurrency, len(self.rows))):
                    work.start_soon(self._worker, receive.clone())
            self._live = None  # the work group is closed: nothing may be started in it now
            outer.cancel_scope.cancel()

    async def _ticker(self) -> None:
        last_manifest = time.monotonic()
        while True:
            await anyio.sleep(_TICK)
            if self.display is not None:
                self.display.refresh()
            if time.monotonic() - last_manifest >= _MANIFEST_EVERY and self.stop.storage is None:
                last_manifest = time.monotonic()
                try:
                    write_manifest(self.out, self.journal.rows(), self.options.manifest_name)
                except STORAGE as exc:
                    self._storage_failed(exc)

    async def _guarded(self, seq: int | None, work: Awaitable[None]) -> None:
        """Run one item's work; a storage failure stops the batch instead of crashing it."""
        try:
            await work
        except STORAGE as exc:
            self._storage_failed(exc)
            if seq is not None:
                # Whatever the journal last holds for it is what the next run resumes from.
                self.ledger.not_finished(seq, f"stopped: {describe_storage(exc)}")

    def _storage_failed(self, exc: Exception) -> None:
        if self.stop.storage_failed(exc):
            self._log(f"stopped: {describe_storage(exc)}; no new submissions")

    # --- an item's steps, each returning what comes next -----------------------------------------

    async def _worker(self, receive: anyio.abc.ObjectReceiveStream[int]) -> None:
        async with receive:
            async for seq in receive:
                if self.stop.stopping:
                    self.ledger.not_sent(seq, self.stop.reason)
                    continue
                await self._guarded(seq, self._submit(seq))

    async def _submit(self, seq: int) -> None:
        handle = await submit(self.client, self.ledger, self.stop, seq)
        if handle is not None:
            await self._follow(seq, handle)

    async def _follow(self, seq: int, handle: TaskHandle) -> None:
        result = await self.following.follow(self.client, seq, handle)
        if result is not None:
            await self._download(seq, result)

    async def _download(self, seq: int, result: GenerationResult | None = None) -> None:
        """Save every image of a succeeded item (see `Saver.download`)."""
        announce = self.console is None and not self.options.quiet
        saver = Saver(client=self.client, ledger=self.ledger, out=self.out, clock=self.clock)
        await saver.download(seq, result, announce=announce)

    async def _reconcile(self, uncertain: Sequence[Uncertain], listing: Listing) -> None:
        """Settle the orphans, then download the adopted items and queue the ones to re-send."""
        try:
            decision, results = await settle(self.client, uncertain, listing, self.clock())
            resend = self.options.resend_uncertain
            for step in record(decision, results, self.ledger, resend_uncertain=resend):
                if step.result is None:
                    self.ledger.refresh(step.seq)
                    self.tally.set(step.seq, Phase.QUEUED)
                    self.live.queue.send_nowait(step.seq)
                    continue
                if step.task_id is not None:
                    self.following.track(step.seq, step.task_id)
                download = self._download(step.seq, step.result)
                self.live.work.start_soon(self._guarded, step.seq, download)
            self.tally.reconciled += len(decision.adopt) + len(decision.resend)
        finally:
            self.live.queue.close()

    # --- events and signals ----------------------------------------------------------------------

    def _on_event(self, event: TaskEvent) -> None:
        if event.kind is not EventKind.RUNNING or event.task_id is None:
            return
        seq = self.following.item_of(event.task_id)
        if seq is not None and self.journal.state(seq) is State.CREATED:
            try:
                self.journal.running(seq)
            except JournalError as exc:  # only a hint for the next run: the task goes on
                self._storage_failed(exc)

    def _on_interrupt(self) -> None:
        self.stop.interrupts += 1
        if self.stop.interrupts > 1:
            self._exit_now()
            return
        self._log(
            "interrupted: no new submissions; cancelling tasks still pending; waiting for running "
            "ones to finish and download. Press Ctrl-C again to exit now (the journal is safe)."
        )
        self.stop.stop_submitting("interrupted before it was sent")
        if self._live is not None:
            self._live.work.start_soon(self.following.cancel_pending)

    def _exit_now(self) -> None:
        """Second Ctrl-C: leave at once. Every journal write is already committed."""
        if self.display is not None:
            self.display.close()
        with contextlib.suppress(OSError):
            write_manifest(self.out, self.journal.rows(), self.options.manifest_name)
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
            self.ledger.why,
            out_dir=str(self.out),
            manifest=str(self.out / self.options.manifest_name),
            interrupted=bool(self.stop.interrupts),
        )
        if self.console is not None:
            render_summary_rich(summary, self.console)
        else:
            self.stream.write(render_summary_plain(summary) + "\n")
            self.stream.flush()
