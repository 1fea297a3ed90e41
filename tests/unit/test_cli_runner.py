"""
The batch runner's decisions, in process against the emulator (compressed time, no mocks).

Each test runs a journal to its end and checks what the runner made of each way an item can go:
done, a failed task, a refused request, a key refused for every item, a create whose answer was
lost (uncertain, then adopted by the next run instead of paid for twice).
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import anyio

from aioqwenimage._cli._journal import Journal, State
from aioqwenimage._cli._manifest import MANIFEST_NAME
from aioqwenimage._cli._options import EXIT_FAILED, EXIT_OK, Connection
from aioqwenimage._cli._runner import BatchOptions, BatchRunner
from aioqwenimage.testing import FakeDashScope, Fault, FaultKind

if TYPE_CHECKING:
    from collections.abc import Callable

SCALE = 0.01


def _connection(fake: FakeDashScope, *, api_key: str | None = None) -> Connection:
    return Connection(
        emulator=False,
        api_key=api_key or fake.api_key,
        base_url=fake.base_url,
        region=None,
        workspace=None,
        time_scale=SCALE,
        in_flight=8,
        submits_per_second=None,
        queries_per_second=None,
    )


async def _run(journal: Journal, connection: Connection) -> tuple[int, str]:
    stream = io.StringIO()
    options = BatchOptions(input_name="p.txt", out_dir=journal.path.parent, concurrency=4)
    runner = BatchRunner(journal, connection, options, stream=stream)
    with anyio.fail_after(30):
        code = await runner.run()
    return code, stream.getvalue()


def _states(journal: Journal) -> list[State]:
    return [row.state for row in journal.rows()]


async def test_a_fresh_batch_is_created_followed_and_downloaded(
    make_journal: Callable[..., Journal],
):
    """Every item gets one task, its image on disk, and the manifest; exit 0."""
    journal = make_journal(3)
    async with FakeDashScope(time_scale=SCALE, seed=1) as fake:
        code, output = await _run(journal, _connection(fake))
        assert 3 == sum(fake.stats.tasks_created.values())
    out = journal.path.parent
    assert (EXIT_OK, [State.DOWNLOADED] * 3) == (code, _states(journal))
    assert all((out / row.files[0]).stat().st_size > 0 for row in journal.rows())
    assert 3 == len((out / MANIFEST_NAME).read_text().splitlines())
    assert "tasks created by this run: 3" in output


async def test_a_failed_task_fails_only_its_item(make_journal: Callable[..., Journal]):
    """A task that ends FAILED is journaled with its code; the others finish; exit 1."""
    journal = make_journal(2)
    failing = Fault(kind=FaultKind.TASK_FAILED, endpoints=["create"], times=1, code="InternalError")
    async with FakeDashScope(time_scale=SCALE, seed=1, faults=[failing]) as fake:
        code, output = await _run(journal, _connection(fake))
    assert EXIT_FAILED == code
    assert [State.DOWNLOADED, State.FAILED] == sorted(_states(journal), key=lambda s: s.value)
    failed = next(row for row in journal.rows() if row.state is State.FAILED)
    assert ("InternalError", True) == (failed.error_code, failed.task_id is not None)
    assert "needs attention" in output


async def test_a_refused_request_fails_before_any_task(make_journal: Callable[..., Journal]):
    """Moderation refuses the create for good: ``failed`` with its code, no task made."""
    journal = make_journal(1)
    refusal = Fault(kind=FaultKind.MODERATION, endpoints=["create"], times=1)
    async with FakeDashScope(time_scale=SCALE, seed=1, faults=[refusal]) as fake:
        code, _ = await _run(journal, _connection(fake))
        assert 0 == sum(fake.stats.tasks_created.values())
    row = journal.row(0)
    assert (EXIT_FAILED, State.FAILED, None) == (code, row.state, row.task_id)
    assert row.error_code == "DataInspectionFailed"


async def test_a_refused_key_stops_the_batch_with_nothing_sent(
    make_journal: Callable[..., Journal],
):
    """A refusal that holds for every item stops the batch; every item is still ``pending``."""
    journal = make_journal(3)
    async with FakeDashScope(time_scale=SCALE, seed=1) as fake:
        code, output = await _run(journal, _connection(fake, api_key="sk-wrong"))
        assert 0 == sum(fake.stats.tasks_created.values())
    assert (EXIT_FAILED, [State.PENDING] * 3) == (code, _states(journal))
    assert "not sent" in output


async def test_a_lost_answer_is_uncertain_then_adopted_not_paid_twice(
    make_journal: Callable[..., Journal],
):
    """A create whose answer is lost stays ``sending``; the next run adopts the task it made."""
    journal = make_journal(1)
    lost = Fault(kind=FaultKind.DROP_AFTER, endpoints=["create"], times=1)
    async with FakeDashScope(time_scale=SCALE, seed=1, faults=[lost]) as fake:
        code, output = await _run(journal, _connection(fake))
        assert (EXIT_FAILED, State.SENDING) == (code, journal.state(0))
        assert "answer was lost" in (journal.row(0).note or "")
        assert "uncertain" in output
        code, output = await _run(journal, _connection(fake))
        assert 1 == sum(fake.stats.tasks_created.values())
    assert (EXIT_OK, State.DOWNLOADED) == (code, journal.state(0))
    assert "adopted" in output
