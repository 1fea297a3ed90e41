"""The emulator over HTTP: endpoints, body rules, task lifecycles, list, cancel and limits.

The emulator runs on 127.0.0.1 with an injected wall clock, so task lifecycles, windows and
retention are stepped through without waiting; synchronous calls hold for microseconds.
"""

from __future__ import annotations

import io
import json
import uuid
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from aioqwenimage.testing import EmulatorLimits, FakeDashScope, ModelQuota
from aioqwenimage.testing._wire import format_time

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

T0 = 1_800_000_000.0
E1 = "/services/aigc/text2image/image-synthesis"
E2 = "/services/aigc/multimodal-generation/generation"
E3 = "/services/aigc/image-generation/generation"


class Clock:
    """A wall clock that moves only when told."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Api:
    """A thin JSON client for one emulator."""

    def __init__(self, fake: FakeDashScope, session: aiohttp.ClientSession) -> None:
        self.fake = fake
        self.session = session
        self.auth = {"Authorization": f"Bearer {fake.api_key}"}

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        data: bytes | None = None,
    ) -> tuple[int, Any, Any]:
        merged = {**self.auth, **(headers or {})}
        kwargs: dict[str, Any] = {"headers": merged, "params": params}
        if data is not None:
            # A stream, not bytes: aiohttp warns about large raw-bytes bodies.
            kwargs["data"] = io.BytesIO(data)
        elif body is not None:
            kwargs["json"] = body
        async with self.session.request(method, self.fake.base_url + path, **kwargs) as resp:
            text = await resp.text()
            return resp.status, json.loads(text), resp.headers

    async def create(self, model: str, prompt: str = "a red fox", path: str = E1, **params: Any):
        """POST a task-creating request; (status, body, headers)."""
        if path == E1:
            body: dict[str, Any] = {"model": model, "input": {"prompt": prompt}}
        else:
            body = {"model": model, "input": messages(prompt)}
        body["parameters"] = params
        return await self.call("POST", path, body, headers={"X-DashScope-Async": "enable"})

    async def task_id(self, model: str, prompt: str = "a red fox", **params: Any) -> str:
        status, body, _ = await self.create(model, prompt, **params)
        assert (200, body) == (status, body) if status != 200 else True
        return str(body["output"]["task_id"])

    async def query(self, task_id: str) -> dict[str, Any]:
        status, body, _ = await self.call("GET", f"/tasks/{task_id}")
        assert 200 == status
        return dict(body)

    async def sync(self, model: str, prompt: str = "a red fox", images: int = 0, **params: Any):
        body = {"model": model, "input": messages(prompt, images), "parameters": params}
        return await self.call("POST", E2, body)


def messages(prompt: str, images: int = 0) -> dict[str, Any]:
    content: list[dict[str, str]] = [{"image": f"https://img/{i}.png"} for i in range(images)]
    content.append({"text": prompt})
    return {"messages": [{"role": "user", "content": content}]}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def start(
    clock: Clock, session: aiohttp.ClientSession
) -> AsyncIterator[Callable[..., Awaitable[Api]]]:
    """Start emulators (fake clock; sync holds compressed to microseconds) and close them."""
    fakes: list[FakeDashScope] = []

    async def make(**kwargs: Any) -> Api:
        kwargs.setdefault("clock", clock)
        fake = FakeDashScope(**kwargs)
        await fake.start()
        fakes.append(fake)
        return Api(fake, session)

    yield make
    for fake in fakes:
        await fake.close()


@pytest.fixture
async def api(start: Callable[..., Awaitable[Api]]) -> Api:
    """An emulator with documented limits, real-time durations on the fake clock."""
    return await start(time_scale=1.0)


@pytest.fixture
async def fast(start: Callable[..., Awaitable[Api]]) -> Api:
    """An emulator whose synchronous calls hold only microseconds, without limits."""
    return await start(time_scale=1e-5, limits=None)


# --- auth, headers, envelopes ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "No API-key provided."),
        ("Bearer sk-wrong", "Invalid API-key provided."),
        ("Basic sk-fake-aioqwenimage", "Invalid API-key provided."),
    ],
)
async def test_requests_without_the_key_get_401(api: Api, header: str | None, message: str):
    """A missing or wrong key is 401 InvalidApiKey with the documented message."""
    api.auth = {} if header is None else {"Authorization": header}
    status, body, headers = await api.call("GET", "/tasks/abc")
    assert (401, "InvalidApiKey", message) == (status, body["code"], body["message"])
    assert body["request_id"] == headers["X-Request-ID"]
    assert uuid.UUID(body["request_id"])


async def test_bearer_scheme_is_case_insensitive(api: Api):
    """'bearer <key>' is accepted like 'Bearer <key>'."""
    api.auth = {"Authorization": f"bearer {api.fake.api_key}"}
    assert 200 == (await api.call("GET", "/tasks/abc"))[0]


@pytest.mark.parametrize("path", [E1, E3])
async def test_async_endpoints_require_the_async_header(api: Api, path: str):
    """E1 and E3 without X-DashScope-Async are 403 AccessDenied."""
    status, body, _ = await api.call("POST", path, {"model": "wan2.6-t2i"})
    expected = (403, "AccessDenied", "current user api does not support synchronous calls")
    assert expected == (status, body["code"], body["message"])


async def test_sync_endpoint_refuses_the_async_header(api: Api):
    """E2 with X-DashScope-Async: enable is 403 with the documented message."""
    status, body, _ = await api.call(
        "POST", E2, {"model": "qwen-image-max"}, headers={"X-DashScope-Async": "enable"}
    )
    expected = (403, "AccessDenied", "Current user api does not support asynchronous calls.")
    assert expected == (status, body["code"], body["message"])


async def test_create_answers_pending_with_a_uuid(api: Api, clock: Clock):
    """A create answers the documented PENDING body, without code or message."""
    status, body, headers = await api.create("qwen-image-plus")
    assert (200, "PENDING", {"output", "request_id"}) == (
        status,
        body["output"]["task_status"],
        set(body),
    )
    assert (body["request_id"], "application/json") == (
        headers["X-Request-ID"],
        headers["Content-Type"],
    )
    assert uuid.UUID(body["output"]["task_id"])


async def test_unknown_paths_and_methods_get_json_errors(api: Api):
    """Unknown paths are 404 and wrong methods 405 (with Allow), both as JSON error bodies."""
    status, body, _ = await api.call("GET", "/nope")
    assert (404, "NotFound") == (status, body["code"])
    status, body, headers = await api.call("DELETE", "/tasks/abc")
    assert (405, "MethodNotAllowed", "GET") == (status, body["code"], headers["Allow"])
    status, body, headers = await api.call("GET", E1)
    assert (405, "POST") == (status, headers["Allow"])


# --- body rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (
            {"input": {"prompt": "x"}},
            "BadRequest.EmptyModel",
            'Required parameter "model" missing from request.',
        ),
        ({"model": "", "input": {"prompt": "x"}}, "BadRequest.EmptyModel", None),
        ({"model": 5, "input": {"prompt": "x"}}, "InvalidParameter", "Model not exist."),
        ({"model": "dall-e-3", "input": {"prompt": "x"}}, "InvalidParameter", "Model not exist."),
        (
            {"model": "qwen-image-max", "input": {"prompt": "x"}},
            "InvalidParameter",
            "url error, please check url!",
        ),
        (
            {"model": "qwen-image-plus"},
            "BadRequest.EmptyInput",
            "Required input parameter missing from request.",
        ),
        (
            {"model": "qwen-image-plus", "input": "x"},
            "InvalidParameter",
            "input must be a JSON object",
        ),
        (
            {"model": "qwen-image-plus", "input": {"prompt": "x"}, "parameters": []},
            "InvalidParameter",
            "parameters must be a JSON object",
        ),
        (
            {
                "model": "qwen-image-plus",
                "input": {"prompt": "x"},
                "parameters": {"response_format": "url"},
            },
            "InvalidParameter",
            "Parameter 'response_format' is not supported.",
        ),
        (
            {"model": "qwen-image-plus", "input": {}},
            "InvalidParameter",
            "prompt: must be a non-empty string (model 'qwen-image-plus')",
        ),
        (
            {"model": "qwen-image-plus", "input": {"prompt": "x"}, "parameters": {"n": 2}},
            "InvalidParameter",
            "num_images_per_prompt must be 1",
        ),
        (
            {
                "model": "qwen-image-plus",
                "input": {"prompt": "x"},
                "parameters": {"size": "1024x1024"},
            },
            "InvalidParameter",
            "size must look like 'W*H' (e.g. '1024*1024'), got '1024x1024'",
        ),
        (
            {"model": "qwen-image-plus", "input": {"prompt": "x"}, "parameters": {"size": "0*5"}},
            "InvalidParameter",
            "size is invalid: size sides must be positive, got 0*5",
        ),
        (
            {
                "model": "qwen-image-plus",
                "input": {"prompt": "x"},
                "parameters": {"size": "1024*1024"},
            },
            "InvalidParameter",
            None,
        ),
        (
            {"model": "wan2.2-t2i-flash", "input": {"prompt": "x"}, "parameters": {"n": 5}},
            "InvalidParameter",
            "n: must be an integer in [1, 4], got 5 (model 'wan2.2-t2i-flash')",
        ),
        (
            {"model": "wan2.2-t2i-flash", "input": {"prompt": "x", "images": ["u"]}},
            "InvalidParameter",
            None,
        ),
        (
            {"model": "wan2.2-t2i-flash", "input": {"prompt": "x"}, "parameters": {"seed": -1}},
            "InvalidParameter",
            None,
        ),
    ],
)
async def test_e1_body_rules(api: Api, body: dict[str, Any], code: str, message: str | None):
    """Each malformed E1 body gets its documented 400, naming the problem."""
    status, answer, _ = await api.call("POST", E1, body, headers={"X-DashScope-Async": "enable"})
    assert (400, code) == (status, answer["code"])
    if message is not None:
        assert message == answer["message"]
    assert 0 == api.fake.stats.count("create", 200)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{not json", "The request body is not valid JSON."),
        (b"[1, 2]", "The request body must be a JSON object."),
    ],
)
async def test_non_object_bodies_are_400(api: Api, data: bytes, message: str):
    """A body that is not a JSON object is a 400, never a 500."""
    status, body, _ = await api.call("POST", E1, data=data, headers={"X-DashScope-Async": "enable"})
    assert (400, message) == (status, body["message"])


async def test_oversized_bodies_are_413(start: Callable[..., Awaitable[Api]]):
    """A body beyond the size limit is 413 BadRequest.TooLarge."""
    api = await start(max_body_bytes=1000)
    big = {"model": "qwen-image-plus", "input": {"prompt": "x" * 2000}}
    status, body, _ = await api.call("POST", E1, big, headers={"X-DashScope-Async": "enable"})
    assert (413, "BadRequest.TooLarge", "Payload Too Large.") == (
        status,
        body["code"],
        body["message"],
    )


async def test_chunked_oversized_bodies_are_413(start: Callable[..., Awaitable[Api]]):
    """A body without Content-Length is cut at the limit too."""
    api = await start(max_body_bytes=1000)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"x" * 500

    async with api.session.post(
        api.fake.base_url + E1,
        data=chunks(),
        headers={**api.auth, "X-DashScope-Async": "enable"},
    ) as resp:
        assert (413, "BadRequest.TooLarge") == (resp.status, (await resp.json())["code"])


async def test_sdk_parameters_and_both_negative_prompt_places_are_accepted(api: Api):
    """Keys the official SDK sends are accepted; negative_prompt works in input or parameters."""
    status, _, _ = await api.create("wan2.6-t2i", path=E3, is_async=True, style="<auto>")
    assert 200 == status
    body = {
        "model": "wan2.2-t2i-flash",
        "input": {"prompt": "x", "negative_prompt": "blurry"},
        "parameters": {"negative_prompt": "n" * 900},  # over 500: truncated, not refused
    }
    status, _, _ = await api.call("POST", E1, body, headers={"X-DashScope-Async": "enable"})
    assert 200 == status


async def test_unknown_snapshots_resolve_or_are_refused(start: Callable[..., Awaitable[Api]]):
    """Family-only names are served by default and refused under unknown_models='reject'."""
    lenient, strict = await start(), await start(unknown_models="reject")
    assert 200 == (await lenient.create("wan2.2-t2i-flash-2027-01-01"))[0]
    status, body, _ = await strict.create("wan2.2-t2i-flash-2027-01-01")
    assert (400, "Model not exist.") == (status, body["message"])


def _content(*items: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": list(items)}]}


@pytest.mark.parametrize(
    ("model", "inputs", "message"),
    [
        ("qwen-image-max", {"messages": []}, "No messages found in input"),
        ("qwen-image-max", {"messages": [{}, {}]}, "messages length only support 1"),
        (
            "qwen-image-max",
            {"messages": [{"role": "assistant", "content": [{"text": "x"}]}]},
            "The role of the message must be 'user'.",
        ),
        (
            "qwen-image-max",
            {"messages": [{"role": "user", "content": []}]},
            "lack of image or text",
        ),
        ("qwen-image-max", _content("text"), "lack of image or text"),
        ("qwen-image-max", _content({"video": "u"}), "lack of image or text"),
        ("qwen-image-max", _content({"image": "https://a"}), "lack of image or text"),
        (
            "qwen-image-max",
            _content({"text": "a"}, {"text": "b"}),
            "content must contain exactly one text",
        ),
        (
            "qwen-image-max",
            _content({"image": "https://a"}, {"text": "a"}),
            "images: this model does not take input images (model 'qwen-image-max')",
        ),
        (
            "qwen-image-edit-plus",
            _content({"text": "a"}),
            "images: an edit model needs 1 to 3 input images, got 0 (model 'qwen-image-edit-plus')",
        ),
        ("qwen-image-edit-plus", _content(*[{"image": "https://a"}] * 4, {"text": "a"}), None),
        (
            "qwen-image-edit-plus",
            _content({"image": 5}, {"text": "a"}),
            "image must be a URL or a data URI string",
        ),
        (
            "qwen-image-edit-plus",
            _content({"image": "data:image/png,xyz"}, {"text": "a"}),
            "Invalid image format or corrupted file",
        ),
        ("qwen-image-edit-plus", _content({"image": "oss://bucket/a.png"}, {"text": "a"}), None),
        (
            "qwen-image-edit-plus",
            _content({"image": "a.png"}, {"text": "a"}),
            "download image failed",
        ),
        ("wan2.2-t2i-flash", _content({"text": "a"}), "url error, please check url!"),
    ],
)
async def test_messages_rules(fast: Api, model: str, inputs: dict[str, Any], message: str | None):
    """Each malformed messages body gets its documented 400."""
    status, body, _ = await fast.call("POST", E2, {"model": model, "input": inputs})
    assert (400, "InvalidParameter") == (status, body["code"])
    if message is not None:
        assert message == body["message"]


async def test_data_uri_images_are_capped_at_10_mb(fast: Api):
    """A data URI over 10 MB decoded is refused with the documented message."""
    big = "data:image/png;base64," + "A" * (14 * 1024 * 1024)
    small = "data:image/png;base64," + "iVBORw0KGgo="
    body = {"model": "qwen-image-edit-plus", "input": _content({"image": big}, {"text": "a"})}
    status, answer, _ = await fast.call("POST", E2, data=json.dumps(body).encode())
    assert (400, "Exceeded limit on max bytes per data-uri item : 10485760") == (
        status,
        answer["message"],
    )
    body = {"model": "qwen-image-edit-plus", "input": _content({"image": small}, {"text": "a"})}
    assert 200 == (await fast.call("POST", E2, body))[0]


async def test_oss_inputs_need_the_resolve_header(fast: Api):
    """oss:// inputs are accepted only with X-DashScope-OssResourceResolve: enable."""
    body = {
        "model": "qwen-image-edit-plus",
        "input": _content({"image": "oss://dashscope-instant/a.png"}, {"text": "a"}),
    }
    status, _, _ = await fast.call(
        "POST", E2, body, headers={"X-DashScope-OssResourceResolve": "enable"}
    )
    assert 200 == status


# --- synchronous shapes ----------------------------------------------------------------------


async def test_sync_max_answer_has_task_metric_and_usage(fast: Api):
    """qwen-image-max answers one choice, its image, task_metric and usage width/height."""
    status, body, headers = await fast.sync("qwen-image-max", size="1328*1328")
    content = body["output"]["choices"][0]["message"]["content"]
    assert (200, 1, {"TOTAL": 1, "SUCCEEDED": 1, "FAILED": 0}) == (
        status,
        len(content),
        body["output"]["task_metric"],
    )
    assert {"height": 1328, "image_count": 1, "width": 1328} == body["usage"]
    assert (body["request_id"], {"output", "usage", "request_id"}) == (
        headers["X-Request-ID"],
        set(body),
    )
    assert "stop" == body["output"]["choices"][0]["finish_reason"]


async def test_sync_2_0_answers_n_images_without_task_metric(fast: Api):
    """qwen-image-2.0-pro with n=3 answers three images in one choice, no task_metric."""
    status, body, _ = await fast.sync("qwen-image-2.0-pro", n=3)
    (choice,) = body["output"]["choices"]
    assert (200, 3, False) == (
        status,
        len(choice["message"]["content"]),
        "task_metric" in body["output"],
    )
    assert {"height": 2048, "image_count": 3, "width": 2048} == body["usage"]


async def test_sync_wan26_is_refused(fast: Api):
    """Seed guide: "Wan supports only asynchronous calls": wan2.6-t2i on E2 is a url error."""
    status, body, _ = await fast.sync("wan2.6-t2i", n=2)
    assert (400, "InvalidParameter", "url error, please check url!") == (
        status,
        body["code"],
        body["message"],
    )


@pytest.mark.parametrize(
    ("model", "size", "expected"),
    [
        ("qwen-image-edit-plus", "1033*1032", (1040, 1024)),
        ("qwen-image-2.0-pro", "1033*1032", (1040, 1024)),
        ("qwen-image-edit-max", None, (1024, 1024)),
    ],
)
async def test_edit_sizes_round_to_multiples_of_16(
    fast: Api, model: str, size: str | None, expected: tuple[int, int]
):
    """Edit outputs round a requested size to multiples of 16 (halves down)."""
    params = {"size": size} if size else {}
    status, body, _ = await fast.sync(model, images=1, **params)
    assert (200, expected) == (status, (body["usage"]["width"], body["usage"]["height"]))


async def test_qwen_image_edit_takes_no_size(fast: Api):
    """qwen-image-edit refuses a size parameter."""
    status, body, _ = await fast.sync("qwen-image-edit", images=1, size="1024*1024")
    assert (400, "InvalidParameter") == (status, body["code"])


# --- async lifecycles ------------------------------------------------------------------------


async def test_wan_task_lifecycle_shapes(api: Api, clock: Clock):
    """A Wan task answers PENDING, RUNNING, then SUCCEEDED with results, metrics and usage."""
    task_id = await api.task_id("wan2.2-t2i-flash", n=2, size="1024*768")
    pending = await api.query(task_id)
    assert {"task_id", "task_status", "submit_time"} == set(pending["output"])
    assert format_time(T0) == pending["output"]["submit_time"]
    clock.advance(0.1)
    running = (await api.query(task_id))["output"]
    assert ("RUNNING", {"TOTAL": 2, "SUCCEEDED": 0, "FAILED": 0}) == (
        running["task_status"],
        running["task_metrics"],
    )
    clock.advance(60)
    done = await api.query(task_id)
    output = done["output"]
    assert ("SUCCEEDED", {"image_count": 2}) == (output["task_status"], done["usage"])
    assert {"TOTAL": 2, "SUCCEEDED": 2, "FAILED": 0} == output["task_metrics"]
    assert [{"orig_prompt", "actual_prompt", "url"}] * 2 == [set(r) for r in output["results"]]
    assert all("-1024x768.png?Expires=" in r["url"] for r in output["results"])
    assert T0 < _parse(output["scheduled_time"]) < _parse(output["end_time"]) <= T0 + 60.1
    assert "code" not in done


def _parse(text: str) -> float:
    import datetime as dt

    return dt.datetime.strptime(text + " +0800", "%Y-%m-%d %H:%M:%S.%f %z").timestamp()


async def test_qwen_task_has_no_metrics_and_actual_prompt_only_when_extended(
    api: Api, clock: Clock
):
    """qwen-image-plus results omit task_metrics; actual_prompt follows prompt_extend."""
    extended = await api.task_id("qwen-image-plus", "a cat")
    plain = await api.task_id("qwen-image-plus", "a dog", prompt_extend=False)
    clock.advance(60)
    first = (await api.query(extended))["output"]
    second = (await api.query(plain))["output"]
    assert ("task_metrics" in first, first["results"][0]["orig_prompt"]) == (False, "a cat")
    assert first["results"][0]["actual_prompt"].startswith("a cat")
    assert {"orig_prompt", "url"} == set(second["results"][0])


async def test_long_prompts_are_truncated_silently(api: Api, clock: Clock):
    """A prompt past the model's limit is accepted and truncated."""
    prompt = "y" * 700
    task_id = await api.task_id("wan2.2-t2i-flash", prompt, n=1)
    clock.advance(60)
    (result,) = (await api.query(task_id))["output"]["results"]
    assert (prompt, "y" * 500) == (result["orig_prompt"], result["actual_prompt"][:501].rstrip(","))


async def test_wan26_async_task_shape(api: Api, clock: Clock):
    """A wan2.6 E3 task ends with choices of typed images, finished, and token usage."""
    status, body, _ = await api.create("wan2.6-t2i", path=E3, n=1)
    assert 200 == status
    clock.advance(100)
    done = await api.query(body["output"]["task_id"])
    output = done["output"]
    (choice,) = output["choices"]
    assert (True, "image", 1) == (
        output["finished"],
        choice["message"]["content"][0]["type"],
        done["usage"]["image_count"],
    )


async def test_queries_accept_a_trailing_slash_and_stray_parameters(api: Api):
    """The aio SDK's '/tasks/{id}/?size=...' polls are answered like plain ones."""
    task_id = await api.task_id("qwen-image-plus")
    status, body, headers = await api.call(
        "GET", f"/tasks/{task_id}/", params={"size": "1024*1024", "n": "1"}
    )
    assert (200, task_id) == (status, body["output"]["task_id"])
    assert "application/json;charset=UTF-8" == headers["Content-Type"]


async def test_unknown_and_expired_tasks_are_unknown(api: Api, clock: Clock):
    """Unknown ids and tasks past retention answer 200 UNKNOWN."""
    task_id = await api.task_id("qwen-image-plus")
    assert {"task_id": "nope", "task_status": "UNKNOWN"} == (await api.query("nope"))["output"]
    clock.advance(86_400)
    assert "UNKNOWN" == (await api.query(task_id))["output"]["task_status"]


# --- cancel ----------------------------------------------------------------------------------


async def test_cancel_pending_then_it_is_canceled(
    start: Callable[..., Awaitable[Api]], clock: Clock
):
    """Cancelling a PENDING task answers {request_id}; the task is then CANCELED."""
    api = await start(limits=EmulatorLimits(models={"wan2.2-t2i-flash": ModelQuota(in_flight=1)}))
    await api.task_id("wan2.2-t2i-flash")
    queued = await api.task_id("wan2.2-t2i-flash")
    status, body, _ = await api.call("POST", f"/tasks/{queued}/cancel")
    assert (200, {"request_id"}) == (status, set(body))
    clock.advance(1)
    output = (await api.query(queued))["output"]
    assert ("CANCELED", {"task_id", "task_status", "submit_time", "end_time"}) == (
        output["task_status"],
        set(output),
    )


async def test_cancel_running_or_unknown_is_400(api: Api, clock: Clock):
    """Cancelling a RUNNING or unknown task is 400 UnsupportedOperation."""
    task_id = await api.task_id("qwen-image-plus")
    clock.advance(1)
    for target in (task_id, "nope"):
        status, body, _ = await api.call("POST", f"/tasks/{target}/cancel")
        assert (400, "UnsupportedOperation") == (status, body["code"])
        assert (
            "Failed to cancel the task, please confirm if the task is in PENDING status."
            == body["message"]
        )


# --- list ------------------------------------------------------------------------------------


async def test_list_pages_and_filters(start: Callable[..., Awaitable[Api]], clock: Clock):
    """The list pages newest first, filters by model/status/id, and uses epoch ms."""
    fast = await start(limits=None)
    ids = []
    for i in range(5):
        ids.append(await fast.task_id("wan2.2-t2i-flash" if i % 2 else "qwen-image-plus"))
        clock.advance(1)
    clock.advance(100)
    status, page, _ = await fast.call("GET", "/tasks", params={"page_no": "2", "page_size": "2"})
    assert (200, 5, 3, 2, 2) == (
        status,
        page["total"],
        page["total_page"],
        page["page_no"],
        page["page_size"],
    )
    assert [ids[2], ids[1]] == [item["task_id"] for item in page["data"]]
    item = page["data"][0]
    assert (int(item["gmt_create"]), "ap-southeast-1") == (int((T0 + 2) * 1000), item["region"])
    assert (
        "apikey:v1:aigc:text2image:image-synthesis:qwen-image-plus" == item["user_api_unique_key"]
    )
    _, by_model, _ = await fast.call("GET", "/tasks/", params={"model_name": "wan2.2-t2i-flash"})
    assert [ids[3], ids[1]] == [item["task_id"] for item in by_model["data"]]
    _, by_id, _ = await fast.call("GET", "/tasks", params={"task_id": ids[0]})
    assert [ids[0]] == [item["task_id"] for item in by_id["data"]]
    pending = await fast.task_id("qwen-image-plus")
    _, waiting, _ = await fast.call("GET", "/tasks", params={"status": "PENDING"})
    assert [pending] == [item["task_id"] for item in waiting["data"]]
    _, done, _ = await fast.call("GET", "/tasks", params={"status": "SUCCEEDED"})
    assert sorted(ids) == sorted(i["task_id"] for i in done["data"])
    assert all("end_time" in i and "start_time" in i for i in done["data"])


async def test_list_times_track_the_lifecycle(api: Api, clock: Clock):
    """List items gain start_time once scheduled and end_time once terminal."""
    await api.task_id("qwen-image-plus")
    _, first, _ = await api.call("GET", "/tasks")
    clock.advance(1)
    _, second, _ = await api.call("GET", "/tasks")
    assert ({"PENDING"}, "start_time" in first["data"][0]) == ({first["data"][0]["status"]}, False)
    assert ("RUNNING", True, False) == (
        second["data"][0]["status"],
        "start_time" in second["data"][0],
        "end_time" in second["data"][0],
    )


@pytest.mark.parametrize(
    ("params", "count"),
    [
        ({"start_time": "20270115000000"}, 1),  # T0 is 2027-01-15 16:00 UTC+8
        ({"end_time": "20270116000000"}, 1),
        ({"start_time": "20270115150000", "end_time": "20270115170000"}, 1),
        ({"start_time": "20270115170000", "end_time": "20270115180000"}, 0),
        ({"end_time": "20270114000000"}, 0),
    ],
)
async def test_list_windows(fast: Api, params: dict[str, str], count: int):
    """start_time/end_time select a window of at most 24 hours (UTC+8)."""
    await fast.task_id("qwen-image-plus")
    status, body, _ = await fast.call("GET", "/tasks", params=params)
    assert (200, count) == (status, body["total"])


@pytest.mark.parametrize(
    "params",
    [
        {"start_time": "20270101000000", "end_time": "20270103000000"},
        {"start_time": "20270103000000", "end_time": "20270101000000"},
        {"start_time": "2027-01-01"},
        {"status": "DONE"},
        {"page_no": "0"},
        {"page_size": "ten"},
    ],
)
async def test_list_rejects_bad_parameters(fast: Api, params: dict[str, str]):
    """Malformed list parameters and windows over 24 h are 400 InvalidParameter."""
    status, body, _ = await fast.call("GET", "/tasks", params=params)
    assert (400, "InvalidParameter") == (status, body["code"])


# --- limits ----------------------------------------------------------------------------------


async def test_submissions_beyond_the_window_are_throttled(api: Api, clock: Clock):
    """qwen-image-plus admits 2 submissions per second; the third is 429 with Retry-After."""
    assert [200, 200] == [(await api.create("qwen-image-plus"))[0] for _ in range(2)]
    status, body, headers = await api.create("qwen-image-plus")
    assert (429, "Throttling.RateQuota", "1") == (status, body["code"], headers["Retry-After"])
    assert "Requests rate limit exceeded, please try again later." == body["message"]
    clock.advance(1.0)
    assert 200 == (await api.create("qwen-image-plus"))[0]
    assert (1, 3) == (api.fake.stats.throttled, api.fake.stats.tasks_created["qwen-image-plus"])


async def test_retry_after_scales_with_time(start: Callable[..., Awaitable[Api]]):
    """Under time_scale 0.01, a one-minute window's Retry-After is in scaled seconds."""
    api = await start(time_scale=0.01)
    for _ in range(2):
        await api.sync("qwen-image-max")
    status, _, headers = await api.sync("qwen-image-max")
    assert (429, "0.6") == (status, headers["Retry-After"])


async def test_in_flight_cap_queues_in_order(api: Api, clock: Clock):
    """Beyond the in-flight cap, tasks stay PENDING until a slot frees (queue mode)."""
    first = await api.task_id("qwen-image-plus")
    await api.task_id("qwen-image-plus")
    clock.advance(1)
    third = await api.task_id("qwen-image-plus")
    clock.advance(5)
    assert ("RUNNING", "PENDING") == (
        (await api.query(first))["output"]["task_status"],
        (await api.query(third))["output"]["task_status"],
    )
    clock.advance(60)
    assert "SUCCEEDED" == (await api.query(third))["output"]["task_status"]
    assert 3 == api.fake.stats.peak_in_flight


async def test_in_flight_cap_rejects_in_reject_mode(
    start: Callable[..., Awaitable[Api]], clock: Clock
):
    """With over_cap='reject', a create beyond the cap is 429 with the wait for a slot."""
    api = await start(
        durations={"wan2.2-t2i-flash": (10.0, 10.0)}, limits=EmulatorLimits(over_cap="reject")
    )
    await api.task_id("wan2.2-t2i-flash")
    await api.task_id("wan2.2-t2i-flash")
    clock.advance(1)
    status, body, headers = await api.create("wan2.2-t2i-flash")
    assert (429, "Throttling.RateQuota", "9") == (status, body["code"], headers["Retry-After"])


async def test_task_calls_share_20_per_second(api: Api, clock: Clock):
    """Queries, lists and cancels share 20 calls per second; the 21st is 429."""
    statuses = [(await api.call("GET", "/tasks/x"))[0] for _ in range(19)]
    statuses.append((await api.call("GET", "/tasks"))[0])
    status, _body, headers = await api.call("POST", "/tasks/x/cancel")
    assert ([200] * 20, 429, "1") == (statuses, status, headers["Retry-After"])
    clock.advance(1)
    assert 200 == (await api.call("GET", "/tasks/x"))[0]


async def test_peak_task_calls_per_second_counts_a_sliding_second_and_429s(
    start: Callable[..., Awaitable[Api]], clock: Clock
):
    """
    The peak counts task calls in any one simulated second, 429s included: 15 calls late in one
    second and 15 early in the next are 30 within a second (fixed seconds would say 15).
    """
    api = await start(time_scale=0.5)  # one simulated second is 0.5 real seconds
    clock.advance(0.3)
    for _ in range(15):
        await api.call("GET", "/tasks/x")
    clock.advance(0.3)  # 0.6 simulated seconds later
    statuses = [(await api.call("GET", "/tasks"))[0] for _ in range(15)]
    assert ([200] * 5 + [429] * 10, 30) == (
        statuses,
        api.fake.stats.to_dict()["peak_task_calls_per_second"],
    )
    clock.advance(0.45)  # the first burst has left the second; the second has not
    for _ in range(16):
        await api.call("GET", "/tasks/x")
    assert 31 == api.fake.stats.peak_task_calls_per_second
    clock.advance(0.6)  # every call so far has left; the peak stays
    for _ in range(20):
        await api.call("GET", "/tasks/x")
    assert 31 == api.fake.stats.peak_task_calls_per_second
    api.fake.reset()
    assert 0 == api.fake.stats.peak_task_calls_per_second


async def test_peak_task_calls_per_second_survives_a_clock_stepping_back(api: Api, clock: Clock):
    """A wall clock that steps back counts as no time passing: nothing leaves the window early."""
    for _ in range(3):
        await api.call("GET", "/tasks/x")
    clock.advance(-5)
    for _ in range(3):
        await api.call("GET", "/tasks/x")
    assert 6 == api.fake.stats.peak_task_calls_per_second


async def test_no_limits_means_no_throttling(fast: Api):
    """limits=None never answers 429."""
    statuses = {(await fast.create("qwen-image-plus"))[0] for _ in range(10)}
    statuses |= {(await fast.call("GET", "/tasks/x"))[0] for _ in range(30)}
    assert {200} == statuses


async def test_durations_by_prompt_repeat_across_emulators(start: Callable[..., Awaitable[Api]]):
    """With durations_by_prompt, the same seed and prompts give the same durations."""
    first, second = await start(durations_by_prompt=True), await start(durations_by_prompt=True)
    for api in (first, second):
        for prompt in ("a", "b"):
            await api.task_id("qwen-image-plus", prompt)
    spans = [
        [r.ended - r.created for r in api.fake.stats.tasks.values()] for api in (first, second)
    ]
    assert spans[0] == spans[1]
    assert spans[0][0] != spans[0][1]


async def test_durations_override_the_catalog(start: Callable[..., Awaitable[Api]]):
    """durations= fixes a model's (low, high) simulated seconds."""
    api = await start(durations={"*": (3.0, 3.0)})
    await api.task_id("qwen-image-plus")
    (report,) = api.fake.stats.tasks.values()
    assert 3.0 == pytest.approx(report.ended - report.created)
