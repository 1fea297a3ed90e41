"""The task list's query and pager (`_task_list`), on a fake list function and on the emulator."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import pytest

import aioqwenimage as q
from aioqwenimage._task_list import list_pages, list_query, task_status
from tests.conftest import make_client

UTC = dt.timezone.utc


class Pages:
    """A list endpoint serving fixed bodies by page number, recording each query."""

    def __init__(self, *bodies: Mapping[str, Any]) -> None:
        self.bodies = bodies
        self.queries: list[Mapping[str, str]] = []

    async def __call__(self, params: Mapping[str, str]) -> Mapping[str, Any]:
        self.queries.append(dict(params))
        return self.bodies[int(params["page_no"]) - 1]


async def read(pages: Pages, query: Mapping[str, str] | None = None) -> list[list[Any]]:
    return [rows async for rows in list_pages(pages, query or {"page_size": "2"})]


def test_the_query_holds_every_filter_in_the_services_form():
    """Times become Beijing YYYYMMDDhhmmss; the status its value; only given filters appear."""
    query = list_query(
        page_size=100,
        start=dt.datetime(2027, 1, 15, 8, 0, tzinfo=UTC),
        end=dt.datetime(2027, 1, 15, 9, 30, 15),  # noqa: DTZ001 - naive means UTC
        model="wan2.2-t2i-flash",
        status="SUCCEEDED",
        task_id="t-1",
    )
    assert {
        "page_size": "100",
        "start_time": "20270115160000",
        "end_time": "20270115173015",
        "model_name": "wan2.2-t2i-flash",
        "status": "SUCCEEDED",
        "task_id": "t-1",
    } == query
    assert {"page_size": "5"} == list_query(page_size=5)
    assert {"page_size": "5", "start_time": "19700101080001"} == list_query(page_size=5, start=1.0)


def test_a_status_filter_is_a_status_or_its_value():
    """A TaskStatus or its value is accepted; anything else is an InvalidRequestError."""
    assert q.TaskStatus.FAILED == task_status("FAILED") == task_status(q.TaskStatus.FAILED)
    assert task_status(None) is None
    with pytest.raises(q.InvalidRequestError, match="status must be"):
        list_query(page_size=1, status="succeeded")


async def test_pages_are_followed_to_total_page():
    """Every page is asked for by number, with the query, until total_page."""
    pages = Pages(
        {"data": [{"task_id": "a"}, {"task_id": "b"}], "total_page": 3},
        {"data": [{"task_id": "c"}, {"task_id": "d"}], "total_page": 3},
        {"data": [{"task_id": "e"}], "total_page": 3},
    )
    rows = await read(pages, {"page_size": "2", "status": "RUNNING"})
    assert [["a", "b"], ["c", "d"], ["e"]] == [[r["task_id"] for r in page] for page in rows]
    assert [{"page_size": "2", "status": "RUNNING", "page_no": str(n)} for n in (1, 2, 3)] == (
        pages.queries
    )


@pytest.mark.parametrize(
    "first",
    [
        {"data": [{"task_id": "a"}]},  # no total_page
        {"data": [{"task_id": "a"}], "total_page": "9"},  # not a number
        {"data": [{"task_id": "a"}], "total_page": 1},
        {"data": [], "total_page": 9},  # an empty page is the last
        {"total_page": 9},  # no rows at all
    ],
)
async def test_an_odd_page_ends_the_listing(first):
    """A page without rows or without a usable total_page is the last one asked for."""
    pages = Pages(first, {"data": [{"task_id": "z"}], "total_page": 9})
    await read(pages)
    assert 1 == len(pages.queries)


async def test_rows_that_are_not_objects_are_left_out():
    """Strings and numbers among the rows are skipped; a non-list `data` yields nothing."""
    pages = Pages(
        {"data": ["x", 3, {"task_id": "a"}, None], "total_page": 2},
        {"data": {"task_id": "b"}, "total_page": 2},
    )
    assert [[{"task_id": "a"}], []] == await read(pages)


async def test_the_client_lists_the_emulators_tasks_page_by_page(fake):
    """Client.list_tasks, through the pager, finds every task of the emulator across pages."""
    async with make_client(fake) as client:
        handles = [await client.submit(f"p{i}", model="wan2.2-t2i-flash", n=1) for i in range(5)]
        for handle in handles:
            await handle
        before = client.stats.requests.get("list", 0)
        listed = [info async for info in client.list_tasks(page_size=2, status="SUCCEEDED")]
        lists = client.stats.requests.get("list", 0) - before

    assert sorted(h.task_id or "" for h in handles) == sorted(i.task_id for i in listed)
    assert 3 == lists  # 2 + 2 + 1
