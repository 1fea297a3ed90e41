"""
The pytest plugin of ``aioqwenimage.testing``: a ``fake_dashscope`` fixture and marker.

```python
@pytest.mark.fake_dashscope(time_scale=0.001, over_cap="reject")
async def test_something(fake_dashscope):
    ...  # fake_dashscope.base_url, fake_dashscope.api_key, fake_dashscope.stats
```

pytest imports this module before coverage starts, so it stays tiny and imports the emulator (and
pytest-asyncio) only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from aioqwenimage.testing import FakeDashScope

DEFAULT_TIME_SCALE = 0.01
"""One simulated second lasts 10 ms unless the marker says otherwise."""


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker; let pytest-asyncio run the fixture in strict mode too."""
    config.addinivalue_line(
        "markers",
        "fake_dashscope(**options): configure the fake_dashscope fixture with FakeDashScope "
        "keyword options, plus over_cap='queue'|'reject' and no_limits=True",
    )
    try:
        import pytest_asyncio
    except ImportError:  # pragma: no cover - pytest-asyncio is how the fixture runs
        return
    # Strict mode runs only async fixtures that pytest-asyncio marked; its public decorator
    # marks the function object itself, which is what the fixture below wraps.
    pytest_asyncio.fixture(_fake_dashscope)


async def _fake_dashscope(request: pytest.FixtureRequest) -> AsyncIterator[FakeDashScope]:
    from aioqwenimage.testing._server import fake_from_options

    marker = request.node.get_closest_marker("fake_dashscope")
    options = dict(marker.kwargs) if marker is not None else {}
    async with fake_from_options(options, time_scale=DEFAULT_TIME_SCALE) as fake:
        yield fake


fake_dashscope = pytest.fixture(_fake_dashscope, name="fake_dashscope")
