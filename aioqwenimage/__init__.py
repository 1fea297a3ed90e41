"""An asyncio-native client for DashScope image generation (Qwen-Image, Wan), with an emulator."""

from importlib.metadata import version as _version

__version__ = _version("aioqwenimage")

__all__ = ["__version__"]
