"""
An asyncio-native client for Alibaba Cloud Model Studio image generation (DashScope: Qwen-Image,
Wan, Qwen-Image editing), with a faithful local emulator in `aioqwenimage.testing`.

::

    async with aioqwenimage.Client() as client:
        result = await client.generate("a red fox in snow", model="qwen-image-plus")
        await result.images[0].save("out/")
"""

from importlib.metadata import version as _version

from . import _logging
from ._client import Client as Client
from ._errors import APIError as APIError
from ._errors import AuthenticationError as AuthenticationError
from ._errors import ClientClosedError as ClientClosedError
from ._errors import ContentModerationError as ContentModerationError
from ._errors import ImageExpiredError as ImageExpiredError
from ._errors import InvalidRequestError as InvalidRequestError
from ._errors import PermissionDeniedError as PermissionDeniedError
from ._errors import QuotaExceededError as QuotaExceededError
from ._errors import QwenImageError as QwenImageError
from ._errors import RateLimitError as RateLimitError
from ._errors import ServerError as ServerError
from ._errors import SubmissionUncertainError as SubmissionUncertainError
from ._errors import TaskCanceledError as TaskCanceledError
from ._errors import TaskError as TaskError
from ._errors import TaskExpiredError as TaskExpiredError
from ._errors import TaskFailedError as TaskFailedError
from ._errors import TaskModeratedError as TaskModeratedError
from ._errors import TaskTimeoutError as TaskTimeoutError
from ._errors import TransportError as TransportError
from ._errors import UnsafeResultError as UnsafeResultError
from ._errors import WrongEventLoopError as WrongEventLoopError
from ._events import EventHook as EventHook
from ._handle import TaskHandle as TaskHandle
from ._models import ClientStats as ClientStats
from ._models import EventKind as EventKind
from ._models import GeneratedImage as GeneratedImage
from ._models import GenerationResult as GenerationResult
from ._models import ImageFailure as ImageFailure
from ._models import Outcome as Outcome
from ._models import TaskEvent as TaskEvent
from ._models import TaskInfo as TaskInfo
from ._models import TaskStatus as TaskStatus
from ._notifications import Notifications as Notifications
from ._requests import ImageInput as ImageInput
from ._resolver import UncertainOutcome as UncertainOutcome
from ._resolver import UncertainResolution as UncertainResolution
from ._settings import Limits as Limits
from ._settings import ModelLimits as ModelLimits
from ._settings import PollPolicy as PollPolicy
from ._settings import PoolLimits as PoolLimits
from ._settings import RetryPolicy as RetryPolicy
from ._settings import Timeouts as Timeouts
from ._sync import SyncClient as SyncClient
from ._sync import SyncTaskHandle as SyncTaskHandle

__version__ = _version("aioqwenimage")

__all__ = [
    "APIError",
    "AuthenticationError",
    "Client",
    "ClientClosedError",
    "ClientStats",
    "ContentModerationError",
    "EventHook",
    "EventKind",
    "GeneratedImage",
    "GenerationResult",
    "ImageExpiredError",
    "ImageFailure",
    "ImageInput",
    "InvalidRequestError",
    "Limits",
    "ModelLimits",
    "Notifications",
    "Outcome",
    "PermissionDeniedError",
    "PollPolicy",
    "PoolLimits",
    "QuotaExceededError",
    "QwenImageError",
    "RateLimitError",
    "RetryPolicy",
    "ServerError",
    "SubmissionUncertainError",
    "SyncClient",
    "SyncTaskHandle",
    "TaskCanceledError",
    "TaskError",
    "TaskEvent",
    "TaskExpiredError",
    "TaskFailedError",
    "TaskHandle",
    "TaskInfo",
    "TaskModeratedError",
    "TaskStatus",
    "TaskTimeoutError",
    "Timeouts",
    "TransportError",
    "UncertainOutcome",
    "UncertainResolution",
    "UnsafeResultError",
    "WrongEventLoopError",
    "__version__",
]

# Reprs, docs and tracebacks show the public path, not the private module (httpx, anyio).
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) and _obj.__module__.startswith("aioqwenimage._"):
        _obj.__module__ = "aioqwenimage"
del _name, _obj

# $AIOQWENIMAGE_LOG=debug|info|warning shows the "aioqwenimage" logger on stderr (like OPENAI_LOG).
_logging.configure_from_env()
