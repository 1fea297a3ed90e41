"""Where the client connects and with which key: arguments, then environment, then defaults."""

from __future__ import annotations

import pytest

import aioqwenimage as q
from aioqwenimage import _config


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in ("DASHSCOPE_API_KEY", "DASHSCOPE_REGION", "DASHSCOPE_HTTP_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, "singapore"),
        ("Beijing", "beijing"),
        ("us-east-1", "virginia"),
        ("ap-southeast-1", "singapore"),
    ],
)
def test_region_names_and_ids(given, expected):
    """Regions are accepted by name or by id, case-insensitively; Singapore by default."""
    assert expected == _config.resolve_region(given)


def test_region_from_environment(monkeypatch):
    """$DASHSCOPE_REGION is honoured when no argument is given."""
    monkeypatch.setenv("DASHSCOPE_REGION", "cn-beijing")
    assert "beijing" == _config.resolve_region(None)


def test_unknown_region_is_a_clear_error():
    """An unknown region lists the valid ones."""
    with pytest.raises(ValueError, match="beijing, singapore, virginia"):
        _config.resolve_region("mars")


def test_base_url_precedence(monkeypatch):
    """Argument beats $DASHSCOPE_HTTP_BASE_URL, which beats the region's host."""
    assert "https://dashscope.aliyuncs.com/api/v1" == _config.resolve_base_url(None, "beijing")
    monkeypatch.setenv("DASHSCOPE_HTTP_BASE_URL", "https://env.example/api/v1/")
    assert "https://env.example/api/v1" == _config.resolve_base_url(None, "beijing")
    assert "https://arg.example/api/v1" == _config.resolve_base_url(
        "https://arg.example/api/v1", "beijing"
    )


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000/api/v1", "http://localhost/api/v1", "http://[::1]:9/api/v1"]
)
def test_plain_http_is_allowed_to_loopback(url):
    """Loopback emulators may use plain HTTP."""
    assert url == _config.resolve_base_url(url, "singapore")


@pytest.mark.parametrize("url", ["http://dashscope.aliyuncs.com/api/v1", "http://10.0.0.1/api/v1"])
def test_plain_http_elsewhere_is_refused(url):
    """The key must never cross the network unencrypted."""
    with pytest.raises(q.InvalidRequestError, match="refusing plain HTTP"):
        _config.resolve_base_url(url, "singapore")


def test_non_http_url_is_refused():
    """A base URL must be http(s)."""
    with pytest.raises(q.InvalidRequestError, match="http"):
        _config.resolve_base_url("ftp://x/api/v1", "singapore")


def test_key_from_argument_or_environment_and_never_shown(monkeypatch):
    """The key resolves from the argument or $DASHSCOPE_API_KEY and never shows in a repr."""
    assert _config.resolve_key(None) is None
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-env-secret")
    secret = _config.resolve_key(None)
    assert secret is not None
    assert "sk-env-secret" == secret.reveal()
    assert "sk-env-secret" not in repr(secret) + str(secret)
    assert "sk-arg" == _config.resolve_key("sk-arg").reveal()  # type: ignore[union-attr]
