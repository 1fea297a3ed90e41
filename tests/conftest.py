"""Shared test setup."""

from __future__ import annotations

from typing import Any

import aiohttp
import aioresponses.core


class _CompatClientResponse(aiohttp.ClientResponse):
    """
    aiohttp 3.14 made ``stream_writer`` a required argument of ClientResponse, and aioresponses
    (0.7.9, the latest release) does not pass it: pnuckowski/aioresponses#289. A mocked
    response has already been "sent", so aiohttp only reads the writer's ``output_size``.
    """

    class _SentWriter:
        output_size = 0

    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", self._SentWriter())
        super().__init__(method, url, **kwargs)


aioresponses.core.ClientResponse = _CompatClientResponse  # type: ignore[misc]
