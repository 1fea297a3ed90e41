"""
Never executed: type-checked by mypy to pin the public API as users write it (stamina's way).
"""

from __future__ import annotations

from pathlib import Path

import aioqwenimage
from aioqwenimage.testing import FakeDashScope


async def generate() -> Path:
    async with aioqwenimage.Client(
        api_key="sk-...",
        region="singapore",
        base_url=None,
        workspace=None,
        limits=aioqwenimage.Limits(
            queries_per_second=15,
            max_in_flight=None,
            models={
                "qwen-image-plus": aioqwenimage.ModelLimits(in_flight=50, submits_per_second=10)
            },
        ),
        poll=aioqwenimage.PollPolicy(first_poll=5.0),
        timeouts=aioqwenimage.Timeouts(generation=300),
        pools=aioqwenimage.PoolLimits(control=32),
        retry=aioqwenimage.RetryPolicy(attempts=5),
        event_hooks=[print],
        proxy="http://proxy.example:3128",
        trust_env=True,
    ) as client:
        result: aioqwenimage.GenerationResult = await client.generate(
            "a red fox in snow", model="qwen-image-plus", size="1328*1328"
        )
        path: Path = await result.images[0].save("out/")
        data: bytes = await result.images[0].read()
        assert data

        handle: aioqwenimage.TaskHandle = await client.submit("a lighthouse at dusk", n=1, seed=7)
        task_id: str | None = handle.task_id
        status: aioqwenimage.TaskStatus = handle.status
        again: aioqwenimage.GenerationResult = await handle
        waited: aioqwenimage.GenerationResult = await handle.wait(timeout=120)
        await handle.cancel()
        seen: list[object] = [task_id, status, again, waited]

        attached: aioqwenimage.TaskHandle = client.attach("task-id")
        seen.append(attached)
        async for outcome in client.map(["a", {"prompt": "b", "n": 2}], model="wan2.2-t2i-flash"):
            ok: bool = outcome.ok
            error: aioqwenimage.QwenImageError | None = outcome.error
            assert ok or error
        async for info in client.list_tasks(status="SUCCEEDED"):
            row: aioqwenimage.TaskInfo = info
            seen.append(row)
        cancelled: bool = await client.cancel("task-id")
        stats: aioqwenimage.ClientStats = client.stats
        seen.extend([cancelled, stats])
        return path


async def recover(client: aioqwenimage.Client) -> aioqwenimage.GenerationResult | None:
    try:
        return await client.generate("a red fox", model="wan2.2-t2i-flash")
    except aioqwenimage.SubmissionUncertainError as exc:
        sent_at: float | None = exc.sent_at
        creates_task: bool = exc.creates_task
        assert creates_task or sent_at
        resolution: aioqwenimage.UncertainResolution = await client.resolve_uncertain(exc, wait=60)
        outcome: aioqwenimage.UncertainOutcome = resolution.outcome
        evidence: str = resolution.evidence
        examined: tuple[str, ...] = resolution.examined
        assert evidence and examined is not None
        if outcome is aioqwenimage.UncertainOutcome.CREATED and resolution.handle is not None:
            return await resolution.handle
        return None


def blocking() -> Path:
    with aioqwenimage.SyncClient(api_key="sk-...", region="singapore", time_scale=None) as client:
        result: aioqwenimage.GenerationResult = client.generate("a red fox", size=(1328, 1328))
        paths: list[Path] = client.save_images(result, "out/")
        path: Path = client.save_image(result.images[0], "out/")
        data: bytes = client.read_image(result.images[0])
        handle: aioqwenimage.SyncTaskHandle = client.submit("a lighthouse", n=1)
        task_id: str | None = handle.task_id
        status: aioqwenimage.TaskStatus = handle.status
        done: bool = handle.done()
        waited: aioqwenimage.GenerationResult = handle.wait(timeout=120)
        again: aioqwenimage.GenerationResult = handle.result()
        cancelled: bool = handle.cancel() or client.cancel("task-id")
        attached: aioqwenimage.SyncTaskHandle = client.attach("task-id", model="qwen-image-plus")
        outcomes: list[aioqwenimage.Outcome] = list(client.map(["a", {"prompt": "b"}]))
        rows: list[aioqwenimage.TaskInfo] = list(client.list_tasks(model="qwen-image-plus"))
        stats: aioqwenimage.ClientStats = client.stats
        seen: list[object] = [paths, data, task_id, status, done, waited, again, cancelled]
        seen.extend([attached, outcomes, rows, stats])
    client.close()
    return path


async def emulate() -> None:
    async with FakeDashScope(time_scale=0.01) as fake:
        base_url: str = fake.base_url
        key: str = fake.api_key
        assert base_url and key
        async with fake.client(seed=1) as client:
            assert isinstance(client, aioqwenimage.Client)
    with FakeDashScope(time_scale=0.01) as threaded:
        env: dict[str, str] = threaded.environ
        assert env
        with threaded.sync_client() as blocking_client:
            assert isinstance(blocking_client, aioqwenimage.SyncClient)
        threaded.reset()
    other = FakeDashScope()
    other.start_in_thread()
    other.stop_thread()


def errors() -> None:
    try:
        pass
    except aioqwenimage.SubmissionUncertainError as exc:
        model: str = exc.model
        assert model
    except aioqwenimage.TaskTimeoutError as exc:
        task: str | None = exc.task_id
        assert task
    except aioqwenimage.APIError as exc:
        code: str | None = exc.code
        http: int | None = exc.status
        assert code or http
