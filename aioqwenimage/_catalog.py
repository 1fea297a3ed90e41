"""
The model catalog: what every image model accepts, where it is served, and its documented limits.

One table serves both sides: the client validates and routes requests with it before any I/O, and
the emulator in `aioqwenimage.testing` rejects with it what the real service rejects, so the two can
never disagree. Every fact names its source (`ModelSpec.sources`, `SizeRule.source`), and
``docs/models.md`` is generated from them. Where sources disagree, the catalog refuses only what
every documented source refuses and accepts what any of them accepts (issue 9); where they are
silent, the choice is marked ``[I]`` and explained.

This module is pure: no I/O, no aiohttp, no clock. The rule types live in ``_catalog_rules``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import attrs

from aioqwenimage._catalog_rules import (
    EDIT_IMAGES_MAX,
    IMAGE_GENERATION_PATH,
    MULTIMODAL_PATH,
    NEGATIVE_PROMPT_MAX,
    SEED_MAX,
    TEXT2IMAGE_PATH,
    DefaultLimits,
    ModelSpec,
    Protocol,
    SizeRule,
    Violation,
    format_size,
    parse_size,
)

__all__ = [
    "EDIT_IMAGES_MAX",
    "IMAGE_GENERATION_PATH",
    "MODELS",
    "MULTIMODAL_PATH",
    "NEGATIVE_PROMPT_MAX",
    "SEED_MAX",
    "SOURCES",
    "TEXT2IMAGE_PATH",
    "DefaultLimits",
    "ModelSpec",
    "Protocol",
    "SizeRule",
    "Violation",
    "format_size",
    "parse_size",
    "resolve",
]

# --- the sources ---------------------------------------------------------------------------------
# The seeds are the documents the project was built from (issue 9: they win on conflicts unless a
# newer official source is cited); the other tags are the official pages summarised, with their own
# tags, in the project's ``dashscope-api.md``.

GUIDE: Final = "seed text-to-image-guide.txt (Text-to-image guide, Jan 12 2026)"
QWEN_REF: Final = "seed qwen-image-api-reference.txt (Qwen-Image API reference)"
WAN_REF: Final = "Wan text-to-image V2 API reference (dashscope-api.md §3, S-WAN)"
EDIT_REF: Final = "Qwen-Image edit API reference (dashscope-api.md §3, S-QE)"
QWEN_PARAMS: Final = "Qwen-Image API reference, parameter table (dashscope-api.md §3, S-QI)"
COMMON: Final = "common parameters of S-QI, S-WAN, S-QE (dashscope-api.md §3)"
RATE_LIMITS: Final = "Rate limits page, 2026-02-24 (dashscope-api.md §7, S-RL)"

SOURCES: Final[Mapping[str, str]] = {
    "guide": GUIDE,
    "qwen-reference": QWEN_REF,
    "wan-reference": WAN_REF,
    "edit-reference": EDIT_REF,
    "qwen-parameters": QWEN_PARAMS,
    "common": COMMON,
    "rate-limits": RATE_LIMITS,
}
"""Every document the catalog cites."""

# --- the table -----------------------------------------------------------------------------------

_QWEN_FIXED: Final = SizeRule.fixed(
    (1664, 928),
    (1472, 1104),
    (1328, 1328),
    (1104, 1472),
    (928, 1664),
    source=f"{GUIDE}: Qwen-Image supports only five fixed resolutions, 1664*928 the default",
)
_QWEN2_SIZE: Final = SizeRule.total_pixels(
    512 * 512,
    2048 * 2048,
    default=(2048, 2048),
    source=f"{QWEN_REF}: total pixels between 512*512 and 2048*2048, default 2048*2048",
)
_EDIT_SIZE: Final = SizeRule.per_side(
    512, 2048, default=(1024, 1024), source=f"{EDIT_REF}: width and height each in [512, 2048]"
)
_WAN_V2_RULE: Final = SizeRule.per_side(
    512,
    1440,
    default=(1024, 1024),
    max_pixels=1440 * 1440,
    source=f"{GUIDE}: Wan V2 (v2.0 and later), width and height from 512 to 1440, "
    "total at most 1440*1440, default 1024*1024",
)
# The Wan reference gives wan2.5/wan2.6 a total-pixel rule (which admits 768*2700) and recommends
# sizes its own rule refuses (960*1696 is below 1280*1280): each is a documented acceptance. Its
# older copy's lower bound of 768*768 is superseded by the current one.
_WAN25_SIZE: Final = SizeRule.any_of(
    _WAN_V2_RULE,
    SizeRule.total_pixels(
        1280 * 1280,
        1440 * 1440,
        default=(1280, 1280),
        max_aspect=4.0,
        source=f"{WAN_REF}: total pixels in [1280*1280, 1440*1440], aspect 1:4 to 4:1",
    ),
    SizeRule.fixed(
        (1280, 1280),
        (1104, 1472),
        (1472, 1104),
        (960, 1696),
        (1696, 960),
        source=f"{WAN_REF}: recommended sizes",
    ),
    # [I] The service default: the model's own reference (1280*1280) over the guide's Wan V2
    # section (1024*1024). The client sends no size unless asked, so this only shapes the emulator.
    default=(1280, 1280),
)

_PER_SECOND_2: Final = {"*": DefaultLimits(submits=2, period=1, in_flight=None)}
_PER_MINUTE_2: Final = {"*": DefaultLimits(submits=2, period=60, in_flight=None)}
_QWEN_ASYNC: Final = {"*": DefaultLimits(submits=2, period=1, in_flight=2)}
_WAN_OLD: Final = {"*": DefaultLimits(submits=2, period=1, in_flight=2)}
_WAN25: Final = {"*": DefaultLimits(submits=5, period=1, in_flight=5)}
_WAN26: Final = {
    **_WAN25,
    # Beijing's table lists wan2.6-t2i at 1 submission/s (wan2.5's merged cell reads 5/5).
    "beijing": DefaultLimits(submits=1, period=1, in_flight=5),
}

_E1: Final = (Protocol.TEXT2IMAGE,)
_E2: Final = (Protocol.MULTIMODAL,)

_QWEN_SYNC_ONLY: Final = (
    f"{QWEN_REF}: 'Qwen-Image supports synchronous calls'; only qwen-image-plus and qwen-image "
    "support asynchronous calls"
)
_WAN_ASYNC_ONLY: Final = f"{GUIDE}: 'Wan supports only asynchronous calls' (text2image endpoint)"
_SEED_RANGE: Final = f"{COMMON}: seed in [0, 2147483647]"
_QWEN_PROMPT: Final = f"{QWEN_PARAMS}: 800 tokens, longer is truncated"
_EDIT_PROMPT: Final = f"{EDIT_REF}: 800 tokens, longer is truncated"
_WAN_N: Final = f"{WAN_REF}: 1 to 4, default 4 (the client sends 1 unless asked)"


def _sources(
    endpoints: str, size: str, n: str, prompt_limit: str, limits: str = RATE_LIMITS
) -> dict[str, str]:
    return {
        "endpoints": endpoints,
        "size": size,
        "n": n,
        "prompt_limit": prompt_limit,
        "seed": _SEED_RANGE,
        "limits": limits,
    }


def _family(
    family: str,
    names: tuple[str, ...],
    **fields: object,
) -> dict[str, ModelSpec]:
    return {name: ModelSpec(name=name, family=family, **fields) for name in names}  # type: ignore[arg-type]


MODELS: Final[Mapping[str, ModelSpec]] = {
    **_family(
        "qwen-image-2.0",
        (
            "qwen-image-2.0-pro",
            "qwen-image-2.0-pro-2026-06-22",
            "qwen-image-2.0-pro-2026-04-22",
            "qwen-image-2.0-pro-2026-03-03",
            "qwen-image-2.0",
            "qwen-image-2.0-2026-03-03",
        ),
        protocols=_E2,
        size=_QWEN2_SIZE,
        n_range=(1, 6),
        n_default=1,
        prompt_limit=1300,
        edit="optional",
        # [I] §7 does not list the 2.0 series; the doc's own suggestion is to treat it like max.
        limits=_PER_MINUTE_2,
        duration=(12.0, 25.0),
        sources=_sources(
            f"{QWEN_REF}: the 2.0 series 'supports synchronous calls only'",
            _QWEN2_SIZE.source,
            f"{QWEN_REF}: number of images 1-6; default 1 ({QWEN_PARAMS})",
            f"{QWEN_PARAMS}: 1300 tokens, longer is truncated",
            limits=f"[I] not in {RATE_LIMITS}; treated like qwen-image-max",
        ),
    ),
    **_family(
        "qwen-image-max",
        ("qwen-image-max", "qwen-image-max-2025-12-30"),
        protocols=_E2,
        size=_QWEN_FIXED,
        n_range=(1, 1),
        n_default=1,
        prompt_limit=800,
        limits=_PER_MINUTE_2,
        duration=(12.0, 20.0),
        sources=_sources(
            _QWEN_SYNC_ONLY,
            _QWEN_FIXED.source,
            f"{QWEN_REF}: number of images fixed at 1",
            _QWEN_PROMPT,
        ),
    ),
    **_family(
        "qwen-image",
        ("qwen-image-plus", "qwen-image"),
        protocols=(Protocol.TEXT2IMAGE, Protocol.MULTIMODAL),
        size=_QWEN_FIXED,
        n_range=(1, 1),
        n_default=1,
        prompt_limit=800,
        limits=_QWEN_ASYNC,
        duration=(18.0, 30.0),
        sources=_sources(
            f"{QWEN_REF}: synchronous, and 'Only qwen-image-plus and qwen-image support "
            "asynchronous calls'",
            _QWEN_FIXED.source,
            f"{QWEN_REF}: number of images fixed at 1",
            f"{QWEN_PARAMS}: 800 characters on the task endpoint, longer is truncated",
        ),
    ),
    **_family(
        "qwen-image",
        ("qwen-image-plus-2026-01-09",),
        protocols=_E2,
        size=_QWEN_FIXED,
        n_range=(1, 1),
        n_default=1,
        prompt_limit=800,
        limits=_PER_SECOND_2,
        duration=(6.0, 12.0),
        sources=_sources(
            _QWEN_SYNC_ONLY,
            _QWEN_FIXED.source,
            f"{QWEN_REF}: number of images fixed at 1",
            _QWEN_PROMPT,
        ),
    ),
    **_family(
        "qwen-image-edit",
        ("qwen-image-edit-max", "qwen-image-edit-max-2026-01-16"),
        protocols=_E2,
        size=_EDIT_SIZE,
        n_range=(1, 6),
        n_default=1,
        prompt_limit=800,
        edit="required",
        limits=_PER_MINUTE_2,
        duration=(12.0, 25.0),
        sources=_sources(
            f"{EDIT_REF}: synchronous only",
            _EDIT_SIZE.source,
            f"{EDIT_REF}: 1 to 6, default 1",
            _EDIT_PROMPT,
        ),
    ),
    **_family(
        "qwen-image-edit",
        (
            "qwen-image-edit-plus",
            "qwen-image-edit-plus-2025-12-15",
            "qwen-image-edit-plus-2025-10-30",
        ),
        protocols=_E2,
        size=_EDIT_SIZE,
        n_range=(1, 6),
        n_default=1,
        prompt_limit=800,
        edit="required",
        limits=_PER_SECOND_2,
        duration=(8.0, 20.0),
        sources=_sources(
            f"{EDIT_REF}: synchronous only",
            _EDIT_SIZE.source,
            f"{EDIT_REF}: 1 to 6, default 1",
            _EDIT_PROMPT,
        ),
    ),
    **_family(
        "qwen-image-edit",
        ("qwen-image-edit",),
        protocols=_E2,
        size=SizeRule.not_settable(
            default=(1024, 1024), source=f"{EDIT_REF}: size cannot be set for qwen-image-edit"
        ),
        n_range=(1, 1),
        n_default=1,
        prompt_limit=800,
        prompt_extend=False,
        edit="required",
        limits=_PER_SECOND_2,
        duration=(8.0, 20.0),
        sources=_sources(
            f"{EDIT_REF}: synchronous only",
            f"{EDIT_REF}: size cannot be set for qwen-image-edit",
            f"{EDIT_REF}: fixed at 1",
            _EDIT_PROMPT,
        ),
    ),
    **_family(
        "wan2.6",
        ("wan2.6-t2i",),
        # The guide: "Wan supports only asynchronous calls". dashscope-api.md's summary of the Wan
        # reference also lists the synchronous endpoint, but no newer official copy saying so is
        # at hand, so the seed is followed: tasks on the image-generation endpoint only.
        protocols=(Protocol.IMAGE_GENERATION,),
        size=_WAN25_SIZE,
        n_range=(1, 4),
        n_default=4,
        prompt_limit=2100,
        limits=_WAN26,
        duration=(20.0, 35.0),
        sources=_sources(
            f"{_WAN_ASYNC_ONLY}; {WAN_REF}: wan2.6 tasks on the image-generation endpoint",
            " | ".join(_WAN25_SIZE.sources),
            _WAN_N,
            f"{WAN_REF}: 2100 characters, longer is truncated",
        ),
    ),
    **_family(
        "wan",
        ("wan2.5-t2i-preview",),
        protocols=_E1,
        size=_WAN25_SIZE,
        n_range=(1, 4),
        n_default=4,
        prompt_limit=2000,
        limits=_WAN25,
        duration=(8.0, 15.0),
        sources=_sources(
            _WAN_ASYNC_ONLY,
            " | ".join(_WAN25_SIZE.sources),
            _WAN_N,
            f"{WAN_REF}: 2000 characters, longer is truncated",
        ),
    ),
    **_family(
        "wan",
        (
            "wan2.2-t2i-flash",
            "wan2.2-t2i-plus",
            "wanx2.1-t2i-turbo",
            "wanx2.1-t2i-plus",
            # Singapore spells the 2.1 models without the x (§7).
            "wan2.1-t2i-turbo",
            "wan2.1-t2i-plus",
        ),
        protocols=_E1,
        size=_WAN_V2_RULE,
        n_range=(1, 4),
        n_default=4,
        prompt_limit=500,
        limits=_WAN_OLD,
        duration=(5.0, 15.0),
        sources=_sources(
            _WAN_ASYNC_ONLY,
            _WAN_V2_RULE.source,
            _WAN_N,
            f"{WAN_REF}: 500 characters (2026 copy), longer is truncated",
        ),
    ),
    **_family(
        "wan",
        ("wanx2.0-t2i-turbo",),
        protocols=_E1,
        size=_WAN_V2_RULE,
        n_range=(1, 4),
        n_default=4,
        prompt_limit=800,
        limits=_WAN_OLD,
        duration=(5.0, 15.0),
        sources=_sources(
            _WAN_ASYNC_ONLY,
            _WAN_V2_RULE.source,
            _WAN_N,
            f"{WAN_REF}: 800 characters, longer is truncated",
        ),
    ),
}

# Unknown names (new dated snapshots appear monthly) are routed by their longest known prefix;
# order matters only between prefixes of each other, so longest first.
_FAMILY_PREFIXES: Final = tuple(
    sorted(
        (
            ("qwen-image-2.0-pro", "qwen-image-2.0-pro"),
            ("qwen-image-2.0", "qwen-image-2.0"),
            ("qwen-image-max", "qwen-image-max"),
            ("qwen-image-edit-max", "qwen-image-edit-max"),
            ("qwen-image-edit-plus", "qwen-image-edit-plus"),
            ("qwen-image-edit", "qwen-image-edit"),
            # A dated qwen-image-plus snapshot is sync-only, like qwen-image-plus-2026-01-09.
            ("qwen-image-plus-", "qwen-image-plus-2026-01-09"),
            ("qwen-image", "qwen-image-plus"),
            ("wan2.6-", "wan2.6-t2i"),
            ("wan2.5-", "wan2.5-t2i-preview"),
            ("wan", "wan2.2-t2i-flash"),
        ),
        key=lambda pair: -len(pair[0]),
    )
)


def resolve(model: str) -> tuple[ModelSpec, bool] | None:
    """
    The spec for `model`, and whether the catalog knows it by name.

    A name the catalog does not know takes the rules of its family's base model (by the longest
    known prefix), under its own name. ``None`` when not even the family is recognised.
    """
    spec = MODELS.get(model)
    if spec is not None:
        return spec, True
    for prefix, base in _FAMILY_PREFIXES:
        if model.startswith(prefix):
            return attrs.evolve(MODELS[base], name=model), False
    return None
