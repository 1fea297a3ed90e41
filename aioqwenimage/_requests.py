"""
From a user's call to a wire request: validate against the catalog, pick the endpoint, build the
body.

Pure except for `encode_images`, which reads local files off the event loop. Everything is checked
before any network I/O, and every rejection names the parameter, the rule and the model.
"""

from __future__ import annotations

import base64
import mimetypes
import warnings
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import anyio
import attrs

from aioqwenimage import _catalog
from aioqwenimage._catalog import ModelSpec, Protocol
from aioqwenimage._errors import InvalidRequestError

__all__ = ["ImageInput", "PreparedRequest", "encode_images", "prepare"]

ImageInput = str | bytes | PathLike[str]
"""An input image: an ``http(s)://``, ``oss://`` or ``data:`` URL, raw bytes, or a local path."""

_MAX_IMAGE_BYTES = 10 * 1024 * 1024  # dashscope-api.md §4.3
_KEYWORDS = frozenset(
    {
        "size",
        "n",
        "seed",
        "negative_prompt",
        "prompt_extend",
        "watermark",
        "prompt",
        "model",
        "images",
        "messages",
    }
)
_warned_unknown: set[str] = set()


@attrs.frozen(kw_only=True)
class PreparedRequest:
    """A validated request, ready to send."""

    model: str
    spec: ModelSpec
    protocol: Protocol
    body: Mapping[str, Any]
    prompt: str


def prepare(
    prompt: object,
    *,
    model: str,
    size: object = None,
    n: object = None,
    seed: object = None,
    negative_prompt: object = None,
    prompt_extend: object = None,
    watermark: object = None,
    images: Sequence[str] = (),
    extra_parameters: Mapping[str, Any] | None = None,
) -> PreparedRequest:
    """
    Validate a generation against the model catalog and build its wire body.

    A model the catalog does not know by name but recognises by family is accepted with its
    family's rules, and a `UserWarning` is issued once per name.

    Raises:
        InvalidRequestError: A rule is broken; names the parameter, the rule and the model.
    """
    # Untyped callers (JSONL batch lines) can pass anything; check before trusting the hint.
    if not _is_nonempty_str(model):
        raise InvalidRequestError("model must be a non-empty string", parameter="model")
    found = _catalog.resolve(model)
    if found is None:
        msg = (
            f"unknown model {model!r}: not in the catalog and not of a known family "
            "(qwen-image*, wan*); known models: " + ", ".join(sorted(_catalog.MODELS))
        )
        raise InvalidRequestError(msg, parameter="model", model=model)
    spec, known = found
    if not known and model not in _warned_unknown:
        _warned_unknown.add(model)
        warnings.warn(
            f"model {model!r} is not in aioqwenimage's catalog; treating it like {spec.family} "
            "models. Upgrade aioqwenimage if requests are rejected.",
            UserWarning,
            stacklevel=3,
        )
    parsed_size: tuple[int, int] | None = None
    if size is not None:
        if not spec.size.settable:
            _reject("size", spec.size.describe(), model)
        try:
            parsed_size = _catalog.parse_size(size)
        except ValueError as exc:
            _reject("size", str(exc), model)
    violations = spec.validate(
        prompt=prompt,
        size=parsed_size,
        n=n,
        seed=seed,
        negative_prompt=negative_prompt,
        prompt_extend=prompt_extend,
        watermark=watermark,
        images=len(images),
    )
    if violations:
        first = violations[0]
        message = "; ".join(str(v) for v in violations)
        raise InvalidRequestError(message, parameter=first.parameter, model=model)
    assert isinstance(prompt, str)  # noqa: S101 - validate() rejects anything else

    named = {
        "size": None if parsed_size is None else _catalog.format_size(parsed_size),
        # Wan's service default is 4 images, each billed: one unless the caller asks for more.
        "n": 1 if n is None else n,
        "seed": seed,
        "prompt_extend": prompt_extend,
        "watermark": watermark,
    }
    parameters: dict[str, Any] = {key: value for key, value in named.items() if value is not None}
    for key, value in (extra_parameters or {}).items():
        # A known parameter smuggled in here would skip the catalog's checks.
        if key in _KEYWORDS:
            _reject(
                "extra_parameters",
                f"{key!r} has its own keyword argument, validated against the model: pass "
                f"{key}=... instead of extra_parameters={{{key!r}: ...}}",
                model,
            )
        parameters[key] = value

    protocol = spec.preferred
    body: dict[str, Any] = {"model": model}
    if protocol is Protocol.TEXT2IMAGE:
        body["input"] = {"prompt": prompt}
        if negative_prompt is not None:
            body["input"]["negative_prompt"] = negative_prompt
    else:
        content: list[dict[str, str]] = [{"image": image} for image in images]
        content.append({"text": prompt})
        body["input"] = {"messages": [{"role": "user", "content": content}]}
        if negative_prompt is not None:
            parameters["negative_prompt"] = negative_prompt
    body["parameters"] = parameters
    return PreparedRequest(model=model, spec=spec, protocol=protocol, body=body, prompt=prompt)


def _reject(parameter: str, rule: str, model: str) -> None:
    msg = f"{parameter}: {rule} (model {model!r})"
    raise InvalidRequestError(msg, parameter=parameter, model=model)


async def encode_images(images: Sequence[ImageInput] | None, *, model: str) -> list[str]:
    """
    Turn input images into what the API takes: URLs pass through; bytes and local files become
    ``data:`` URIs (read in a worker thread, never on the event loop).

    Args:
        model: The model the images are for; every error names it.

    Raises:
        InvalidRequestError: A file is missing, or an image is larger than the API's 10 MB.
    """
    if images is None:
        return []

    def refuse(rule: str) -> InvalidRequestError:
        message = f"images: {rule} (model {model!r})"
        return InvalidRequestError(message, parameter="images", model=model)

    if isinstance(images, str | bytes) or not isinstance(images, Sequence):
        raise refuse("must be a sequence of URLs, paths or bytes")
    encoded: list[str] = []
    for item in images:
        image: object = item  # untyped callers may pass anything
        if isinstance(image, str) and image.startswith(("http://", "https://", "oss://", "data:")):
            encoded.append(image)
            continue
        if isinstance(image, bytes):
            data, mime = image, _sniff(image)
        elif isinstance(image, str | PathLike):
            path = Path(image)
            try:
                data = await anyio.Path(path).read_bytes()
            except OSError as exc:
                msg = f"cannot read input image {str(path)!r}: {exc.strerror}"
                raise refuse(msg) from exc
            mime = mimetypes.guess_type(path.name)[0] or _sniff(data)
        else:
            msg = f"an input image must be a URL, a path or bytes, not {type(image).__name__}"
            raise refuse(msg)
        if len(data) > _MAX_IMAGE_BYTES:
            msg = f"an input image is {len(data)} bytes; the API takes at most {_MAX_IMAGE_BYTES}"
            raise refuse(msg)
        encoded.append(f"data:{mime};base64,{base64.b64encode(data).decode()}")
    return encoded


def _is_nonempty_str(value: object) -> bool:
    return isinstance(value, str) and bool(value)


def _sniff(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"
