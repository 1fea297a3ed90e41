"""TaskQueries: list pages, a task's model, remote cancels; each request a token of the budget."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

import aioqwenimage as q
from aioqwenimage import _wiring
from aioqwenimage._handle import TaskHandle
from aioqwenimage.testing import FakeDashScope, Fault
from tests.unit.client_parts import MODEL, build, emulator, remote_status, request, running, until

Setup = tuple[FakeDashScope, _wiring.Parts, TaskHandle, TaskHandle]


@asynccontextmanager
async def two_tasks() -> AsyncIterator[Setup]:
    """A client's parts and two tasks under one server slot: the first RUNNING, then PENDING."""
    async with emulator(one_slot=True) as fake:
        parts = build(fake, retry=q.RetryPolicy(attempts=2))
        async with running(parts):
            with anyio.fail_after(5):
                first = await parts.paid.start(request())
                await until(lambda: remote_status(fake, first.task_id) == "RUNNING")
                second = await parts.paid.start(request("another fox"))
            yield fake, parts, first, second


async def test_a_list_page_is_one_query_of_the_budget():
    """A page of the task list: its rows, one request counted, one budget token spent."""
    async with two_tasks() as (_fake, parts, first, second):
        with anyio.fail_after(5):
            page = await parts.queries.list_page({"page_no": "1", "page_size": "10"})
        assert {first.task_id, second.task_id} == {row["task_id"] for row in page["data"]}
        assert (1, 1) == (parts.queries.budget.spent, parts.events.requests["list"])
        assert repr(parts.queries).startswith("<TaskQueries budget=<QueryBudget ")


async def test_a_query_waits_while_the_budget_is_paused():
    """A pause of the shared budget (a poll's 429) holds lists back too."""
    async with two_tasks() as (_fake, parts, _first, _pending):
        start = anyio.current_time()
        parts.queries.budget.pause_until(start + 0.05)
        with anyio.fail_after(5):
            await parts.queries.list_page({"page_no": "1"})
        assert anyio.current_time() - start >= 0.05


async def test_a_cancel_goes_through_a_pause_once_and_waits_it_out_when_throttled_again():
    """A cancel's first attempt is not held by the pause; throttled, its retry waits it out."""
    async with two_tasks() as (fake, parts, _first, pending):
        assert pending.task_id is not None
        start = anyio.current_time()
        parts.queries.budget.pause_until(start + 0.2)
        fake.faults.add(Fault(kind="throttle", endpoints="cancel", times=1))
        with anyio.fail_after(5):
            assert await parts.queries.cancel(pending.task_id)
        assert anyio.current_time() - start >= 0.2
        assert (2, 1) == (fake.stats.count("cancel"), parts.events.throttled)


@pytest.mark.parametrize(("kind", "throttled"), [("unavailable", 0), ("throttle", 1)])
async def test_a_retried_query_spends_a_token_per_attempt(kind, throttled):
    """A 503 or a 429 is retried: two tokens spent, one retry counted (a throttle for the 429)."""
    async with two_tasks() as (fake, parts, _first, _second):
        fake.faults.add(Fault(kind=kind, endpoints="list", times=1))
        with anyio.fail_after(5):
            await parts.queries.list_page({"page_no": "1"})
        assert 2 == parts.queries.budget.spent
        assert (1, throttled) == (parts.events.retries, parts.events.throttled)
        assert 1 == parts.events.requests["list"]  # one call, however many attempts


async def test_a_list_that_keeps_failing_raises_after_the_attempts():
    """Past the retry policy's attempts, the last answer's error is raised."""
    async with two_tasks() as (fake, parts, _first, _second):
        fake.faults.add(Fault(kind="internal_error", endpoints="list"))
        with anyio.fail_after(5), pytest.raises(q.ServerError):
            await parts.queries.list_page({"page_no": "1"})
        assert 2 == parts.queries.budget.spent == fake.stats.count("list", 500)


async def test_model_of_reads_the_model_the_service_recorded():
    """A task's model comes from its row of the list; an unknown id has none."""
    async with two_tasks() as (_fake, parts, first, _second):
        assert first.task_id is not None
        with anyio.fail_after(5):
            assert MODEL == await parts.queries.model_of(first.task_id)
            assert await parts.queries.model_of("no-such-task") is None
        assert 2 == parts.queries.budget.spent


async def test_model_of_is_none_when_the_list_fails(caplog):
    """A list that cannot be read leaves the model unknown, logged, never raised."""
    async with two_tasks() as (fake, parts, first, _second):
        assert first.task_id is not None
        fake.faults.add(Fault(kind="internal_error", endpoints="list"))
        with anyio.fail_after(5), caplog.at_level(logging.INFO, logger="aioqwenimage"):
            assert await parts.queries.model_of(first.task_id) is None
        assert any("could not be listed" in r.getMessage() for r in caplog.records)


async def test_cancel_is_true_only_for_a_pending_task():
    """The service cancels a PENDING task (True) and refuses a RUNNING one (False); each costs."""
    async with two_tasks() as (fake, parts, started, pending):
        assert pending.task_id is not None
        assert started.task_id is not None
        with anyio.fail_after(5):
            assert await parts.queries.cancel(pending.task_id)
            assert not await parts.queries.cancel(started.task_id)
        assert "CANCELED" == remote_status(fake, pending.task_id)
        assert "RUNNING" == remote_status(fake, started.task_id)
        assert (2, 2) == (parts.queries.budget.spent, parts.events.requests["cancel"])
        assert not pending.done()  # a query decides nothing for the handle


async def test_a_cancel_that_keeps_failing_is_false():
    """A cancel whose every attempt fails is False: the task may still run."""
    async with two_tasks() as (fake, parts, _started, pending):
        assert pending.task_id is not None
        fake.faults.add(Fault(kind="unavailable", endpoints="cancel"))
        with anyio.fail_after(5):
            assert not await parts.queries.cancel(pending.task_id)
        assert "PENDING" == remote_status(fake, pending.task_id)
        assert (2, 1) == (parts.queries.budget.spent, parts.events.retries)
