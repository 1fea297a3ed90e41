"""Validation and routing before any I/O: the catalog decides, with errors that name the rule."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from aioqwenimage import _requests
from aioqwenimage._catalog import Protocol
from aioqwenimage._errors import InvalidRequestError
from aioqwenimage._requests import encode_images, prepare


def test_async_qwen_model_builds_a_text2image_body():
    """qwen-image-plus goes to the async text2image endpoint with a prompt-string body."""
    request = prepare(
        "a fox", model="qwen-image-plus", size="1328x1328", seed=7, negative_prompt="blur"
    )

    assert Protocol.TEXT2IMAGE == request.protocol
    assert {
        "model": "qwen-image-plus",
        "input": {"prompt": "a fox", "negative_prompt": "blur"},
        "parameters": {"size": "1328*1328", "n": 1, "seed": 7},
    } == request.body


def test_sync_only_model_builds_a_messages_body_with_negative_prompt_in_parameters():
    """qwen-image-2.0-pro is synchronous: messages body, negative_prompt among the parameters."""
    request = prepare(
        "a fox", model="qwen-image-2.0-pro", size=(2048, 1024), n=3, negative_prompt="x"
    )

    assert Protocol.MULTIMODAL == request.protocol
    assert [{"role": "user", "content": [{"text": "a fox"}]}] == request.body["input"]["messages"]
    assert {"size": "2048*1024", "n": 3, "negative_prompt": "x"} == request.body["parameters"]


def test_wan26_prefers_its_async_protocol():
    """wan2.6-t2i is created as a task on the image-generation endpoint."""
    assert Protocol.IMAGE_GENERATION == prepare("a fox", model="wan2.6-t2i").protocol


def test_edit_model_puts_images_before_the_text():
    """Edit inputs come first in the content list, the text last (as the docs show)."""
    request = prepare("make it blue", model="qwen-image-edit-plus", images=["https://x/a.png"])

    content = request.body["input"]["messages"][0]["content"]
    assert [{"image": "https://x/a.png"}, {"text": "make it blue"}] == content


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"size": "1024*1024"}, "size"),
        ({"n": 2}, "n"),
        ({"seed": -1}, "seed"),
        ({"seed": True}, "seed"),
        ({"negative_prompt": 5}, "negative_prompt"),
        ({"prompt_extend": "yes"}, "prompt_extend"),
        ({"watermark": 1}, "watermark"),
        ({"size": "big"}, "size"),
    ],
)
def test_bad_parameters_are_rejected_naming_parameter_and_model(kwargs, parameter):
    """Each broken rule raises InvalidRequestError naming the parameter and the model."""
    with pytest.raises(InvalidRequestError) as info:
        prepare("a fox", model="qwen-image-plus", **kwargs)

    assert parameter == info.value.parameter
    assert "qwen-image-plus" == info.value.model
    assert "qwen-image-plus" in str(info.value)


def test_fixed_size_error_lists_the_five_sizes():
    """A size outside qwen-image-plus's five sizes says which sizes are accepted."""
    with pytest.raises(InvalidRequestError, match=r"1664\*928.*928\*1664"):
        prepare("a fox", model="qwen-image-plus", size="1024*1024")


@pytest.mark.parametrize("prompt", ["", "   ", None, 3])
def test_empty_or_non_string_prompt_is_rejected(prompt):
    """The prompt must be a non-empty string."""
    with pytest.raises(InvalidRequestError) as info:
        prepare(prompt, model="wan2.2-t2i-flash")

    assert "prompt" == info.value.parameter


def test_size_on_a_model_without_size_is_rejected():
    """qwen-image-edit picks its own size."""
    with pytest.raises(InvalidRequestError, match="cannot be set"):
        prepare("x", model="qwen-image-edit", size="1024*1024", images=["https://x/a.png"])


def test_edit_model_without_images_is_rejected():
    """An edit model needs 1-3 input images."""
    with pytest.raises(InvalidRequestError, match="1 to 3 input images"):
        prepare("x", model="qwen-image-edit-max")


def test_extra_parameters_pass_through_but_never_shadow_named_ones():
    """Unknown parameters are sent as given; one that has a keyword is refused."""
    request = prepare("x", model="wan2.2-t2i-flash", extra_parameters={"style": "<anime>"})
    assert "<anime>" == request.body["parameters"]["style"]

    with pytest.raises(InvalidRequestError, match="own keyword"):
        prepare("x", model="wan2.2-t2i-flash", n=1, extra_parameters={"n": 2})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("size", "100*100"),
        ("size", "1024*1024"),
        ("n", 9),
        ("n", 1),
        ("seed", -1),
        ("watermark", "yes"),
        ("prompt_extend", True),
        ("negative_prompt", "blur"),
    ],
)
def test_known_parameters_in_extra_parameters_are_refused_naming_the_keyword(
    key: str, value: object
):
    """A known parameter never skips validation through extra_parameters: use the keyword."""
    with pytest.raises(InvalidRequestError) as info:
        prepare("x", model="wan2.2-t2i-flash", extra_parameters={key: value})
    assert ("extra_parameters", "wan2.2-t2i-flash") == (info.value.parameter, info.value.model)
    assert f"pass {key}=..." in str(info.value)


def test_unknown_snapshot_is_routed_by_family_and_warns_once(monkeypatch):
    """A new dated snapshot works with its family's rules, with one warning per name."""
    monkeypatch.setattr(_requests, "_warned_unknown", set())
    with pytest.warns(UserWarning, match="not in aioqwenimage's catalog"):
        request = prepare("x", model="qwen-image-2.0-pro-2027-01-01")
    assert Protocol.MULTIMODAL == request.protocol
    assert "qwen-image-2.0-pro-2027-01-01" == request.body["model"]

    again = prepare("x", model="qwen-image-2.0-pro-2027-01-01")  # no second warning (errors)
    assert request.body == again.body


def test_unknown_family_is_rejected():
    """A model of no known family is refused before any I/O."""
    with pytest.raises(InvalidRequestError, match="unknown model 'dall-e'"):
        prepare("x", model="dall-e")


async def test_encode_images_passes_urls_and_inlines_files_and_bytes(tmp_path: Path):
    """URLs pass through; bytes and files become data URIs with a sniffed or guessed type."""
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 10
    path = tmp_path / "in.jpg"
    path.write_bytes(b"\xff\xd8jpeg")

    encoded = await encode_images(
        ["https://x/a.png", png, path, str(path)], model="qwen-image-edit-plus"
    )

    assert "https://x/a.png" == encoded[0]
    assert "data:image/png;base64," + base64.b64encode(png).decode() == encoded[1]
    assert encoded[2].startswith("data:image/jpeg;base64,")
    assert encoded[2] == encoded[3]


async def test_encode_images_rejects_missing_files_and_oversized_images(tmp_path: Path):
    """A missing file or an image over 10 MB is an InvalidRequestError on `images`."""
    with pytest.raises(InvalidRequestError, match="cannot read input image"):
        await encode_images([tmp_path / "nope.png"], model="qwen-image-edit-plus")
    with pytest.raises(InvalidRequestError, match="at most"):
        await encode_images([b"\x00" * (10 * 1024 * 1024 + 1)], model="qwen-image-edit-plus")
    with pytest.raises(InvalidRequestError, match="sequence"):
        await encode_images("https://x/a.png", model="qwen-image-edit-plus")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match="not int"):
        await encode_images([3], model="qwen-image-edit-plus")  # type: ignore[list-item]
