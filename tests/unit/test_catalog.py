"""The model catalog: size parsing, size rules, per-model validation, routing and limits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aioqwenimage import _catalog
from aioqwenimage._catalog import (
    MODELS,
    DefaultLimits,
    ModelSpec,
    Protocol,
    SizeRule,
    Violation,
    format_size,
    parse_size,
    resolve,
)

sides = st.integers(min_value=1, max_value=100_000)


# --- parse_size / format_size ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1664*928", (1664, 928)),
        ("1024x1024", (1024, 1024)),
        ("1024X768", (1024, 768)),
        ("800×600", (800, 600)),  # noqa: RUF001 - the multiplication sign is accepted
        (" 512 * 512 ", (512, 512)),
        ((1328, 1328), (1328, 1328)),
        ([928, 1664], (928, 1664)),
    ],
)
def test_parse_size_accepts_every_documented_form(text: object, expected: tuple[int, int]):
    """W*H, WxH (any case, the multiplication sign), and pairs all parse."""
    assert expected == parse_size(text)


@pytest.mark.parametrize(
    "value",
    ["", "1024", "1024*", "a*b", "1024*1024*3", "-5*10", (1, 2, 3), (1.5, 2), (True, 2), None, 7],
)
def test_parse_size_rejects_malformed_values(value: object):
    """Anything that is not a size raises ValueError."""
    with pytest.raises(ValueError, match="size"):
        parse_size(value)


@pytest.mark.parametrize("value", ["0*10", (0, 10), (10, -1)])
def test_parse_size_rejects_non_positive_sides(value: object):
    """A zero or negative side is refused."""
    with pytest.raises(ValueError, match="positive"):
        parse_size(value)


@settings(deadline=None)  # shared CI machines: no per-example deadline
@given(width=sides, height=sides)
def test_format_then_parse_round_trips(width: int, height: int):
    """format_size and parse_size are inverse on positive sizes."""
    assert (width, height) == parse_size(format_size((width, height)))


@settings(deadline=None)  # shared CI machines: no per-example deadline
@given(width=sides, height=sides, sep=st.sampled_from(["*", "x", "X", "\N{MULTIPLICATION SIGN}"]))
def test_every_separator_parses_alike(width: int, height: int, sep: str):
    """The separator never changes the parsed size."""
    assert parse_size(f"{width}*{height}") == parse_size(f"{width}{sep}{height}")


# --- size rules ------------------------------------------------------------------------------


def test_fixed_rule_accepts_only_its_sizes():
    """A fixed rule accepts exactly its listed sizes; its first size is the default."""
    rule = SizeRule.fixed((1664, 928), (1328, 1328))
    assert (None, (1664, 928)) == (rule.check((1328, 1328)), rule.default)
    assert "must be one of 1664*928, 1328*1328" == rule.check((1024, 1024))


@settings(deadline=None)  # shared CI machines: no per-example deadline
@given(width=sides, height=sides)
def test_total_pixel_rule_matches_its_bounds(width: int, height: int):
    """A total-pixel rule accepts a size exactly when W*H is within bounds and aspect."""
    rule = SizeRule.total_pixels(512 * 512, 2048 * 2048, default=(2048, 2048), max_aspect=4.0)
    inside = 512 * 512 <= width * height <= 2048 * 2048
    inside = inside and max(width, height) / min(width, height) <= 4.0
    assert inside == (rule.check((width, height)) is None)


@settings(deadline=None)  # shared CI machines: no per-example deadline
@given(width=st.integers(1, 3000), height=st.integers(1, 3000))
def test_per_side_rule_matches_its_bounds(width: int, height: int):
    """A per-side rule accepts a size exactly when each side is within bounds."""
    rule = SizeRule.per_side(512, 1440, default=(1024, 1024))
    assert (512 <= width <= 1440 and 512 <= height <= 1440) == (rule.check((width, height)) is None)


def test_rule_descriptions_name_the_bounds():
    """Each rule says in words what it accepts."""
    total = SizeRule.total_pixels(512 * 512, 2048 * 2048, default=(2048, 2048))
    odd = SizeRule.total_pixels(1000, 5000, default=(50, 50), max_aspect=4.0)
    assert "total pixels must be in [512*512, 2048*2048]" == total.describe()
    assert "total pixels must be in [1000, 5000] and the aspect ratio within 1:4 to 4:1" == (
        odd.describe()
    )
    assert "width and height must each be in [512, 2048]" == (
        SizeRule.per_side(512, 2048, default=(1024, 1024)).describe()
    )


def test_not_settable_rule_refuses_any_size():
    """A rule that is not settable refuses every size, and says so."""
    rule = SizeRule.not_settable(default=(1024, 1024))
    assert (False, "cannot be set for this model") == (rule.settable, rule.check((1024, 1024)))
    assert SizeRule.fixed((1, 1)).settable


# --- validate --------------------------------------------------------------------------------


def _problems(model: str, **request: object) -> list[str]:
    request.setdefault("prompt", "a red fox")
    return [v.parameter for v in MODELS[model].validate(**request)]  # type: ignore[arg-type]


def test_a_valid_request_has_no_violations():
    """A request within every rule validates clean."""
    assert [] == _problems(
        "wan2.2-t2i-flash",
        size=(1024, 1024),
        n=4,
        seed=42,
        negative_prompt="blurry",
        prompt_extend=True,
        watermark=False,
    )


@pytest.mark.parametrize(
    ("model", "request_", "parameter"),
    [
        ("qwen-image-plus", {"prompt": ""}, "prompt"),
        ("qwen-image-plus", {"prompt": 3}, "prompt"),
        ("qwen-image-plus", {"size": (1024, 1024)}, "size"),
        ("qwen-image-plus", {"n": 2}, "n"),
        ("wan2.2-t2i-flash", {"n": 5}, "n"),
        ("wan2.2-t2i-flash", {"n": True}, "n"),
        ("wan2.2-t2i-flash", {"seed": -1}, "seed"),
        ("wan2.2-t2i-flash", {"seed": 2**31}, "seed"),
        ("wan2.2-t2i-flash", {"negative_prompt": 5}, "negative_prompt"),
        ("wan2.2-t2i-flash", {"prompt_extend": "yes"}, "prompt_extend"),
        ("qwen-image-edit", {"prompt_extend": True, "images": 1}, "prompt_extend"),
        ("wan2.2-t2i-flash", {"watermark": 1}, "watermark"),
        ("qwen-image-edit-plus", {"images": 0}, "images"),
        ("qwen-image-edit-plus", {"images": 4}, "images"),
        ("qwen-image-2.0-pro", {"images": 4}, "images"),
        ("wan2.2-t2i-flash", {"images": 1}, "images"),
    ],
)
def test_each_rule_is_enforced(model: str, request_: dict[str, object], parameter: str):
    """Breaking one rule yields one violation naming that parameter."""
    assert [parameter] == _problems(model, **request_)


def test_violations_name_the_parameter_rule_and_model():
    """A violation reads as parameter, rule and model."""
    (violation,) = MODELS["qwen-image-plus"].validate(prompt="x", n=2)
    assert "n: must be 1, got 2 (model 'qwen-image-plus')" == str(violation)
    (violation,) = MODELS["wan2.2-t2i-flash"].validate(prompt="x", n=9)
    assert "must be an integer in [1, 4], got 9" == violation.rule
    assert Violation(parameter="n", rule=violation.rule, model="wan2.2-t2i-flash") == violation


def test_qwen_image_edit_cannot_take_a_size():
    """qwen-image-edit refuses any size (it is not settable)."""
    assert ["size"] == _problems("qwen-image-edit", size=(1024, 1024), images=1)


# --- the table, routing and limits -----------------------------------------------------------


def test_endpoint_paths_and_modes():
    """Each protocol maps to its documented path and mode."""
    assert ("/services/aigc/text2image/image-synthesis", True) == (
        Protocol.TEXT2IMAGE.path,
        Protocol.TEXT2IMAGE.is_async,
    )
    assert (_catalog.MULTIMODAL_PATH, False) == (
        Protocol.MULTIMODAL.path,
        Protocol.MULTIMODAL.is_async,
    )
    assert _catalog.IMAGE_GENERATION_PATH == Protocol.IMAGE_GENERATION.path


@pytest.mark.parametrize(
    ("model", "preferred", "async_protocol"),
    [
        ("qwen-image-plus", Protocol.TEXT2IMAGE, Protocol.TEXT2IMAGE),
        ("qwen-image-max", Protocol.MULTIMODAL, None),
        ("wan2.6-t2i", Protocol.IMAGE_GENERATION, Protocol.IMAGE_GENERATION),
        ("qwen-image-2.0-pro", Protocol.MULTIMODAL, None),
    ],
)
def test_preferred_protocol_is_async_where_offered(
    model: str, preferred: Protocol, async_protocol: Protocol | None
):
    """The client prefers the task endpoint when a model has one."""
    spec = MODELS[model]
    assert (preferred, async_protocol) == (spec.preferred, spec.async_protocol)


def test_every_model_is_consistent():
    """Every entry's defaults obey its own rules."""
    for name, spec in MODELS.items():
        low, high = spec.n_range
        assert (name, True) == (spec.name, low <= spec.n_default <= high)
        if spec.size.settable:
            assert (name, None) == (name, spec.size.check(spec.size.default))
        assert (name, True) == (name, 0 < spec.duration[0] <= spec.duration[1])
        assert spec.protocols


@pytest.mark.parametrize(
    ("model", "region", "expected"),
    [
        ("qwen-image-plus", "singapore", DefaultLimits(submits=2, period=1, in_flight=2)),
        ("qwen-image-max", "beijing", DefaultLimits(submits=2, period=60, in_flight=None)),
        ("wan2.6-t2i", "beijing", DefaultLimits(submits=1, period=1, in_flight=5)),
        ("wan2.6-t2i", "virginia", DefaultLimits(submits=5, period=1, in_flight=5)),
    ],
)
def test_default_limits_follow_the_documented_table(
    model: str, region: str, expected: DefaultLimits
):
    """Limits come from the region's row, else the fallback row."""
    assert expected == MODELS[model].default_limits(region)


def test_submits_per_second_spreads_the_window():
    """A per-minute limit is a fraction per second."""
    assert 2 / 60 == MODELS["qwen-image-max"].default_limits("singapore").submits_per_second


@pytest.mark.parametrize(
    ("name", "family_base", "known"),
    [
        ("qwen-image-plus", "qwen-image-plus", True),
        ("qwen-image-2.0-pro-2027-01-01", "qwen-image-2.0-pro", False),
        ("qwen-image-plus-2027-01-01", "qwen-image-plus-2026-01-09", False),
        ("qwen-image-edit-plus-2027-01-01", "qwen-image-edit-plus", False),
        ("wan2.6-t2i-2027", "wan2.6-t2i", False),
        ("wan2.7-t2i", "wan2.2-t2i-flash", False),
    ],
)
def test_resolve_routes_unknown_snapshots_by_family(name: str, family_base: str, known: bool):
    """Unknown names take their family's rules under their own name."""
    found = resolve(name)
    assert found is not None
    spec, is_known = found
    base = MODELS[family_base]
    assert (name, known, base.protocols, base.size) == (
        spec.name,
        is_known,
        spec.protocols,
        spec.size,
    )


def test_resolve_gives_up_on_strangers():
    """A name of no known family resolves to None."""
    assert None is resolve("dall-e-3")


def test_spec_is_a_frozen_record():
    """Specs are immutable values."""
    spec = MODELS["qwen-image-plus"]
    with pytest.raises(AttributeError):
        spec.name = "other"  # type: ignore[misc]
    assert isinstance(spec, ModelSpec)


# --- documented behaviour once missed by the catalog -------------------------------------------


def test_wan25_keeps_5_per_second_in_beijing():
    """§7: Beijing's merged wan2.5-t2i-preview cell reads 5 submissions/s and 5 in flight."""
    expected = DefaultLimits(submits=5, period=1, in_flight=5)
    assert expected == MODELS["wan2.5-t2i-preview"].default_limits("beijing")


def test_long_negative_prompts_are_not_a_violation():
    """§3: negative_prompt is at most 500 characters, and longer ones are truncated."""
    assert [] == _problems("wan2.2-t2i-flash", negative_prompt="x" * 501)
