"""
Reading generation requests (E1, E2, E3) the way the service does: shape first, then the model's
own rules from the catalog.

`parse_generation` is pure: a decoded JSON body in, a `GenerationRequest` or an `ApiError` out.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final, Literal

import attrs

from aioqwenimage._catalog import (
    NEGATIVE_PROMPT_MAX,
    ModelSpec,
    Protocol,
    Violation,
    parse_size,
    resolve,
)
from aioqwenimage.testing import _wire
from aioqwenimage.testing._wire import ApiError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["GenerationRequest", "UnknownModels", "parse_generation"]

UnknownModels = Literal["resolve", "reject"]
"""Names the catalog knows only by family prefix: served with the family's rules, or refused."""

DATA_URI_MAX: Final = 10_485_760

# Keys the official SDK puts in `parameters` on its own (ImageSynthesis' named arguments,
# ImageGeneration.async_call's `is_async`, MultiModalConversation's named arguments): the service
# evidently accepts them, so only other keys get the documented 400 for unknown parameters.
_SDK_PARAMETERS: Final = frozenset(
    {
        "size",
        "n",
        "seed",
        "prompt_extend",
        "watermark",
        "negative_prompt",
        "style",
        "is_async",
        "ref_strength",
        "ref_mode",
        "bbox_list",
        "enable_sequential",
        "thinking_mode",
        "color_palette",
        "similarity",
        "sketch_weight",
        "realisticness",
        "temperature",
        "top_p",
        "top_k",
        "max_tokens",
        "stop",
        "repetition_penalty",
        "presence_penalty",
        "result_format",
        "incremental_output",
        "enable_search",
        "enable_thinking",
    }
)
_WIRE_SIZE: Final = re.compile(r"^(\d{1,9})\*(\d{1,9})$")
_DATA_URI: Final = re.compile(r"^data:[\w.+-]+/[\w.+-]+;base64,")


@attrs.frozen(kw_only=True)
class GenerationRequest:
    """
    A valid generation request, with the service's defaults applied.

    Attributes:
        prompt: The prompt as sent (echoed as ``orig_prompt``).
        effective_prompt: The prompt after silent truncation to the model's limit.
        size: The output size: requested (edit: rounded to multiples of 16) or the default.
        images: How many input images (edit).
    """

    spec: ModelSpec
    protocol: Protocol
    prompt: str
    effective_prompt: str
    negative_prompt: str | None
    size: tuple[int, int]
    n: int
    seed: int | None
    prompt_extend: bool
    watermark: bool
    images: int

    @property
    def model(self) -> str:
        """The model name as sent."""
        return self.spec.name


def _model(body: Mapping[str, Any], protocol: Protocol, unknown_models: UnknownModels) -> ModelSpec:
    model = body.get("model")
    if model is None or model == "":
        raise ApiError(400, "BadRequest.EmptyModel", _wire.MSG_EMPTY_MODEL)
    if not isinstance(model, str):
        raise ApiError.invalid(_wire.MSG_MODEL_NOT_EXIST)
    found = resolve(model)
    if found is None or (not found[1] and unknown_models == "reject"):
        raise ApiError.invalid(_wire.MSG_MODEL_NOT_EXIST)
    spec = found[0]
    if protocol not in spec.protocols:
        raise ApiError.invalid(_wire.MSG_URL_ERROR)
    return spec


def _check_image(value: object, *, oss_resolve: bool) -> None:
    if not isinstance(value, str) or not value:
        raise ApiError.invalid("image must be a URL or a data URI string")
    if value.startswith("data:"):
        match = _DATA_URI.match(value)
        if match is None:
            raise ApiError.invalid("Invalid image format or corrupted file")
        payload = len(value) - match.end()
        decoded = payload * 3 // 4 - value.count("=", len(value) - 2)
        if decoded > DATA_URI_MAX:
            raise ApiError.invalid(_wire.MSG_DATA_URI)
    elif value.startswith("oss://"):
        if not oss_resolve:
            raise ApiError.invalid(
                "oss:// inputs need the header X-DashScope-OssResourceResolve: enable"
            )
    elif not value.startswith(("http://", "https://")):
        raise ApiError.invalid("download image failed")


def _messages(inputs: Mapping[str, Any], *, oss_resolve: bool) -> tuple[object, int]:
    """The text and the number of images of a messages body (§4.2), its shape checked."""
    messages = inputs.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError.invalid("No messages found in input")
    if len(messages) != 1:
        raise ApiError.invalid("messages length only support 1")
    message = messages[0]
    if not isinstance(message, dict) or message.get("role") != "user":
        raise ApiError.invalid("The role of the message must be 'user'.")  # [I]
    content = message.get("content")
    if not isinstance(content, list) or not content:
        raise ApiError.invalid("lack of image or text")
    texts: list[object] = []
    images = 0
    for item in content:
        if not isinstance(item, dict):
            raise ApiError.invalid("lack of image or text")
        if "text" in item:
            texts.append(item["text"])
        elif "image" in item:
            _check_image(item["image"], oss_resolve=oss_resolve)
            images += 1
        else:
            raise ApiError.invalid("lack of image or text")
    if not texts:
        raise ApiError.invalid("lack of image or text")
    if len(texts) > 1:
        raise ApiError.invalid("content must contain exactly one text")  # [I]
    return texts[0], images


def _size(parameters: Mapping[str, Any]) -> tuple[int, int] | None:
    if "size" not in parameters or parameters["size"] is None:
        return None
    value = parameters["size"]
    # The wire form is W*H only (§3); "1024x1024" is a client-side convenience.
    if not isinstance(value, str) or _WIRE_SIZE.match(value) is None:
        msg = f"size must look like 'W*H' (e.g. '1024*1024'), got {value!r}"
        raise ApiError.invalid(msg)
    try:
        return parse_size(value)
    except ValueError as exc:
        msg = f"size is invalid: {exc}"
        raise ApiError.invalid(msg) from exc


def _violation_message(violation: Violation, spec: ModelSpec) -> str:
    if violation.parameter == "n" and spec.n_range == (1, 1):
        return _wire.MSG_N_FIXED
    return str(violation)


def _round16(side: int) -> int:
    # Halves round down: the docs' example turns 1033*1032 into 1040*1024.
    return max(16, (side + 7) // 16 * 16)


def parse_generation(
    body: Mapping[str, Any],
    protocol: Protocol,
    *,
    oss_resolve: bool = False,
    unknown_models: UnknownModels = "resolve",
) -> GenerationRequest:
    """
    Check a create (E1/E3) or sync (E2) body the way the service does.

    Args:
        body: The decoded JSON object.
        protocol: The endpoint it was sent to.
        oss_resolve: Whether ``X-DashScope-OssResourceResolve: enable`` was sent.
        unknown_models: What to do with names the catalog knows only by family.

    Raises:
        ApiError: The documented 400 for the first problem found.
    """
    spec = _model(body, protocol, unknown_models)
    inputs = body.get("input")
    if inputs is None:
        raise ApiError(400, "BadRequest.EmptyInput", _wire.MSG_EMPTY_INPUT)
    if not isinstance(inputs, dict):
        raise ApiError.invalid("input must be a JSON object")
    parameters = body.get("parameters")
    if parameters is None:
        parameters = {}
    elif not isinstance(parameters, dict):
        raise ApiError.invalid("parameters must be a JSON object")
    unknown = sorted(set(parameters) - _SDK_PARAMETERS)
    if unknown:
        msg = f"Parameter {unknown[0]!r} is not supported."  # [I] wording; the 400 is reported
        raise ApiError.invalid(msg)

    # The guide lists negative_prompt in `input` (as the SDK sends it), its curl example and the
    # messages protocol in `parameters` (§4.1, §4.2): both are read everywhere, `input` first.
    negative: object = inputs.get("negative_prompt", parameters.get("negative_prompt"))
    if protocol is Protocol.TEXT2IMAGE:
        prompt: object = inputs.get("prompt")
        raw_images = inputs.get("images")
        images = len(raw_images) if isinstance(raw_images, list) else 0
    else:
        prompt, images = _messages(inputs, oss_resolve=oss_resolve)
    if isinstance(negative, str):
        # Documented as truncated, not refused (§3).
        negative = negative[:NEGATIVE_PROMPT_MAX]

    size = _size(parameters)
    violations = spec.validate(
        prompt=prompt,
        size=size,
        n=parameters.get("n"),
        seed=parameters.get("seed"),
        negative_prompt=negative,
        prompt_extend=parameters.get("prompt_extend"),
        watermark=parameters.get("watermark"),
        images=images,
    )
    if violations:
        raise ApiError.invalid(_violation_message(violations[0], spec))

    assert isinstance(prompt, str)  # noqa: S101 - validate() has refused anything else
    editing = spec.edit == "required" or (spec.edit == "optional" and images > 0)
    if size is None:
        size = spec.size.default
    elif editing:
        size = (_round16(size[0]), _round16(size[1]))
    extend = parameters.get("prompt_extend")
    return GenerationRequest(
        spec=spec,
        protocol=protocol,
        prompt=prompt,
        effective_prompt=prompt[: spec.prompt_limit],
        negative_prompt=negative if isinstance(negative, str) else None,
        size=size,
        n=parameters.get("n") or spec.n_default,
        seed=parameters.get("seed"),
        prompt_extend=spec.prompt_extend if extend is None else bool(extend),
        watermark=bool(parameters.get("watermark", False)),
        images=images,
    )
