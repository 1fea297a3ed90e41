"""
Resuming a batch from each journal state, in process against an in-process emulator.

Each test writes a journal as an earlier (crashed) run would have left it, then runs the batch
runner and checks what it did: re-attached, downloaded, re-polled, expired, sent again.
"""

from __future__ import annotations

import io
import re
import time
from typing import TYPE_CHECKING

import anyio

import aioqwenimage as q
from aioqwenimage._cli._inputs import load_items
from aioqwenimage._cli._journal import Journal, State
from aioqwenimage._cli._options import Connection
from aioqwenimage._cli._runner import BatchOptions, BatchRunner
from aioqwenimage.testing import FakeDashScope

if TYPE_CHECKING:
    from pathlib import Path

SCALE = 0.01
DAY = 86_400.0


def _connection(fake: FakeDashScope, *, emulator: bool = False) -> Connection:
    return Connection(
        emulator=emulator,
        api_key=fake.api_key,
        base_url=fake.base_url,
        region=None,
        workspace=None,
        time_scale=SCALE,
        in_flight=8,
        submits_per_second=None,
        queries_per_second=None,
    )


def _journal(tmp_path: Path, prompts: list[str], model: str = "qwen-image-plus") -> Journal:
    source = tmp_path / "p.txt"
    source.write_text("\n".join(prompts) + "\n")
    loaded = load_items(source, model=model, defaults={})
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    return Journal.open(out, fingerprint={"input": {"sha256": loaded.sha256}}, items=loaded.items)


async def _run(journal: Journal, connection: Connection, **options: object) -> tuple[int, str]:
    stream = io.StringIO()
    defaults: dict[str, object] = {"input_name": "p.txt", "out_dir": journal.path.parent}
    defaults["concurrency"] = 4
    runner = BatchRunner(journal, connection, BatchOptions(**(defaults | options)), stream=stream)  # type: ignore[arg-type]
    with anyio.fail_after(30):
        code = await runner.run()
    return code, stream.getvalue()


async def _a_task(fake: FakeDashScope, prompt: str) -> q.GenerationResult:
    async with q.Client(api_key=fake.api_key, base_url=fake.base_url, time_scale=SCALE) as client:
        return await client.generate(prompt)


def _created(journal: Journal, seq: int, task_id: str, *, at: float | None = None) -> None:
    journal.sending(seq)
    journal.created(seq, task_id)
    if at is not None:
        journal._db.execute("UPDATE items SET created_at = ? WHERE seq = ?", (at, seq))


async def test_created_tasks_are_reattached_not_created_again(tmp_path: Path):
    """An item with a task id is followed by id and downloaded; no second create."""
    async with FakeDashScope(time_scale=SCALE, seed=1) as fake:
        result = await _a_task(fake, "a fox")
        assert result.task_id is not None
        journal = _journal(tmp_path, ["a fox", "a lighthouse"])
        _created(journal, 0, result.task_id)
        code, output = await _run(journal, _connection(fake))
        assert (0, 2) == (code, sum(fake.stats.tasks_created.values()))
        assert "1 task to re-attach" in output
        assert [State.DOWNLOADED, State.DOWNLOADED] == [row.state for row in journal.rows()]
        assert result.task_id == journal.row(0).task_id
        journal.close()


async def test_tasks_older_than_24_hours_are_expired_without_a_query(tmp_path: Path):
    """A created task past the retention is reported expired; the service is not asked."""
    async with FakeDashScope(time_scale=SCALE, seed=1) as fake:
        journal = _journal(tmp_path, ["a fox"])
        _created(journal, 0, "task-from-yesterday", at=time.time() - DAY - 60)
        code, output = await _run(journal, _connection(fake))
        assert 1 == code
        assert State.EXPIRED == journal.row(0).state
        assert 0 == fake.stats.count("query")
        assert "expired" in output
        journal.close()


def _stored(journal: Journal, seq: int, result: q.GenerationResult, *, expired: bool) -> None:
    assert result.task_id is not None
    _created(journal, seq, result.task_id)
    urls = [(image.index, image.url) for image in result.images]
    if expired:  # as signed yesterday
        urls = [
            (i, re.sub(r"Expires=[0-9.]+", f"Expires={time.time() - 60:.0f}", u)) for i, u in urls
        ]
    journal.succeeded(seq, urls=urls, actual_prompts=[None], echoed_prompt=None, server_times={})


async def test_succeeded_items_with_expired_urls_are_repolled_for_fresh_ones(tmp_path: Path):
    """Stored URLs past their expiry: the task is queried again and its current URLs used."""
    async with FakeDashScope(time_scale=SCALE, seed=1) as fake:
        result = await _a_task(fake, "a fox")
        journal = _journal(tmp_path, ["a fox"])
        _stored(journal, 0, result, expired=True)
        queries = fake.stats.count("query")
        code, _ = await _run(journal, _connection(fake))
        row = journal.row(0)
        assert (0, State.DOWNLOADED) == (code, row.state)
        assert result.images[0].url == row.urls[0][1]
        assert (journal.path.parent / row.files[0]).stat().st_size > 0
        assert (1, 1) == (
            sum(fake.stats.tasks_created.values()),
            fake.stats.count("query") - queries,
        )
        journal.close()


async def test_results_whose_task_urls_expired_too_are_reported_expired(tmp_path: Path):
    """When the re-polled task's URLs are past their expiry as well, the item is expired."""
    async with FakeDashScope(time_scale=SCALE, seed=1, url_ttl=0.5) as fake:
        result = await _a_task(fake, "a fox")
        journal = _journal(tmp_path, ["a fox"])
        _stored(journal, 0, result, expired=True)
        await anyio.sleep(2 * SCALE)  # two simulated seconds: the task's own URLs expire too
        code, output = await _run(journal, _connection(fake))
        assert (1, State.EXPIRED) == (code, journal.row(0).state)
        assert "result URLs expired" in output
        assert 1 == sum(fake.stats.tasks_created.values())
        journal.close()


async def test_finished_items_whose_files_are_gone_are_downloaded_again(tmp_path: Path):
    """A downloaded item with its file deleted goes back to succeeded and is fetched again."""
    async with FakeDashScope(time_scale=SCALE, seed=1) as fake:
        journal = _journal(tmp_path, ["a fox", "a cat"])
        assert 0 == (await _run(journal, _connection(fake)))[0]
        out = journal.path.parent
        (out / journal.row(1).files[0]).unlink()
        code, output = await _run(journal, _connection(fake))
        assert (0, 2) == (code, sum(fake.stats.tasks_created.values()))
        assert "files missing" in output
        assert (out / journal.row(1).files[0]).exists()
        journal.close()


async def test_cancelled_items_are_sent_again_on_resume(tmp_path: Path):
    """A cancelled task made no image and costs nothing: the item is created anew."""
    async with FakeDashScope(time_scale=SCALE, seed=1) as fake:
        journal = _journal(tmp_path, ["a fox"])
        _created(journal, 0, "cancelled-task")
        journal.canceled(0, "interrupted while pending")
        code, _ = await _run(journal, _connection(fake))
        assert (0, 1) == (code, sum(fake.stats.tasks_created.values()))
        assert "cancelled-task" != journal.row(0).task_id
        journal.close()


async def test_with_emulator_tasks_of_the_dead_emulator_are_sent_again(tmp_path: Path):
    """--emulator: the earlier run's in-process emulator is gone, so its items start over."""
    journal = _journal(tmp_path, ["a fox", "a cat"])
    _created(journal, 0, "task-in-a-dead-emulator")
    journal.sending(1)
    async with FakeDashScope(time_scale=SCALE) as unused:
        code, output = await _run(journal, _connection(unused, emulator=True))
    assert 0 == code
    assert "2 items whose tasks lived in the earlier run's emulator" in output
    assert {State.DOWNLOADED} == {row.state for row in journal.rows()}
    journal.close()


async def test_an_uncertain_synchronous_call_stays_uncertain_unless_told(tmp_path: Path):
    """A sync call leaves no task to find: listed as uncertain; --resend-uncertain sends it."""
    async with FakeDashScope(time_scale=SCALE, seed=1) as fake:
        journal = _journal(tmp_path, ["a fox"], model="qwen-image-2.0")
        journal.sending(0)
        code, output = await _run(journal, _connection(fake))
        assert (1, State.SENDING) == (code, journal.row(0).state)
        assert "synchronous call leaves no task" in output
        code, _ = await _run(journal, _connection(fake), resend_uncertain=True)
        assert (0, State.DONE) == (code, journal.row(0).state)
        assert 1 == len(fake.stats.sync_calls)
        journal.close()


async def test_previously_failed_items_stay_failed_unless_retried(tmp_path: Path):
    """A failed item is not re-sent by a plain re-run (exit 1), but is with --retry-failed."""
    async with FakeDashScope(time_scale=SCALE, seed=1) as fake:
        journal = _journal(tmp_path, ["a fox"])
        _created(journal, 0, "t")
        journal.failed(0, "InternalError", "boom")
        assert (1, 0) == ((await _run(journal, _connection(fake)))[0], fake.stats.count("create"))
        code, _ = await _run(journal, _connection(fake), retry_failed=True)
        assert (0, State.DOWNLOADED) == (code, journal.row(0).state)
        journal.close()
