"""
A faithful local DashScope for tests and benchmarks: `FakeDashScope` and its settings.

```python
from aioqwenimage.testing import FakeDashScope

async with FakeDashScope(time_scale=0.01) as fake:
    ...  # point a client at fake.base_url with fake.api_key
```

The pytest plugin (installed with the package) adds a ``fake_dashscope`` fixture and marker.

The names below load on first use: pytest imports this package (for the plugin) before coverage
starts, and an eager import here would hide the emulator's module-level code from coverage.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aioqwenimage.testing._config import INHERIT as INHERIT
    from aioqwenimage.testing._config import EmulatorLimits as EmulatorLimits
    from aioqwenimage.testing._config import ModelQuota as ModelQuota
    from aioqwenimage.testing._faults import Fault as Fault
    from aioqwenimage.testing._faults import FaultKind as FaultKind
    from aioqwenimage.testing._faults import Faults as Faults
    from aioqwenimage.testing._notify import NotificationTarget as NotificationTarget
    from aioqwenimage.testing._server import DEFAULT_API_KEY as DEFAULT_API_KEY
    from aioqwenimage.testing._server import FakeDashScope as FakeDashScope
    from aioqwenimage.testing._stats import Stats as Stats
    from aioqwenimage.testing._stats import SyncCallReport as SyncCallReport
    from aioqwenimage.testing._stats import TaskReport as TaskReport
    from aioqwenimage.testing._wire import Endpoint as Endpoint

__all__ = [
    "DEFAULT_API_KEY",
    "INHERIT",
    "EmulatorLimits",
    "Endpoint",
    "FakeDashScope",
    "Fault",
    "FaultKind",
    "Faults",
    "ModelQuota",
    "NotificationTarget",
    "Stats",
    "SyncCallReport",
    "TaskReport",
]

_HOMES = {
    "DEFAULT_API_KEY": "_server",
    "INHERIT": "_config",
    "EmulatorLimits": "_config",
    "Endpoint": "_wire",
    "FakeDashScope": "_server",
    "Fault": "_faults",
    "FaultKind": "_faults",
    "Faults": "_faults",
    "ModelQuota": "_config",
    "NotificationTarget": "_notify",
    "Stats": "_stats",
    "SyncCallReport": "_stats",
    "TaskReport": "_stats",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
