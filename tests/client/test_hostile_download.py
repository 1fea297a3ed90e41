"""Hostile results: ids that are paths, URLs to internal hosts, pages posing as images."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from aioresponses import aioresponses
from yarl import URL

import aioqwenimage as q
from aioqwenimage._safety import ResultPolicy, parse_oss_error, safe_name
from aioqwenimage.testing import Fault, FaultKind
from tests.conftest import SCALE

BASE = "https://api.example/api/v1"
CREATE = BASE + "/services/aigc/text2image/image-synthesis"
SYNC = BASE + "/services/aigc/multimodal-generation/generation"
TASK = re.compile(re.escape(BASE) + r"/tasks/.*")
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 64
WEBP = b"RIFF\x24\0\0\0WEBPVP8 " + b"\0" * 64
IMAGE_URL = "https://oss.example/r/a.png?Expires=99999999999&Signature=s"


def mocked_client(**kwargs: Any) -> q.Client:
    kwargs.setdefault("poll", q.PollPolicy(sweep=False))
    retry = q.RetryPolicy(attempts=2, base=0.001, cap=0.002)
    return q.Client(api_key="sk-test", base_url=BASE, time_scale=SCALE, retry=retry, **kwargs)


def task_answer(task_id: str, url: str = IMAGE_URL) -> dict[str, Any]:
    return {
        "request_id": "r",
        "output": {"task_id": task_id, "task_status": "SUCCEEDED", "results": [{"url": url}]},
    }


async def generate(mocked: aioresponses, client: q.Client, task_id: str, url: str = IMAGE_URL):
    """A generation whose poll answer names the task `task_id` (ids in the answer win)."""
    mocked.post(CREATE, payload={"output": {"task_id": "t-1", "task_status": "PENDING"}})
    mocked.get(TASK, payload=task_answer(task_id, url), repeat=True)
    return await client.generate("a fox")


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


# --- path traversal ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "task_id", ["../../escaped", "/etc/absolute", "..", "a/../../b", "\\..\\x"]
)
async def test_server_ids_never_write_outside_the_chosen_directory(tmp_path, task_id):
    """A task id that is a path still saves inside the directory, under a safe name."""
    out = tmp_path / "deep" / "out"
    with aioresponses() as mocked:
        mocked.get(IMAGE_URL, body=PNG, repeat=True)
        async with mocked_client() as client:
            result = await generate(mocked, client, task_id)
            paths = await client.save_images(result, out)
            single = await result.images[0].save(out / "single")
    assert [out / result.images[0].name] == paths
    assert all(out.resolve() in p.resolve().parents for p in [*paths, single])
    assert re.fullmatch(r"[A-Za-z0-9._-]+", result.images[0].name)
    assert set(files_under(tmp_path)) == {paths[0], single}


async def test_synchronous_request_ids_are_made_safe_too(tmp_path):
    """A synchronous answer's request id names the file only once reduced to a safe name."""
    answer = {
        "request_id": "../../../etc/x",
        "output": {"choices": [{"message": {"content": [{"image": IMAGE_URL}]}}]},
    }
    with aioresponses() as mocked:
        mocked.post(SYNC, payload=answer)
        mocked.get(IMAGE_URL, body=PNG)
        async with mocked_client() as client:
            result = await client.generate("a fox", model="qwen-image-max")
            paths = await client.save_images(result, tmp_path / "out")
    assert [tmp_path / "out" / "_etc_x-0.png"] == paths


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("../../escaped", "_escaped"),
        ("/abs/path", "_abs_path"),
        ("ok-id_1.2", "ok-id_1.2"),
        ("..", "image"),
        ("", "image"),
        ("狐", "image"),
        ("x" * 300, "x" * 120),
    ],
)
def test_safe_name_keeps_a_plain_character_set(text, expected):
    """Server-derived names keep letters, digits, dot, dash and underscore; no leading dot."""
    assert expected == safe_name(text)


# --- "save into this directory" ---------------------------------------------------------------


async def test_save_into_a_new_directory_is_unambiguous(tmp_path):
    """A path without extension, a trailing slash, or filename= all mean a directory."""
    with aioresponses() as mocked:
        mocked.get(IMAGE_URL, body=PNG, repeat=True)
        async with mocked_client() as client:
            result = await generate(mocked, client, "t-1")
            image = result.images[0]
            into_path = await image.save(tmp_path / "newdir/")
            into_str = await image.save(f"{tmp_path}/strdir/")
            named = await image.save(tmp_path / "out.d", filename="fox.png")
            as_file = await image.save(tmp_path / "files" / "fox.jpg")
    assert tmp_path / "newdir" / "t-1-0.png" == into_path
    assert tmp_path / "strdir" / "t-1-0.png" == into_str
    assert tmp_path / "out.d" / "fox.png" == named
    assert tmp_path / "files" / "fox.jpg" == as_file
    assert all(p.read_bytes() == PNG for p in (into_path, into_str, named, as_file))


async def test_an_existing_file_without_extension_is_replaced_not_turned_into_a_directory(
    tmp_path,
):
    """save(path) of an existing file replaces it; filename= into a file is a typed error."""
    existing = tmp_path / "image"
    existing.write_bytes(b"old")
    with aioresponses() as mocked:
        mocked.get(IMAGE_URL, body=PNG, repeat=True)
        async with mocked_client() as client:
            result = await generate(mocked, client, "t-1")
            assert existing == await result.images[0].save(existing)
            with pytest.raises(q.InvalidRequestError, match="is a file"):
                await result.images[0].save(existing, filename="x.png")
    assert PNG == existing.read_bytes()


@pytest.mark.parametrize("filename", ["../x.png", "a/b.png", "..", ""])
async def test_a_filename_with_directories_is_refused_before_any_download(tmp_path, filename):
    """filename= is one plain name; anything else is refused and nothing is fetched or written."""
    with aioresponses() as mocked:
        async with mocked_client() as client:
            result = await generate(mocked, client, "t-1")
            with pytest.raises(q.InvalidRequestError, match="filename"):
                await result.images[0].save(tmp_path / "out", filename=filename)
        assert ("GET", URL(IMAGE_URL)) not in mocked.requests
    assert [] == files_under(tmp_path)


# --- the result URL policy --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "strict_ok", "local_ok"),
    [
        ("https://dashscope-result.oss-cn-beijing.aliyuncs.com/a.png", True, True),
        ("http://dashscope-result.oss-cn-beijing.aliyuncs.com/a.png", False, True),
        ("https://127.0.0.1/a.png", False, True),
        ("https://localhost/a.png", False, True),
        ("https://[::1]/a.png", False, True),
        ("https://[::ffff:10.0.0.1]/a.png", False, True),
        ("https://169.254.169.254/latest/meta-data", False, True),
        ("https://10.1.2.3/a.png", False, True),
        ("https://192.168.0.5/a.png", False, True),
        ("https://8.8.8.8/a.png", True, True),
        ("file:///etc/passwd", False, False),
        ("ftp://oss.example/a.png", False, False),
    ],
)
def test_result_url_policy(url, strict_ok, local_ok):
    """Against the real service only https to public hosts; an emulator may use local http."""
    for policy, ok in (
        (ResultPolicy(strict=True), strict_ok),
        (ResultPolicy(strict=False), local_ok),
    ):
        if ok:
            policy.check(url)
        else:
            with pytest.raises(q.UnsafeResultError):
                policy.check(url)


@pytest.mark.parametrize(
    "url", ["http://oss.example/a.png?Expires=99999999999", "https://127.0.0.1:9/a.png"]
)
async def test_refused_result_urls_are_never_fetched(tmp_path, url):
    """A plain-HTTP or loopback result URL from the real service is refused without a request."""
    with aioresponses() as mocked:
        mocked.get(url, body=PNG)
        async with mocked_client() as client:
            result = await generate(mocked, client, "t-1", url)
            with pytest.raises(q.UnsafeResultError, match="refusing"):
                await result.images[0].save(tmp_path)
            with pytest.raises(q.UnsafeResultError):
                await result.images[0].read()
        assert ("GET", URL(url)) not in mocked.requests
        assert 0 == client.stats.requests["download"]
    assert [] == files_under(tmp_path)


@pytest.mark.parametrize(
    "location", ["https://127.0.0.1/a.png", "https://169.254.169.254/x", "http://cdn.example/a"]
)
async def test_redirects_to_internal_or_plain_http_hosts_are_refused(tmp_path, location):
    """The result host may not bounce the client to an internal address or to plain HTTP."""
    with aioresponses() as mocked:
        mocked.get(IMAGE_URL, status=302, headers={"Location": location})
        mocked.get(location, body=PNG)
        async with mocked_client() as client:
            result = await generate(mocked, client, "t-1")
            with pytest.raises(q.UnsafeResultError, match="redirect"):
                await result.images[0].save(tmp_path)
        assert ("GET", URL(location)) not in mocked.requests
    assert [] == files_under(tmp_path)


async def test_a_redirect_to_another_public_host_is_followed(tmp_path):
    """An https redirect to a public host is followed, and counted as a request."""
    cdn = "https://cdn.example/a.png"
    with aioresponses() as mocked:
        mocked.get(IMAGE_URL, status=302, headers={"Location": cdn})
        mocked.get(cdn, body=PNG)
        async with mocked_client() as client:
            result = await generate(mocked, client, "t-1")
            path = await result.images[0].save(tmp_path)
            assert 2 == client.stats.requests["download"]
    assert PNG == path.read_bytes()


@pytest.mark.parametrize("body", [PNG, JPEG, WEBP])
async def test_images_of_every_format_are_kept(tmp_path, body):
    """PNG, JPEG and WebP signatures pass."""
    with aioresponses() as mocked:
        mocked.get(IMAGE_URL, body=body)
        async with mocked_client() as client:
            result = await generate(mocked, client, "t-1")
            path = await result.images[0].save(tmp_path)
    assert body == path.read_bytes()


@pytest.mark.parametrize("body", [b"<html><body>login</body></html>", b"", b"\x89PN"])
async def test_a_page_posing_as_an_image_is_not_saved(tmp_path, body):
    """Bytes without an image signature raise UnsafeResultError and leave no file behind."""
    with aioresponses() as mocked:
        mocked.get(IMAGE_URL, body=body, repeat=True)
        async with mocked_client() as client:
            result = await generate(mocked, client, "t-1")
            with pytest.raises(q.UnsafeResultError, match="not a PNG, JPEG or WebP"):
                await result.images[0].save(tmp_path / "out")
            with pytest.raises(q.UnsafeResultError):
                await result.images[0].read()
    assert [] == files_under(tmp_path)


async def test_an_oversized_image_is_refused_and_not_kept(tmp_path):
    """A download larger than max_download_bytes fails, and nothing stays on disk."""
    pools = q.PoolLimits(max_download_bytes=1024)
    with aioresponses() as mocked:
        mocked.get(IMAGE_URL, body=PNG + b"\0" * 4096)
        async with mocked_client(pools=pools) as client:
            result = await generate(mocked, client, "t-1")
            with pytest.raises(q.UnsafeResultError, match="larger than"):
                await result.images[0].save(tmp_path / "out")
    assert [] == files_under(tmp_path)


# --- storage errors ---------------------------------------------------------------------------


def oss_xml(code: str, message: str, **extra: str) -> bytes:
    fields = {"Code": code, "Message": message, "RequestId": "oss-req-1", **extra}
    inner = "".join(f"<{k}>{v}</{k}>" for k, v in fields.items())
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<Error>{inner}</Error>'.encode()


async def test_an_expired_url_by_the_storage_clock_is_image_expired(tmp_path):
    """OSS's 'Request has expired' is ImageExpiredError even when the local clock disagrees."""
    body = oss_xml(
        "AccessDenied",
        "Request has expired.",
        Expires="2026-01-01T00:00:00.000Z",
        ServerTime="2026-01-02T00:00:00.000Z",
    )
    with aioresponses() as mocked:
        mocked.get(IMAGE_URL, status=403, body=body)
        async with mocked_client() as client:
            result = await generate(mocked, client, "t-1")
            with pytest.raises(q.ImageExpiredError, match="storage service"):
                await result.images[0].read()


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (403, "SignatureDoesNotMatch", q.PermissionDeniedError),
        (404, "NoSuchKey", q.InvalidRequestError),
        (500, "InternalError", q.ServerError),
    ],
)
async def test_storage_errors_keep_their_code_and_message(status, code, error):
    """OSS's XML Code and Message reach the raised error, not a bare 'HTTP 500 | HTTP 500'."""
    with aioresponses() as mocked:
        mocked.get(
            IMAGE_URL, status=status, body=oss_xml(code, "the storage says why"), repeat=True
        )
        async with mocked_client() as client:
            result = await generate(mocked, client, "t-1")
            with pytest.raises(error) as caught:
                await result.images[0].read()
    assert code == caught.value.code
    assert "oss-req-1" == caught.value.request_id
    assert "the storage says why" in str(caught.value)
    assert "HTTP 500 | HTTP 500" not in str(caught.value)


def test_oss_error_parsing_ignores_anything_else():
    """Non-XML bodies and unknown elements give no fields; entities are decoded, not expanded."""
    assert {} == parse_oss_error(b"<html>nope</html>")
    assert {} == parse_oss_error(b"\xff\xfe garbage")
    fields = parse_oss_error(b"<Error><Code>A&amp;B</Code><Other>x</Other></Error>")
    assert {"Code": "A&B"} == fields


# --- counting ---------------------------------------------------------------------------------


async def test_download_requests_count_every_attempt(client, fake):
    """ClientStats.requests['download'] counts requests sent, failed ones included."""
    result = await client.generate("a fox", model="wan2.2-t2i-flash", n=1)
    fake.faults.add(Fault(kind=FaultKind.INTERNAL_ERROR, endpoints="file", times=2))
    await result.images[0].read()
    assert 3 == client.stats.requests["download"]
    assert 3 == fake.stats.file_requests
