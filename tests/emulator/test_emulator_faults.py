"""The emulator over HTTP: injected faults, the file host, admin endpoints, stats, lifecycle."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
import struct
import zlib
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from aioqwenimage.testing import EmulatorLimits, FakeDashScope, Fault, FaultKind

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

T0 = 1_800_000_000.0
E1 = "/services/aigc/text2image/image-synthesis"
E2 = "/services/aigc/multimodal-generation/generation"
ASYNC = {"X-DashScope-Async": "enable"}


class Clock:
    """A wall clock that moves only when told."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def fake(clock: Clock) -> AsyncIterator[FakeDashScope]:
    """No limits, a fake clock, synchronous calls held for microseconds."""
    async with FakeDashScope(time_scale=1e-5, limits=None, clock=clock, seed=11) as emulator:
        yield emulator


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def call(
    session: aiohttp.ClientSession,
    fake: FakeDashScope,
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes, Any]:
    """One request with the key; (status, raw body, headers)."""
    merged = {"Authorization": f"Bearer {fake.api_key}", **(headers or {})}
    async with session.request(method, fake.base_url + path, json=body, headers=merged) as resp:
        return resp.status, await resp.read(), resp.headers


def create_body(model: str = "wan2.2-t2i-flash", n: int = 1) -> dict[str, Any]:
    return {"model": model, "input": {"prompt": "a fox"}, "parameters": {"n": n}}


def sync_body(model: str = "qwen-image-2.0", n: int = 1) -> dict[str, Any]:
    content = [{"text": "a fox"}]
    return {
        "model": model,
        "input": {"messages": [{"role": "user", "content": content}]},
        "parameters": {"n": n},
    }


async def create(session: aiohttp.ClientSession, fake: FakeDashScope, **kwargs: Any) -> str:
    status, raw, _ = await call(session, fake, "POST", E1, create_body(**kwargs), headers=ASYNC)
    assert 200 == status
    return str(json.loads(raw)["output"]["task_id"])


async def query(session: aiohttp.ClientSession, fake: FakeDashScope, task_id: str) -> Any:
    _, raw, _ = await call(session, fake, "GET", f"/tasks/{task_id}")
    return json.loads(raw)


# --- error faults ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("throttle", 429, "Throttling.RateQuota"),
        ("internal_error", 500, "InternalError"),
        ("unavailable", 503, "ModelUnavailable"),
        ("moderation", 400, "DataInspectionFailed"),
    ],
)
async def test_error_faults_on_create_create_nothing(
    fake: FakeDashScope, session: aiohttp.ClientSession, kind: str, status: int, code: str
):
    """An injected error answers its documented body and creates no task."""
    fake.faults.add(Fault(kind=kind, endpoints="create", times=1))
    answer, raw, headers = await call(session, fake, "POST", E1, create_body(), headers=ASYNC)
    body = json.loads(raw)
    assert (status, code, body["request_id"]) == (answer, body["code"], headers["X-Request-ID"])
    assert ({}, 0) == (dict(fake.stats.tasks_created), len(fake.faults))
    if status == 429:
        assert ("1e-05", 1) == (headers["Retry-After"], fake.stats.throttled)


async def test_fault_codes_and_messages_can_be_overridden(
    fake: FakeDashScope, session: aiohttp.ClientSession
):
    """code= and message= replace the injected error's defaults."""
    fake.faults.add(Fault(kind="internal_error", code="InternalError.Algo", message="algo"))
    _, raw, _ = await call(session, fake, "GET", "/tasks/x")
    assert ("InternalError.Algo", "algo") == (json.loads(raw)["code"], json.loads(raw)["message"])


async def test_throttle_faults_on_queries_carry_retry_after(
    fake: FakeDashScope, session: aiohttp.ClientSession
):
    """A throttled query is 429 with Retry-After scaled from the fault's retry_after."""
    fake.faults.add(Fault(kind=FaultKind.THROTTLE, endpoints=["query"], retry_after=3, times=2))
    statuses = [(await call(session, fake, "GET", "/tasks/x"))[0] for _ in range(3)]
    assert [429, 429, 200] == statuses
    _, _, headers = await call(session, fake, "GET", "/tasks")
    assert "Retry-After" not in headers


async def test_drop_before_closes_the_connection_and_creates_nothing(
    fake: FakeDashScope, session: aiohttp.ClientSession
):
    """drop_before closes the connection with no answer; nothing is created."""
    fake.faults.add(Fault(kind="drop_before", endpoints="create", times=1))
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await call(session, fake, "POST", E1, create_body(), headers=ASYNC)
    assert ({}, 1) == (dict(fake.stats.tasks_created), fake.stats.count("create", 0))


async def test_drop_after_creates_the_task_but_loses_the_answer(
    fake: FakeDashScope, session: aiohttp.ClientSession
):
    """drop_after: the task exists (the ambiguous case) though no answer arrives."""
    fake.faults.add(Fault(kind="drop_after", endpoints="create", times=1))
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await call(session, fake, "POST", E1, create_body(), headers=ASYNC)
    (report,) = fake.stats.tasks.values()
    assert ("wan2.2-t2i-flash", "PENDING") == (report.model, report.status)


async def test_malformed_answers_are_cut_json(fake: FakeDashScope, session: aiohttp.ClientSession):
    """malformed: a 200 whose body is not valid JSON; the request still took effect."""
    fake.faults.add(Fault(kind="malformed", endpoints="create", times=1))
    status, raw, _ = await call(session, fake, "POST", E1, create_body(), headers=ASYNC)
    assert 200 == status
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw)
    assert 1 == fake.stats.tasks_created["wan2.2-t2i-flash"]


async def test_delay_faults_slow_the_answer(fake: FakeDashScope, session: aiohttp.ClientSession):
    """delay: the answer comes late by the simulated delay, scaled."""
    fake.faults.add(Fault(kind="delay", delay=2_000.0, endpoints="list"))  # 20 ms real
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, _, _ = await call(session, fake, "GET", "/tasks")
    assert (200, True) == (status, loop.time() - started >= 0.02)


# --- outcome faults --------------------------------------------------------------------------


async def test_task_failed_tasks_end_failed(
    fake: FakeDashScope, session: aiohttp.ClientSession, clock: Clock
):
    """task_failed: the task ends FAILED with output.code/message and all-failed metrics."""
    fake.faults.add(Fault(kind="task_failed", times=1))
    task_id = await create(session, fake, n=2)
    clock.advance(0.01)
    output = (await query(session, fake, task_id))["output"]
    assert ("FAILED", "InternalError") == (output["task_status"], output["code"])
    assert {"TOTAL": 2, "SUCCEEDED": 0, "FAILED": 2} == output["task_metrics"]
    assert {"results", "usage"}.isdisjoint(output)


async def test_partial_moderation_keeps_the_task_succeeded(
    fake: FakeDashScope, session: aiohttp.ClientSession, clock: Clock
):
    """image_moderation on 1 of 4 images: SUCCEEDED, one failure item, 3 billed images."""
    fake.faults.add(Fault(kind="image_moderation", images=1))
    task_id = await create(session, fake, n=4)
    clock.advance(0.01)
    body = await query(session, fake, task_id)
    output = body["output"]
    assert ("SUCCEEDED", {"image_count": 3}) == (output["task_status"], body["usage"])
    assert {"TOTAL": 4, "SUCCEEDED": 3, "FAILED": 1} == output["task_metrics"]
    assert {
        "code": "DataInspectionFailed",
        "message": "Output data may contain inappropriate content.",
    } == output["results"][3]


async def test_failed_qwen_tasks_carry_no_metrics(
    fake: FakeDashScope, session: aiohttp.ClientSession, clock: Clock
):
    """A FAILED qwen-image-plus task has code and message but no task_metrics."""
    fake.faults.add(Fault(kind="task_failed", code="DataInspectionFailed", times=1))
    task_id = await create(session, fake, model="qwen-image-plus")
    clock.advance(0.01)
    output = (await query(session, fake, task_id))["output"]
    assert ("FAILED", "DataInspectionFailed", False) == (
        output["task_status"],
        output["code"],
        "task_metrics" in output,
    )


async def test_full_moderation_fails_the_task(
    fake: FakeDashScope, session: aiohttp.ClientSession, clock: Clock
):
    """image_moderation covering every image makes the task FAILED."""
    fake.faults.add(Fault(kind="image_moderation", images=9))
    task_id = await create(session, fake, n=2)
    clock.advance(0.01)
    output = (await query(session, fake, task_id))["output"]
    assert ("FAILED", "DataInspectionFailed") == (output["task_status"], output["code"])


async def test_sync_outcome_faults(fake: FakeDashScope, session: aiohttp.ClientSession):
    """On sync calls: task_failed is an error answer; image_moderation drops images."""
    fake.faults.add(Fault(kind="task_failed", endpoints="sync", times=1))
    status, raw, _ = await call(session, fake, "POST", E2, sync_body())
    assert (500, "InternalError") == (status, json.loads(raw)["code"])
    fake.faults.add(Fault(kind="image_moderation", images=1, times=1))
    status, raw, _ = await call(session, fake, "POST", E2, sync_body("qwen-image-max"))
    assert (400, "DataInspectionFailed") == (status, json.loads(raw)["code"])
    fake.faults.add(Fault(kind="image_moderation", images=1, times=1))
    status, raw, _ = await call(
        session,
        fake,
        "POST",
        E2,
        sync_body("qwen-image-edit-plus", n=3)
        | {
            "input": {
                "messages": [{"role": "user", "content": [{"image": "https://a"}, {"text": "x"}]}]
            }
        },
    )
    body = json.loads(raw)
    assert (200, 2, {"TOTAL": 3, "SUCCEEDED": 2, "FAILED": 1}) == (
        status,
        body["usage"]["image_count"],
        body["output"]["task_metric"],
    )
    assert [500, 400, 200] == [r.status for r in fake.stats.sync_calls]


async def test_rated_faults_are_reproducible(clock: Clock, session: aiohttp.ClientSession):
    """Two emulators with one seed inject the same rate faults on the same requests."""
    runs = []
    for _ in range(2):
        async with FakeDashScope(limits=None, clock=clock, seed=5) as fake:
            fake.faults.add(Fault(kind="unavailable", rate=0.5, endpoints="query"))
            runs.append([(await call(session, fake, "GET", "/tasks/x"))[0] for _ in range(20)])
    assert runs[0] == runs[1]
    assert {200, 503} == set(runs[0])


# --- the file host ---------------------------------------------------------------------------


async def _result_urls(
    fake: FakeDashScope, session: aiohttp.ClientSession, clock: Clock
) -> list[str]:
    body = create_body(n=2) | {"parameters": {"n": 2, "size": "768*512"}}
    _, raw, _ = await call(session, fake, "POST", E1, body, headers=ASYNC)
    clock.advance(0.01)
    output = (await query(session, fake, json.loads(raw)["output"]["task_id"]))["output"]
    return [r["url"] for r in output["results"]]


async def test_result_files_are_pngs_of_the_requested_size(
    fake: FakeDashScope, session: aiohttp.ClientSession, clock: Clock
):
    """A result URL serves a real PNG of the requested size, from another port."""
    url, _ = await _result_urls(fake, session, clock)
    assert url.startswith(fake.files_base_url)
    assert fake.files_base_url.rsplit(":", 1)[1] != fake.base_url.split(":")[2].split("/")[0]
    async with session.get(url) as resp:
        data = await resp.read()
        assert (200, "image/png") == (resp.status, resp.headers["Content-Type"])
    assert (768, 512) == struct.unpack(">II", data[16:24])
    assert zlib.decompress(data[41 : len(data) - 16])[:1] == b"\x00"
    async with session.head(url) as resp:
        assert (200, b"") == (resp.status, await resp.read())
    assert (2, 0, 1) == (
        fake.stats.file_requests,
        fake.stats.file_requests_with_authorization,
        fake.stats.file_connections,
    )


async def test_file_requests_with_the_api_key_are_counted(
    fake: FakeDashScope, session: aiohttp.ClientSession, clock: Clock
):
    """A download that sends Authorization is served but counted: clients must not send it."""
    url, _ = await _result_urls(fake, session, clock)
    async with session.get(url, headers={"Authorization": f"Bearer {fake.api_key}"}) as resp:
        assert 200 == resp.status
    assert 1 == fake.stats.file_requests_with_authorization


async def test_expired_urls_are_403_xml(
    fake: FakeDashScope, session: aiohttp.ClientSession, clock: Clock
):
    """After the URL lifetime (24 h, scaled) OSS answers 403 AccessDenied in XML."""
    url, _ = await _result_urls(fake, session, clock)
    clock.advance(1.0)  # 24 h at time_scale 1e-5 is 0.864 s
    async with session.get(url) as resp:
        text = await resp.text()
        assert (403, "application/xml") == (resp.status, resp.headers["Content-Type"])
    assert "<Code>AccessDenied</Code>" in text
    assert "<Message>Request has expired.</Message>" in text


@pytest.mark.parametrize(
    ("mangle", "status", "code"),
    [
        (lambda u: u.replace("Signature=", "Signature=x"), 403, "SignatureDoesNotMatch"),
        (lambda u: u.split("?")[0], 403, "AccessDenied"),
        (lambda u: u.replace(".png?", ".jpg?"), 404, "NoSuchKey"),
    ],
    ids=["forged", "unsigned", "missing"],
)
async def test_bad_file_urls_get_oss_errors(
    fake: FakeDashScope,
    session: aiohttp.ClientSession,
    clock: Clock,
    *,
    mangle,
    status: int,
    code: str,
):
    """Forged, unsigned or unknown objects get OSS's refusals."""
    url, _ = await _result_urls(fake, session, clock)
    async with session.get(mangle(url)) as resp:
        assert (status, True) == (resp.status, f"<Code>{code}</Code>" in await resp.text())


async def test_file_host_faults_and_methods(
    fake: FakeDashScope, session: aiohttp.ClientSession, clock: Clock
):
    """File faults answer OSS-style errors or drop; other methods are 405."""
    url, _ = await _result_urls(fake, session, clock)
    fake.faults.add(Fault(kind="unavailable", endpoints="file", times=1))
    async with session.get(url) as resp:
        assert (503, True) == (resp.status, "ModelUnavailable" in await resp.text())
    # Twice: aiohttp itself re-sends an idempotent request once after a disconnect.
    fake.faults.add(Fault(kind="drop_before", endpoints="file", times=2))
    with pytest.raises(aiohttp.ServerDisconnectedError):
        async with session.get(url) as resp:
            await resp.read()
    async with session.put(url) as resp:
        assert 405 == resp.status
    fake.faults.add(Fault(kind="throttle", endpoints="file", times=1, retry_after=2))
    async with session.get(url) as resp:
        assert (429, "2e-05") == (resp.status, resp.headers["Retry-After"])
    assert {0: 2, 405: 1, 429: 1, 503: 1} == dict(fake.stats.requests["file"])
    assert 1 == fake.stats.throttled


async def test_file_host_bugs_become_quiet_500s(
    fake: FakeDashScope,
    session: aiohttp.ClientSession,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
):
    """An unexpected error on the file host is an OSS-style 500, never a traceback."""
    url, _ = await _result_urls(fake, session, clock)

    def broken(*_args: Any) -> tuple[int, int]:
        raise KeyError("bug")

    monkeypatch.setattr(fake._engine.signer, "check", broken)
    async with session.get(url) as resp:
        assert (500, True) == (resp.status, "<Code>InternalError</Code>" in await resp.text())


# --- admin and stats -------------------------------------------------------------------------


async def test_admin_endpoints_need_no_key(fake: FakeDashScope, session: aiohttp.ClientSession):
    """Stats, faults and reset work without an API key, for another process's harness."""
    admin = fake.admin_url
    async with session.post(f"{admin}/faults", json={"kind": "throttle", "times": 1}) as resp:
        armed = (await resp.json())["faults"]
    assert [("throttle", 1)] == [(f["kind"], f["times"]) for f in armed]
    async with session.post(f"{admin}/faults", json=[{"kind": "delay", "delay": 0.1}]) as resp:
        assert 2 == len((await resp.json())["faults"])
    async with session.get(f"{admin}/faults") as resp:
        assert 2 == len((await resp.json())["faults"])
    async with session.delete(f"{admin}/faults") as resp:
        assert ([], 0) == ((await resp.json())["faults"], len(fake.faults))


@pytest.mark.parametrize(
    "payload",
    [
        {"kind": "boom"},
        [],
        [1],
        "throttle",
        {"kind": "throttle", "x": 1},
        {"kind": "delay", "delay": None},
    ],
)
async def test_admin_refuses_bad_faults(
    fake: FakeDashScope, session: aiohttp.ClientSession, payload: Any
):
    """Malformed faults are 400 InvalidParameter, and nothing is armed."""
    async with session.post(f"{fake.admin_url}/faults", json=payload) as resp:
        assert (400, "InvalidParameter") == (resp.status, (await resp.json())["code"])
    assert 0 == len(fake.faults)


async def test_admin_stats_and_reset(
    fake: FakeDashScope, session: aiohttp.ClientSession, clock: Clock
):
    """GET stats reports requests, tasks and the per-task report; POST reset clears them."""
    task_id = await create(session, fake)
    clock.advance(0.01)
    await query(session, fake, task_id)
    await query(session, fake, task_id)
    async with session.get(f"{fake.admin_url}/stats") as resp:
        stats = await resp.json()
    (report,) = stats["tasks"]
    assert (task_id, 2, T0 + 0.01) == (
        report["task_id"],
        report["queries"],
        report["first_terminal_query"],
    )
    assert ({"200": 1}, {"200": 2}) == (stats["requests"]["create"], stats["requests"]["query"])
    assert ({"wan2.2-t2i-flash": 1}, 1) == (stats["tasks_created"], stats["peak_in_flight"])
    async with session.post(f"{fake.admin_url}/reset") as resp:
        assert 200 == resp.status
    await create(session, fake)
    fake.reset()
    assert ({}, 0, {}) == (
        fake.stats.tasks,
        fake.stats.peak_in_flight,
        dict(fake.stats.tasks_created),
    )
    assert "UNKNOWN" == (await query(session, fake, task_id))["output"]["task_status"]


async def test_stats_report_in_flight_per_model_and_the_busiest_second_of_task_calls(
    session: aiohttp.ClientSession, clock: Clock
):
    """Per model, tasks in flight now and at most; the most task calls in one simulated second."""
    scale = 1e-3
    limits = EmulatorLimits(task_queries_per_second=2)
    async with FakeDashScope(time_scale=scale, limits=limits, clock=clock, seed=11) as fake:
        first = await create(session, fake, model="qwen-image-plus")
        clock.advance(0.6 * scale)  # qwen-image-plus admits 2 creates per simulated second
        await create(session, fake, model="qwen-image-plus")
        await create(session, fake, model="wan2.2-t2i-flash")
        for _ in range(3):  # the third is throttled, and still arrived
            await query(session, fake, first)
        clock.advance(1.5 * scale)  # the next simulated second
        assert 200 == (await call(session, fake, "GET", "/tasks"))[0]
        stats = fake.stats.to_dict(tasks=False)

        assert 1 == fake.stats.count("query", 429)
        assert 3 == stats["peak_task_calls_per_second"]
        assert {"qwen-image-plus": 2, "wan2.2-t2i-flash": 1} == stats["in_flight_by_model"]
        assert stats["in_flight_by_model"] == stats["peak_in_flight_by_model"]

        clock.advance(1000 * scale)  # every task has ended
        assert {"qwen-image-plus": 0, "wan2.2-t2i-flash": 0} == fake.stats.in_flight_by_model
        assert {"qwen-image-plus": 2, "wan2.2-t2i-flash": 1} == fake.stats.peak_in_flight_by_model
        fake.reset()
        stats = fake.stats.to_dict(tasks=False)
        assert ({}, 0) == (stats["peak_in_flight_by_model"], stats["peak_task_calls_per_second"])


async def test_stats_count_connections_and_expired_reports(
    fake: FakeDashScope, session: aiohttp.ClientSession, clock: Clock
):
    """Stats count accepted TCP connections and keep expired tasks' reports as UNKNOWN."""
    task_id = await create(session, fake)
    async with aiohttp.ClientSession() as other:
        await query(other, fake, task_id)
    assert 1 == fake.stats.in_flight
    clock.advance(10)
    assert ("UNKNOWN", 2) == (fake.stats.tasks[task_id].status, fake.stats.connections)
    snapshot = fake.stats.to_dict(tasks=False)
    assert ("tasks" not in snapshot, 0) == (True, snapshot["in_flight"])
    assert (1, 0) == (fake.stats.count("create"), fake.stats.count("sync"))


# --- lifecycle -------------------------------------------------------------------------------


async def test_lifecycle_rules():
    """An emulator starts once, answers only while running, and closes idempotently."""
    fake = FakeDashScope()
    assert "new" in repr(fake)
    with pytest.raises(RuntimeError, match="not running"):
        _ = fake.base_url
    await fake.start()
    assert (True, True) == (
        fake.base_url.startswith("http://127.0.0.1:"),
        fake.base_url.endswith("/api/v1"),
    )
    with pytest.raises(RuntimeError, match="starts once"):
        await fake.start()
    await fake.close()
    await fake.close()
    with pytest.raises(RuntimeError, match="closed"):
        _ = fake.files_base_url


async def test_explicit_ports_and_busy_ports():
    """Given ports are used; a busy port raises OSError and leaves nothing open."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with FakeDashScope(port=port) as fake:
        assert f"http://127.0.0.1:{port}/api/v1" == fake.base_url
        with pytest.raises(OSError):
            await FakeDashScope(port=port).start()


async def test_close_cuts_held_sync_calls(session: aiohttp.ClientSession):
    """Closing while a synchronous call is held disconnects it promptly."""
    fake = FakeDashScope(durations={"*": (60.0, 60.0)})
    await fake.start()
    request = asyncio.ensure_future(call(session, fake, "POST", E2, sync_body()))
    while fake.stats.sync_in_flight == 0:
        await asyncio.sleep(0.001)
    await fake.close()
    with pytest.raises(aiohttp.ClientError):
        await request
    assert fake.stats.peak_sync_in_flight == 1


async def test_unexpected_errors_become_quiet_500s(
    fake: FakeDashScope, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
):
    """A bug in a handler answers a JSON 500, never a traceback."""

    def broken(*_args: Any) -> bytes:
        raise KeyError("bug")

    monkeypatch.setattr(fake._engine, "list_tasks", broken)
    status, raw, _ = await call(session, fake, "GET", "/tasks")
    assert (500, "InternalError") == (status, json.loads(raw)["code"])


async def test_garbage_requests_are_answered_quietly(
    fake: FakeDashScope, capsys: pytest.CaptureFixture[str]
):
    """Bytes that are not HTTP close the connection, and nothing is printed."""
    host, port = fake.base_url.split("//")[1].split("/")[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"\x16\x03\x01 garbage\r\n\r\n")
    await writer.drain()
    await reader.read()  # a 400 or a plain close
    writer.close()
    await writer.wait_closed()
    assert ("", "") == tuple(capsys.readouterr())


def test_server_log_records_are_demoted_to_debug(caplog: pytest.LogCaptureFixture):
    """aiohttp's error and exception records reach the emulator's logger at DEBUG only."""
    from aioqwenimage.testing._sites import QuietLogger

    caplog.set_level(logging.DEBUG, logger="aioqwenimage.testing.server")
    quiet = QuietLogger(logging.getLogger("aioqwenimage.testing.server"), {})
    try:
        raise ValueError("boom")  # noqa: TRY301 - a live exception for exc_info
    except ValueError:
        quiet.exception("Error handling request")
    quiet.error("worse")
    assert [("DEBUG", "Error handling request"), ("DEBUG", "worse")] == [
        (r.levelname, r.getMessage()) for r in caplog.records
    ]


async def test_deeply_nested_json_is_a_400(fake: FakeDashScope, session: aiohttp.ClientSession):
    """A body nested past the JSON parser's recursion limit is a 400, not a 500."""
    async with session.post(
        fake.base_url + E1,
        data=b"[" * 100_000,
        headers={"Authorization": f"Bearer {fake.api_key}", **ASYNC},
    ) as resp:
        assert (400, "InvalidParameter") == (resp.status, (await resp.json())["code"])


async def test_extreme_but_valid_sizes_are_served(
    fake: FakeDashScope, session: aiohttp.ClientSession
):
    """qwen-image-2.0 accepts any W*H within its pixel bounds; its PNG is drawn as asked."""
    body = sync_body() | {"parameters": {"size": "64*65536"}}
    status, raw, _ = await call(session, fake, "POST", E2, body)
    url = json.loads(raw)["output"]["choices"][0]["message"]["content"][0]["image"]
    async with session.get(url) as resp:
        data = await resp.read()
    assert (200, 200, (64, 65536)) == (status, resp.status, struct.unpack(">II", data[16:24]))


async def test_large_uploads_stream_fine(fake: FakeDashScope, session: aiohttp.ClientSession):
    """A multi-megabyte body below the limit is read and validated normally."""
    body = sync_body("qwen-image-edit-plus")
    image = "data:image/png;base64," + "A" * (3 * 1024 * 1024)
    body["input"]["messages"][0]["content"].insert(0, {"image": image})
    async with session.post(
        fake.base_url + E2,
        data=io.BytesIO(json.dumps(body).encode()),
        headers={"Authorization": f"Bearer {fake.api_key}", "Content-Type": "application/json"},
    ) as resp:
        assert 200 == resp.status
