"""Client.resolve_uncertain end to end against the emulator: created, not created, or unknown."""

from __future__ import annotations

import pytest

import aioqwenimage as q
from aioqwenimage._matching import OrphanOutcome, Uncertain, decide
from aioqwenimage.testing import Fault, FaultKind
from tests.conftest import make_client

MODEL = "wan2.2-t2i-flash"


async def uncertain(client: q.Client, prompt: str = "a fox", **kwargs: object):
    with pytest.raises(q.SubmissionUncertainError) as info:
        await client.submit(prompt, model=MODEL, **kwargs)  # type: ignore[arg-type]
    return info.value


async def test_a_create_dropped_after_acceptance_resolves_to_its_task(client, fake):
    """The service made the task, the answer was lost: the resolver finds it and its images."""
    fake.faults.add(Fault(kind=FaultKind.DROP_AFTER, endpoints="create", times=1))
    error = await uncertain(client, n=2)
    assert 1 == sum(fake.stats.tasks_created.values())

    resolution = await client.resolve_uncertain(error)

    assert q.UncertainOutcome.CREATED == resolution.outcome
    assert resolution.handle is not None
    result = await resolution.handle
    assert (resolution.task_id, "a fox", 2) == (result.task_id, result.prompt, len(result.images))
    assert (resolution.task_id,) == resolution.examined
    assert 1 == sum(fake.stats.tasks_created.values())  # nothing was ordered again


async def test_a_create_dropped_before_the_service_resolves_to_nothing_created(client, fake):
    """The request never took effect: the resolver says so, with the window it listed."""
    fake.faults.add(Fault(kind=FaultKind.DROP_BEFORE, endpoints="create", times=1))
    error = await uncertain(client)

    resolution = await client.resolve_uncertain(error)

    assert (q.UncertainOutcome.NOT_CREATED, None, None) == (
        resolution.outcome,
        resolution.handle,
        resolution.task_id,
    )
    assert resolution.since is not None
    assert "0 task(s) of 'wan2.2-t2i-flash' listed since" in resolution.evidence
    assert 0 == sum(fake.stats.tasks_created.values())


async def test_other_tasks_of_the_model_are_examined_and_ruled_out(client, fake):
    """Tasks of other clients with another prompt, or more images, are followed and ruled out."""
    async with make_client(fake) as other:
        await other.generate("a cat", model=MODEL)
        await other.generate("a fox", model=MODEL, n=3)
    fake.faults.add(Fault(kind=FaultKind.DROP_BEFORE, endpoints="create", times=1))
    error = await uncertain(client, n=2)

    resolution = await client.resolve_uncertain(error)

    assert (q.UncertainOutcome.NOT_CREATED, 2) == (resolution.outcome, len(resolution.examined))


async def test_tasks_this_client_created_are_never_taken_for_the_uncertain_one(client, fake):
    """The same prompt, created successfully by this client before, is not the lost create."""
    await client.generate("a fox", model=MODEL)
    fake.faults.add(Fault(kind=FaultKind.DROP_BEFORE, endpoints="create", times=1))
    error = await uncertain(client)

    resolution = await client.resolve_uncertain(error)

    assert (q.UncertainOutcome.NOT_CREATED, ()) == (resolution.outcome, resolution.examined)


async def test_a_task_still_running_after_the_wait_leaves_it_unknown(client, fake):
    """wait=0: a task of the model that has not ended may be the one; the outcome is unknown."""
    fake.faults.add(Fault(kind=FaultKind.DROP_AFTER, endpoints="create", times=1))
    error = await uncertain(client)

    resolution = await client.resolve_uncertain(error, wait=0)

    assert q.UncertainOutcome.UNKNOWN == resolution.outcome
    assert "has not ended" in resolution.evidence


async def test_an_unreadable_task_list_leaves_it_unknown(client, fake):
    """When the list cannot be read, nothing is ruled out."""
    fake.faults.add(Fault(kind=FaultKind.DROP_BEFORE, endpoints="create", times=1))
    error = await uncertain(client)
    fake.faults.add(Fault(kind=FaultKind.INTERNAL_ERROR, endpoints="list"))

    resolution = await client.resolve_uncertain(error)

    assert q.UncertainOutcome.UNKNOWN == resolution.outcome
    assert "could not be read" in resolution.evidence


async def test_a_synchronous_call_is_never_looked_up(client, fake):
    """A sync call creates no task: unknown at once, without listing anything."""
    fake.faults.add(Fault(kind=FaultKind.INTERNAL_ERROR, endpoints="sync", times=1))
    with pytest.raises(q.SubmissionUncertainError) as info:
        await client.generate("a fox", model="qwen-image-2.0")

    resolution = await client.resolve_uncertain(info.value)

    assert q.UncertainOutcome.UNKNOWN == resolution.outcome
    assert "creates no task" in resolution.evidence
    assert 0 == client.stats.requests.get("list", 0)


@pytest.mark.parametrize("wait", [-1, float("nan"), "10", True])
async def test_bad_arguments_are_typed_errors(client, wait):
    """A wait that is not None or seconds >= 0, or an error of another kind, is refused."""
    error = q.SubmissionUncertainError("x", model=MODEL, prompt="a fox")
    with pytest.raises(q.InvalidRequestError) as bad_wait:
        await client.resolve_uncertain(error, wait=wait)
    with pytest.raises(q.InvalidRequestError) as bad_error:
        await client.resolve_uncertain(ValueError("x"))  # type: ignore[arg-type]
    assert ("wait", "error") == (bad_wait.value.parameter, bad_error.value.parameter)


# --- the matching, pure -------------------------------------------------------------------------

T0 = 1_800_000_000.0


def orphan(**fields: object) -> OrphanOutcome:
    base: dict[str, object] = {
        "task_id": "t1",
        "model": MODEL,
        "status": q.TaskStatus.SUCCEEDED,
        "prompt": "a fox",
    }
    return OrphanOutcome(**{**base, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("asked", "made", "adopted"),
    [
        ({"n": 2}, {"images": 2}, True),
        ({"n": 2}, {"images": 3}, False),
        ({"n": None}, {"images": 4}, True),
        ({"size": (1024, 1024)}, {"size": (1024, 1024)}, True),
        ({"size": (1024, 1024)}, {"size": (1440, 810)}, False),
        ({"size": (1024, 1024)}, {"size": None}, True),
    ],
)
def test_echoed_parameters_rule_a_task_in_or_out(asked, made, adopted):
    """A task that made more images, or another size, than the request asked is not its task."""
    item = Uncertain(seq=1, model=MODEL, prompt="a fox", sending_at=T0, **asked)
    decision = decide([item], [orphan(**made)], now=T0 + 60)
    assert adopted == (1 in decision.adopt)
    # Ruled out by its parameters, the ended task leaves the item safe to send again.
    assert (not adopted) == (1 in decision.resend)
