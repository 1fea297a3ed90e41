"""Issue 9's wrong answers, end to end against the emulator: each answer now tells the truth."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import aioqwenimage as q
from aioqwenimage.testing import Fault, FaultKind


async def test_attach_without_a_model_learns_it_from_the_task_list(client, fake):
    """attach(task_id) without a model: the result names the model the service recorded."""
    handle = await client.submit("a fox", model="wan2.2-t2i-flash")
    assert handle.task_id is not None

    result = await client.attach(handle.task_id)

    assert "wan2.2-t2i-flash" == result.model


async def test_attach_of_a_task_the_list_does_not_know_reports_no_model(client, fake):
    """When the list cannot say, the model is None, never an empty string."""
    handle = await client.submit("a fox", model="qwen-image-plus")
    assert handle.task_id is not None
    await handle
    fake.faults.add(Fault(kind=FaultKind.INTERNAL_ERROR, endpoints="list"))

    result = await client.attach(handle.task_id)

    assert None is result.model


@pytest.mark.parametrize("model", ["qwen-image-edit-plus", "qwen-image-2.0"])
async def test_partial_failures_of_a_synchronous_answer_are_reported(client, fake, model):
    """An edit with n=3 and one image moderated: 2 images and one failure, as for tasks."""
    fake.faults.add(Fault(kind=FaultKind.IMAGE_MODERATION, endpoints="sync", times=1, images=1))

    result = await client.generate(
        "make it blue", model=model, n=3, images=["https://example.com/in.png"]
    )

    assert (2, 1) == (len(result.images), len(result.failures))
    assert 2 == result.failures[0].index


@pytest.mark.parametrize("status", [q.TaskStatus.SUCCEEDED, "SUCCEEDED"])
async def test_list_tasks_accepts_the_enum_or_its_value(client, status):
    """list_tasks(status=...) takes TaskStatus.SUCCEEDED or "SUCCEEDED" alike."""
    await client.generate("a fox", model="qwen-image-plus")

    rows = [row async for row in client.list_tasks(status=status)]

    assert [q.TaskStatus.SUCCEEDED] == [row.status for row in rows]


@pytest.mark.parametrize("status", ["DONE", 3, "succeeded "])
async def test_list_tasks_refuses_other_statuses_with_a_typed_error(client, status):
    """Anything else is an InvalidRequestError naming the parameter, before any request."""
    with pytest.raises(q.InvalidRequestError) as info:
        _ = [row async for row in client.list_tasks(status=status)]

    assert "status" == info.value.parameter
    assert 0 == client.stats.requests.get("list", 0)


async def test_uncertain_sync_call_says_it_is_not_a_task(client, fake):
    """A 500 on a synchronous call: the error says no task exists to look up."""
    fake.faults.add(Fault(kind=FaultKind.INTERNAL_ERROR, endpoints="sync", times=1))

    with pytest.raises(q.SubmissionUncertainError) as info:
        await client.generate("a fox", model="qwen-image-2.0")

    message = str(info.value)
    assert (False, False) == (info.value.creates_task, "list_tasks" in message)
    assert "synchronous" in message


async def test_uncertain_create_points_to_the_resolver_and_knows_when_it_was_sent(client, fake):
    """A 500 on a create: the error points to resolve_uncertain and carries what it needs."""
    fake.faults.add(Fault(kind=FaultKind.INTERNAL_ERROR, endpoints="create", times=1))
    before = time.time()

    with pytest.raises(q.SubmissionUncertainError) as info:
        await client.generate("a fox", model="wan2.2-t2i-flash", n=2, seed=5)

    error = info.value
    assert error.sent_at is not None
    assert (True, True) == (error.creates_task, before <= error.sent_at <= time.time())
    assert {"n": 2, "seed": 5} == dict(error.parameters)
    assert "resolve_uncertain" in str(error)


async def test_errors_about_input_images_name_the_model(client, tmp_path: Path):
    """A missing or oversized input image: the error names the model it was for."""
    with pytest.raises(q.InvalidRequestError) as missing:
        await client.generate("x", model="qwen-image-edit-plus", images=[tmp_path / "nowhere.png"])
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + b"\0" * (10 * 1024 * 1024))
    with pytest.raises(q.InvalidRequestError) as oversized:
        await client.generate("x", model="qwen-image-edit-max", images=[big])
    with pytest.raises(q.InvalidRequestError) as not_an_image:
        await client.generate("x", model="qwen-image-edit", images=[3.5])  # type: ignore[list-item]

    assert ("qwen-image-edit-plus", "qwen-image-edit-max", "qwen-image-edit") == (
        missing.value.model,
        oversized.value.model,
        not_an_image.value.model,
    )
    assert all(
        "images" == e.value.parameter and repr(e.value.model) in str(e.value)
        for e in (missing, oversized, not_an_image)
    )


async def test_partial_failures_of_a_wan26_task_are_reported(client, fake):
    """wan2.6 answers with choices, dropping failed images: the missing one is a failure."""
    fake.faults.add(Fault(kind=FaultKind.IMAGE_MODERATION, endpoints="create", times=1, images=1))

    result = await client.generate("a fox", model="wan2.6-t2i", n=3)

    assert (2, [2]) == (len(result.images), [f.index for f in result.failures])
