"""
The catalog against the seed documents (``../shared/seeds``): each row quotes its line.

A row's quote is checked to be in its seed, so a row cannot cite a sentence the seed does not say.
The rule for conflicts (issue 9): the client refuses only what every documented source refuses and
accepts what any of them accepts; each rule records its source.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aioqwenimage import _catalog
from aioqwenimage._catalog import MODELS, Protocol
from aioqwenimage._requests import prepare
from aioqwenimage.testing._bodies import parse_generation
from aioqwenimage.testing._wire import ApiError

SEEDS = Path(__file__).resolve().parents[3] / "shared" / "seeds"
GUIDE = "text-to-image-guide.txt"
REFERENCE = "qwen-image-api-reference.txt"
# The seeds ship with the project's shared documents, not with the package: without them the
# quotes cannot be checked, but the rules still can.
HAVE_SEEDS = (SEEDS / GUIDE).is_file()

WAN_V2 = (
    "Wan V2 models (v2.0 and later): Support resolutions with a width and height from 512 to "
    "1440 pixels, provided the total pixel count does not exceed 1440*1440."
)
WAN_ASYNC = "Wan supports only asynchronous calls."
QWEN_FIVE = "Qwen-Image: Supports only the following five fixed resolutions:"
QWEN_ASYNC = "Only qwen-image-plus and qwen-image support asynchronous calls."
NEG_INPUT = "Parameters: input.prompt (required), input.negative_prompt (optional)."
WAN_MODELS = [name for name in MODELS if name.startswith("wan")]

# (seed, quoted line, model, size, accepted?)
SIZE_ROWS = [
    (GUIDE, WAN_V2, model, size, ok)
    for model in WAN_MODELS
    for size, ok in [
        ("512*512", True),
        ("1440*1440", True),
        ("512*1440", True),
        ("1441*1024", False),
        ("1024*511", False),
        ("1024*1024", True),
        ("1440*810", True),
        ("1080*1440", True),
    ]
] + [
    (GUIDE, QWEN_FIVE, model, size, ok)
    for model in ("qwen-image-plus", "qwen-image", "qwen-image-max")
    for size, ok in [("1664*928", True), ("928*1664", True), ("1024*1024", False)]
]


def quoted(seed: str, line: str) -> bool:
    text = (SEEDS / seed).read_text(encoding="utf-8")
    return " ".join(line.split()) in " ".join(text.split())


@pytest.mark.skipif(not HAVE_SEEDS, reason="the seed documents are not on this machine")
@pytest.mark.parametrize(
    ("seed", "line"),
    sorted(
        {(row[0], row[1]) for row in SIZE_ROWS}
        | {(GUIDE, WAN_ASYNC), (REFERENCE, QWEN_ASYNC), (GUIDE, NEG_INPUT)}
    ),
)
def test_every_quote_is_in_its_seed(seed: str, line: str):
    """Each row's quoted line is really in the seed it names."""
    assert quoted(seed, line)


@pytest.mark.parametrize(("seed", "line", "model", "size", "ok"), SIZE_ROWS)
def test_size_rules_follow_the_seeds(seed: str, line: str, model: str, size: str, ok: bool):
    """The client's catalog accepts and refuses sizes as the quoted seed line says."""
    spec = MODELS[model]
    assert ok == (spec.size.check(_catalog.parse_size(size)) is None), f"{seed}: {line}"


@pytest.mark.parametrize(("seed", "line", "model", "size", "ok"), SIZE_ROWS)
def test_the_emulator_follows_the_same_size_rules(
    seed: str, line: str, model: str, size: str, ok: bool
):
    """The emulator refuses exactly what the catalog refuses, on the model's own endpoint."""
    spec = MODELS[model]
    body = prepare("a fox", model=model).body
    body = {**body, "parameters": {**body["parameters"], "size": size}}
    try:
        parse_generation(body, spec.preferred)
    except ApiError:
        accepted = False
    else:
        accepted = True
    assert ok == accepted, f"{seed}: {line}"


@pytest.mark.parametrize("model", ["wan2.5-t2i-preview", "wan2.6-t2i"])
def test_newer_wan_models_also_accept_their_reference_sizes(model: str):
    """The Wan reference's own sizes (768*2700, 960*1696) stay accepted: any source suffices."""
    for size in ("768*2700", "960*1696", "1696*960", "1280*1280"):
        assert MODELS[model].size.check(_catalog.parse_size(size)) is None, size


@pytest.mark.parametrize("model", WAN_MODELS)
def test_wan_is_asynchronous_only(model: str):
    """Seed: "Wan supports only asynchronous calls." No Wan model is offered synchronously."""
    assert all(protocol.is_async for protocol in MODELS[model].protocols)


def test_the_emulator_refuses_wan_on_the_synchronous_endpoint():
    """Seed: "Wan supports only asynchronous calls." The emulator's E2 answers url error."""
    body = {
        "model": "wan2.6-t2i",
        "input": {"messages": [{"role": "user", "content": [{"text": "a fox"}]}]},
        "parameters": {},
    }
    with pytest.raises(ApiError, match="url error"):
        parse_generation(body, Protocol.MULTIMODAL)


@pytest.mark.parametrize(
    "model", ["qwen-image-plus", "qwen-image-max", "qwen-image-2.0-pro", "wan2.6-t2i"]
)
def test_async_qwen_is_only_plus_and_qwen_image(model: str):
    """Reference: "Only qwen-image-plus and qwen-image support asynchronous calls." """
    expected = model in {"qwen-image-plus", "qwen-image"} or model.startswith("wan")
    assert expected == (MODELS[model].async_protocol is not None)


@pytest.mark.parametrize("model", list(MODELS))
def test_n_is_sent_as_1_unless_asked_for(model: str):
    """Wan's service default is 4 billed images: the client always sends n, 1 unless asked."""
    images = ["https://example.com/a.png"] if MODELS[model].edit == "required" else []
    assert 1 == prepare("a fox", model=model, images=images).body["parameters"]["n"]


@pytest.mark.parametrize("model", list(MODELS))
def test_no_size_is_sent_when_none_is_given(model: str):
    """When the user gives no size, none is sent: the service applies its own default."""
    images = ["https://example.com/a.png"] if MODELS[model].edit == "required" else []
    assert "size" not in prepare("a fox", model=model, images=images).body["parameters"]


@pytest.mark.parametrize("model", ["wan2.2-t2i-flash", "qwen-image-plus", "wan2.5-t2i-preview"])
def test_negative_prompt_is_sent_in_input_on_the_prompt_endpoint(model: str):
    """Guide: "input.negative_prompt (optional)" — the client sends it in `input`."""
    body = prepare("a fox", model=model, negative_prompt="blur").body
    assert ("blur", None) == (
        body["input"]["negative_prompt"],
        body["parameters"].get("negative_prompt"),
    )


@pytest.mark.parametrize("where", ["input", "parameters"])
@pytest.mark.parametrize("model", ["wan2.2-t2i-flash", "wan2.6-t2i", "qwen-image-max"])
def test_the_emulator_accepts_negative_prompt_in_both_places(model: str, where: str):
    """The seed's curl puts it in `parameters`, its parameter list in `input`: both are read."""
    spec = MODELS[model]
    body = prepare("a fox", model=model).body
    body = {**body, "input": dict(body["input"]), "parameters": dict(body["parameters"])}
    body[where]["negative_prompt"] = "blur"
    assert "blur" == parse_generation(body, spec.preferred).negative_prompt


@pytest.mark.parametrize("model", list(MODELS))
def test_every_rule_records_its_source(model: str):
    """Endpoints, size rule, n, prompt limit and seed range each name the document they are from."""
    sources = MODELS[model].sources
    assert {"endpoints", "size", "n", "prompt_limit", "seed"} <= set(sources)
    assert all(text.strip() for text in sources.values())
