"""
A faithful local DashScope for tests and benchmarks: `FakeDashScope` and its settings.

```python
from aioqwenimage.testing import FakeDashScope

async with FakeDashScope(time_scale=0.01) as fake:
    ...  # point a client at fake.base_url with fake.api_key
```

The pytest plugin (installed with the package) adds a ``fake_dashscope`` fixture and marker.
"""

from aioqwenimage.testing._config import INHERIT as INHERIT
from aioqwenimage.testing._config import EmulatorLimits as EmulatorLimits
from aioqwenimage.testing._config import ModelQuota as ModelQuota
from aioqwenimage.testing._faults import Fault as Fault
from aioqwenimage.testing._faults import FaultKind as FaultKind
from aioqwenimage.testing._faults import Faults as Faults
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
    "Stats",
    "SyncCallReport",
    "TaskReport",
]

for _public in (
    EmulatorLimits,
    Endpoint,
    FakeDashScope,
    Fault,
    FaultKind,
    Faults,
    ModelQuota,
    Stats,
    SyncCallReport,
    TaskReport,
):
    _public.__module__ = __name__
del _public
