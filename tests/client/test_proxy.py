"""
Proxies: `proxy=` and the environment (httpx's reading), through a real proxy on 127.0.0.1.

The machine's own proxy variables are cleared for every test by tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import anyio
import attrs
import pytest
from aiohttp import web

import aioqwenimage as q
from aioqwenimage._proxy import ProxyRoutes
from aioqwenimage.testing import FakeDashScope
from tests.conftest import make_client

# What a proxy must not forward: hop-by-hop headers, and lengths aiohttp.web recomputes.
HOP_BY_HOP = {
    "connection",
    "content-length",
    "host",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "transfer-encoding",
}


@attrs.frozen
class Seen:
    """One request as the proxy received it."""

    method: str
    target: str
    headers: dict[str, str]


@attrs.define
class PlainProxy:
    """A forwarding HTTP proxy (absolute-form requests) that records what it was sent."""

    url: str
    seen: list[Seen]

    def api_calls(self) -> list[Seen]:
        return [s for s in self.seen if "/api/v1/" in s.target]

    def downloads(self) -> list[Seen]:
        return [s for s in self.seen if "/api/v1/" not in s.target]


@pytest.fixture
async def proxy() -> AsyncIterator[PlainProxy]:
    seen: list[Seen] = []
    upstream = aiohttp.ClientSession(auto_decompress=False)

    async def forward(request: web.Request) -> web.StreamResponse:
        seen.append(Seen(request.method, request.raw_path, dict(request.headers)))
        if not request.raw_path.startswith("http://"):
            return web.Response(status=400, text="not a proxy request")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        async with upstream.request(
            request.method, request.raw_path, headers=headers, data=await request.read()
        ) as answer:
            body = await answer.read()
            back = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
            return web.Response(status=answer.status, body=body, headers=back)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield PlainProxy(url=f"http://127.0.0.1:{port}", seen=seen)
    finally:
        await runner.cleanup()
        await upstream.close()


async def generate_and_download(client: q.Client) -> bytes:
    result = await client.generate("a fox", model="qwen-image-plus")
    return await result.images[0].read()


async def test_explicit_proxy_carries_api_calls_and_downloads(fake, proxy):
    """With proxy=, creates, polls and downloads all go through the proxy, with its credentials."""
    user_url = proxy.url.replace("http://", "http://alice:s3cret@")
    async with make_client(fake, proxy=user_url) as client:
        data = await generate_and_download(client)

    assert data.startswith(b"\x89PNG")
    assert {"POST", "GET"} == {s.method for s in proxy.api_calls()}
    assert 1 == len(proxy.downloads())
    assert all("Proxy-Authorization" in s.headers for s in proxy.seen)
    assert "s3cret" not in repr(client)


async def test_the_blocking_client_takes_the_same_proxy_option(fake, proxy):
    """SyncClient(proxy=) sends its API calls and downloads through the proxy too."""

    def blocking() -> bytes:
        with q.SyncClient(
            api_key=fake.api_key,
            base_url=fake.base_url,
            time_scale=fake.time_scale,
            proxy=proxy.url,
        ) as client:
            result = client.generate("a fox", model="qwen-image-plus")
            return client.read_image(result.images[0])

    # The proxy and the emulator answer from this test's loop: block in a worker thread.
    data = await anyio.to_thread.run_sync(blocking)

    assert data.startswith(b"\x89PNG")
    assert proxy.api_calls()
    assert 1 == len(proxy.downloads())


async def test_the_proxy_never_sees_the_key_in_downloads(fake, proxy):
    """Download requests through the proxy carry no Authorization and no trace of the key."""
    async with make_client(fake, proxy=proxy.url) as client:
        await generate_and_download(client)

    (download,) = proxy.downloads()
    assert "Authorization" not in download.headers
    assert fake.api_key not in download.target
    assert [] == [v for v in download.headers.values() if fake.api_key in v]


async def test_environment_proxy_is_honoured_by_default(fake, proxy, monkeypatch):
    """HTTP_PROXY alone routes a default client's API calls and downloads through the proxy."""
    monkeypatch.setenv("HTTP_PROXY", proxy.url)

    async with make_client(fake) as client:
        await generate_and_download(client)

    assert proxy.api_calls()
    assert 1 == len(proxy.downloads())


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "localhost,127.0.0.1", "*"])
async def test_no_proxy_sends_listed_hosts_direct(fake, proxy, monkeypatch, no_proxy):
    """A host in NO_PROXY is reached directly even with HTTP_PROXY set."""
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", no_proxy)

    async with make_client(fake) as client:
        await generate_and_download(client)

    assert [] == proxy.seen


async def test_trust_env_false_ignores_the_environment(fake, proxy, monkeypatch):
    """trust_env=False connects directly whatever the environment says."""
    monkeypatch.setenv("HTTP_PROXY", proxy.url)

    async with make_client(fake, trust_env=False) as client:
        await generate_and_download(client)

    assert [] == proxy.seen


async def test_explicit_proxy_wins_over_no_proxy(fake, proxy, monkeypatch):
    """proxy= is used for every request, as httpx does, even for a host NO_PROXY lists."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")

    async with make_client(fake, proxy=proxy.url) as client:
        await generate_and_download(client)

    assert proxy.api_calls()


async def test_a_dead_proxy_is_a_connect_failure_not_a_hang():
    """A proxy that refuses connections fails the create as never sent: nothing was ordered."""
    async with FakeDashScope(time_scale=0.001) as fake:
        dead = "http://127.0.0.1:9"
        async with make_client(fake, proxy=dead) as client:
            with pytest.raises(q.TransportError) as info:
                await client.generate("a fox", model="qwen-image-plus")

        assert 0 == fake.stats.connections
    assert fake.api_key not in str(info.value)


@pytest.mark.parametrize(
    "value",
    ["socks5://alice:s3cret@proxy.example:1080", "ftp://alice:s3cret@proxy.example", "http://"],
)
def test_a_bad_proxy_is_refused_without_echoing_it(value):
    """proxy= must be an http(s) URL; the error names the option and hides the password."""
    with pytest.raises(ValueError, match="proxy must be an http") as info:
        q.Client(api_key="sk-test", proxy=value)

    assert "s3cret" not in str(info.value)


def test_a_bad_environment_proxy_names_the_variable(monkeypatch):
    """A socks URL in HTTPS_PROXY is refused when the client is made, naming the variable."""
    monkeypatch.setenv("HTTPS_PROXY", "socks5://alice:s3cret@proxy.example:1080")

    with pytest.raises(ValueError, match=r"\$HTTPS_PROXY") as info:
        q.Client(api_key="sk-test")

    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    ("no_proxy", "url", "expected"),
    [
        ("", "https://dashscope-intl.aliyuncs.com/api/v1", "https-proxy"),
        ("", "http://127.0.0.1:8080/x", "http-proxy"),
        ("aliyuncs.com", "https://dashscope-intl.aliyuncs.com/api/v1", None),
        ("aliyuncs.com", "https://aliyuncs.com/", None),
        ("aliyuncs.com", "https://notaliyuncs.com/", "https-proxy"),
        (".aliyuncs.com", "https://aliyuncs.com/", "https-proxy"),
        (".aliyuncs.com", "https://oss.aliyuncs.com/", None),
        ("127.0.0.1", "http://127.0.0.1:8080/x", None),
        ("127.0.0.1", "http://localhost:8080/x", "http-proxy"),
        ("localhost", "http://localhost:8080/x", None),
        ("::1", "http://[::1]:8080/x", None),
        ("[::1]", "http://[::1]:8080/x", None),
        ("::1", "http://127.0.0.1:8080/x", "http-proxy"),
        ("http://oss.example", "http://oss.example/a.png", None),
        ("http://oss.example", "https://oss.example/a.png", "https-proxy"),
        ("oss.example:8443", "https://oss.example:8443/a.png", None),
        ("oss.example:8443", "https://oss.example/a.png", "https-proxy"),
        (" a.example , OSS.example ", "https://oss.example/a.png", None),
        ("*", "https://dashscope-intl.aliyuncs.com/api/v1", None),
    ],
)
def test_environment_routes_follow_httpx(monkeypatch, no_proxy, url, expected):
    """NO_PROXY entries match hosts, subdomains, schemes and ports as httpx reads them."""
    monkeypatch.setenv("HTTP_PROXY", "http://http-proxy:3128")
    monkeypatch.setenv("HTTPS_PROXY", "https-proxy:3128")
    monkeypatch.setenv("NO_PROXY", no_proxy)

    proxy = ProxyRoutes.resolve(None, trust_env=True).for_url(url)

    assert expected == (proxy and proxy.removeprefix("http://").removesuffix(":3128"))


def test_all_proxy_is_the_fallback_for_any_scheme(monkeypatch):
    """ALL_PROXY serves a scheme with no proxy of its own; a scheme's own proxy wins."""
    monkeypatch.setenv("ALL_PROXY", "http://all:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://secure:3128")

    routes = ProxyRoutes.resolve(None, trust_env=True)

    assert "http://all:3128" == routes.for_url("http://127.0.0.1/x")
    assert "http://secure:3128" == routes.for_url("https://dashscope.aliyuncs.com/x")


def test_routes_repr_hides_proxy_credentials():
    """A proxy URL's password never shows in a repr."""
    routes = ProxyRoutes.resolve("http://alice:s3cret@proxy.example:3128", trust_env=True)

    assert "s3cret" not in repr(routes)
    assert "http://alice:s3cret@proxy.example:3128" == routes.for_url("https://x.example/")


def test_an_odd_no_proxy_entry_is_skipped_with_a_warning(monkeypatch, caplog):
    """A NO_PROXY entry that is no host (other tools share it) is skipped, loudly; the rest hold."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    monkeypatch.setenv("NO_PROXY", "oss.example:https,aliyuncs.com")

    routes = ProxyRoutes.resolve(None, trust_env=True)

    assert routes.for_url("https://dashscope.aliyuncs.com/x") is None
    assert "http://proxy:3128" == routes.for_url("https://oss.example/a.png")
    assert ["ignoring $NO_PROXY entry 'oss.example:https': not a host, host:port or URL"] == [
        r.getMessage() for r in caplog.records if r.levelname == "WARNING"
    ]
