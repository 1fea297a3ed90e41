"""
The pytest plugin of ``aioqwenimage.testing``: the ``fake_dashscope`` fixtures and marker.

```python
@pytest.mark.fake_dashscope(time_scale=0.001, over_cap="reject")
async def test_something(fake_dashscope):
    async with fake_dashscope.client() as client:
        ...
```

The fixture serves the emulator from a background thread with its own event loop, so one fixture
answers synchronous tests (starlette's ``TestClient``, Django's test client, a blocking client)
and async tests alike, under any async plugin and loop scope. ``fake_dashscope_env`` also points
the environment at it, for apps that build their own ``Client()``.

pytest imports this module before coverage starts, so it stays tiny and imports the emulator
only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from aioqwenimage.testing import FakeDashScope

DEFAULT_TIME_SCALE = 0.01
"""One simulated second lasts 10 ms unless the marker says otherwise."""


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker."""
    config.addinivalue_line(
        "markers",
        "fake_dashscope(**options): configure the fake_dashscope fixture with FakeDashScope "
        "keyword options, plus over_cap='queue'|'reject' and no_limits=True",
    )


@pytest.fixture
def fake_dashscope(request: pytest.FixtureRequest) -> Iterator[FakeDashScope]:
    """A running emulator, configured by the ``fake_dashscope`` marker."""
    from aioqwenimage.testing._server import fake_from_options

    marker = request.node.get_closest_marker("fake_dashscope")
    options = dict(marker.kwargs) if marker is not None else {}
    with fake_from_options(options, time_scale=DEFAULT_TIME_SCALE) as fake:
        yield fake


@pytest.fixture
def fake_dashscope_env(
    fake_dashscope: FakeDashScope, monkeypatch: pytest.MonkeyPatch
) -> FakeDashScope:
    """`fake_dashscope`, with its `environ` set for the test: a bare ``Client()`` uses it."""
    for name, value in fake_dashscope.environ.items():
        monkeypatch.setenv(name, value)
    return fake_dashscope
