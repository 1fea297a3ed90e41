"""
The rules a model's requests obey: endpoints, output sizes, per-parameter checks, limits.

`aioqwenimage._catalog` holds the table of models built from these pieces, each fact with the
document it comes from. Split from it so that the table reads as a table and the rules as code.

This module is pure: no I/O, no aiohttp, no clock.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import Final

import attrs

__all__ = [
    "EDIT_IMAGES_MAX",
    "IMAGE_GENERATION_PATH",
    "MULTIMODAL_PATH",
    "NEGATIVE_PROMPT_MAX",
    "SEED_MAX",
    "TEXT2IMAGE_PATH",
    "DefaultLimits",
    "ModelSpec",
    "Protocol",
    "SizeRule",
    "Violation",
    "format_size",
    "parse_size",
]

TEXT2IMAGE_PATH: Final = "/services/aigc/text2image/image-synthesis"  # E1
MULTIMODAL_PATH: Final = "/services/aigc/multimodal-generation/generation"  # E2
IMAGE_GENERATION_PATH: Final = "/services/aigc/image-generation/generation"  # E3

SEED_MAX: Final = 2_147_483_647
NEGATIVE_PROMPT_MAX: Final = 500
EDIT_IMAGES_MAX: Final = 3


class Protocol(enum.Enum):
    """How a model is called: which endpoint, which body shape, sync or async."""

    TEXT2IMAGE = "text2image"
    """E1: async task, ``input.prompt`` string body."""
    MULTIMODAL = "multimodal"
    """E2: synchronous, ``input.messages`` body; the response carries the images."""
    IMAGE_GENERATION = "image-generation"
    """E3: async task, ``input.messages`` body (wan2.6)."""

    @property
    def path(self) -> str:
        """The endpoint path under ``/api/v1``."""
        return _PATHS[self]

    @property
    def is_async(self) -> bool:
        """Whether the endpoint creates a task (and needs ``X-DashScope-Async: enable``)."""
        return self is not Protocol.MULTIMODAL


_PATHS: Final = {
    Protocol.TEXT2IMAGE: TEXT2IMAGE_PATH,
    Protocol.MULTIMODAL: MULTIMODAL_PATH,
    Protocol.IMAGE_GENERATION: IMAGE_GENERATION_PATH,
}


@attrs.frozen(kw_only=True)
class Violation:
    """One broken rule: which parameter, what the rule is, for which model."""

    parameter: str
    rule: str
    model: str

    def __str__(self) -> str:
        return f"{self.parameter}: {self.rule} (model {self.model!r})"


# The multiplication sign (U+00D7) on purpose: sizes pasted from documents use it.
_SIZE_RE: Final = re.compile(r"^\s*(\d+)\s*[*xX×]\s*(\d+)\s*$")  # noqa: RUF001


def parse_size(value: object) -> tuple[int, int]:
    """
    Read a size given as ``"W*H"``, ``"WxH"`` or ``(w, h)``.

    Raises:
        ValueError: The value is none of those forms, or a side is not a positive integer.
    """
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        if match is None:
            msg = f"size must look like 'W*H' or 'WxH', got {value!r}"
            raise ValueError(msg)
        width, height = int(match[1]), int(match[2])
    elif (
        isinstance(value, tuple | list)
        and len(value) == 2  # noqa: PLR2004 - a pair
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        width, height = value
    else:
        msg = f"size must be 'W*H', 'WxH' or a (width, height) pair, got {value!r}"
        raise ValueError(msg)
    if width <= 0 or height <= 0:
        msg = f"size sides must be positive, got {width}*{height}"
        raise ValueError(msg)
    return width, height


def format_size(size: tuple[int, int]) -> str:
    """The wire form of a size: ``"W*H"``."""
    return f"{size[0]}*{size[1]}"


class _SizeKind(enum.Enum):
    FIXED = "fixed"
    TOTAL_PIXELS = "total-pixels"
    PER_SIDE = "per-side"
    NOT_SETTABLE = "not-settable"
    ANY_OF = "any-of"


@attrs.frozen(kw_only=True)
class SizeRule:
    """
    Which output sizes a model accepts.

    Build one with the class methods; `check` says what is wrong with a size, or ``None``.
    Where documents disagree, `any_of` accepts what any of their rules accepts, and each rule
    keeps the `source` it was read from.
    """

    kind: _SizeKind
    default: tuple[int, int]
    choices: tuple[tuple[int, int], ...] = ()
    min_pixels: int = 0
    max_pixels: int = 0
    min_side: int = 0
    max_side: int = 0
    max_aspect: float = 0.0
    alternatives: tuple[SizeRule, ...] = ()
    source: str = ""

    @classmethod
    def fixed(cls, *choices: tuple[int, int], source: str = "") -> SizeRule:
        """Only these sizes; the first is the default."""
        return cls(kind=_SizeKind.FIXED, default=choices[0], choices=choices, source=source)

    @classmethod
    def any_of(cls, *rules: SizeRule, default: tuple[int, int]) -> SizeRule:
        """A size any of `rules` accepts: documents that disagree each widen what is accepted."""
        return cls(kind=_SizeKind.ANY_OF, default=default, alternatives=rules)

    @property
    def sources(self) -> tuple[str, ...]:
        """The documents the rule was read from, one per alternative."""
        if self.kind is _SizeKind.ANY_OF:
            return tuple(s for rule in self.alternatives for s in rule.sources)
        return (self.source,) if self.source else ()

    @classmethod
    def total_pixels(
        cls,
        low: int,
        high: int,
        *,
        default: tuple[int, int],
        max_aspect: float = 0.0,
        source: str = "",
    ) -> SizeRule:
        """Any ``W*H`` whose pixel count is in [low, high] (and aspect within 1:max..max:1)."""
        return cls(
            kind=_SizeKind.TOTAL_PIXELS,
            default=default,
            min_pixels=low,
            max_pixels=high,
            max_aspect=max_aspect,
            source=source,
        )

    @classmethod
    def per_side(
        cls,
        low: int,
        high: int,
        *,
        default: tuple[int, int],
        max_pixels: int = 0,
        source: str = "",
    ) -> SizeRule:
        """Width and height each in [low, high] (and, if given, at most `max_pixels` in all)."""
        return cls(
            kind=_SizeKind.PER_SIDE,
            default=default,
            min_side=low,
            max_side=high,
            max_pixels=max_pixels,
            source=source,
        )

    @classmethod
    def not_settable(cls, *, default: tuple[int, int], source: str = "") -> SizeRule:
        """The model picks the size; sending one is an error."""
        return cls(kind=_SizeKind.NOT_SETTABLE, default=default, source=source)

    @property
    def settable(self) -> bool:
        """Whether a request may name a size at all."""
        return self.kind is not _SizeKind.NOT_SETTABLE

    def describe(self) -> str:
        """The rule in words, for error messages."""
        if self.kind is _SizeKind.FIXED:
            return "must be one of " + ", ".join(format_size(c) for c in self.choices)
        if self.kind is _SizeKind.TOTAL_PIXELS:
            text = (
                f"total pixels must be in [{_square(self.min_pixels)}, {_square(self.max_pixels)}]"
            )
            if self.max_aspect:
                text += (
                    f" and the aspect ratio within 1:{self.max_aspect:g} to {self.max_aspect:g}:1"
                )
            return text
        if self.kind is _SizeKind.PER_SIDE:
            text = f"width and height must each be in [{self.min_side}, {self.max_side}]"
            if self.max_pixels and self.max_pixels < self.max_side**2:
                text += f" with total pixels at most {_square(self.max_pixels)}"
            return text
        if self.kind is _SizeKind.ANY_OF:
            return "; or ".join(rule.describe() for rule in self.alternatives)
        return "cannot be set for this model"

    def check(self, size: tuple[int, int]) -> str | None:
        """``None`` when the size is accepted, else the rule it breaks."""
        width, height = size
        if self.kind is _SizeKind.FIXED:
            ok = size in self.choices
        elif self.kind is _SizeKind.TOTAL_PIXELS:
            ok = self.min_pixels <= width * height <= self.max_pixels
            if ok and self.max_aspect:
                ok = max(width, height) / min(width, height) <= self.max_aspect
        elif self.kind is _SizeKind.PER_SIDE:
            ok = all(self.min_side <= side <= self.max_side for side in size)
            if ok and self.max_pixels:
                ok = width * height <= self.max_pixels
        elif self.kind is _SizeKind.ANY_OF:
            ok = any(rule.check(size) is None for rule in self.alternatives)
        else:
            ok = False
        return None if ok else self.describe()


def _square(pixels: int) -> str:
    root = int(pixels**0.5)
    return f"{root}*{root}" if root * root == pixels else str(pixels)


@attrs.frozen(kw_only=True)
class DefaultLimits:
    """
    A model's documented per-account limits (``dashscope-api.md`` §7).

    Attributes:
        submits: How many submissions are allowed per `period` seconds.
        period: The window of `submits`, in seconds (1 or 60).
        in_flight: Concurrent async tasks allowed, or ``None`` where unlimited (sync calls).
    """

    submits: int
    period: float
    in_flight: int | None

    @property
    def submits_per_second(self) -> float:
        """The submission rate as a per-second figure."""
        return self.submits / self.period


@attrs.frozen(kw_only=True)
class ModelSpec:
    """
    Everything the client and the emulator need to know about one model.

    Attributes:
        name: The model name as sent on the wire.
        family: A coarse grouping used for routing unknown snapshots and for emulated durations.
        protocols: The endpoints serving the model; the first is the one the client prefers.
        size: The accepted output sizes.
        n_range: Allowed images per request, inclusive.
        n_default: Images per request when ``n`` is not given.
        prompt_limit: The documented prompt length; longer prompts are truncated server-side.
        prompt_extend: Whether the model takes ``prompt_extend``.
        edit: ``"required"`` for edit models, ``"optional"`` for models that also edit, else
            ``"no"``.
        limits: Documented limits per region name; ``"*"`` is the fallback.
        duration: The typical (low, high) seconds from submission to the end of a task.
        sources: The document each fact comes from: ``endpoints``, ``size``, ``n``,
            ``prompt_limit``, ``seed`` (and ``limits``).
    """

    name: str
    family: str
    protocols: tuple[Protocol, ...]
    size: SizeRule
    n_range: tuple[int, int]
    n_default: int
    prompt_limit: int
    prompt_extend: bool = True
    edit: str = "no"
    limits: Mapping[str, DefaultLimits]
    duration: tuple[float, float]
    sources: Mapping[str, str] = attrs.field(factory=dict)

    @property
    def async_protocol(self) -> Protocol | None:
        """The task-creating endpoint, when the model has one."""
        return next((p for p in self.protocols if p.is_async), None)

    @property
    def preferred(self) -> Protocol:
        """The endpoint the client uses: async where offered (it survives restarts), else sync."""
        return self.async_protocol or self.protocols[0]

    def default_limits(self, region: str) -> DefaultLimits:
        """The documented limits in `region`, or the fallback row."""
        return self.limits.get(region) or self.limits["*"]

    def validate(
        self,
        *,
        prompt: object,
        size: tuple[int, int] | None = None,
        n: object = None,
        seed: object = None,
        negative_prompt: object = None,
        prompt_extend: object = None,
        watermark: object = None,
        images: int = 0,
    ) -> list[Violation]:
        """
        Every rule of this model that the request breaks (empty when it is valid).

        Prompts and negative prompts longer than the documented limits are not a violation: the
        service truncates them.
        """
        found: list[Violation] = []

        def add(parameter: str, rule: str) -> None:
            found.append(Violation(parameter=parameter, rule=rule, model=self.name))

        if not isinstance(prompt, str) or not prompt.strip():
            add("prompt", "must be a non-empty string")
        if size is not None:
            problem = self.size.check(size)
            if problem is not None:
                add("size", f"{format_size(size)} is not accepted: {problem}")
        if n is not None:
            low, high = self.n_range
            if not _is_int(n) or not low <= n <= high:  # type: ignore[operator]
                rule = f"must be {low}" if low == high else f"must be an integer in [{low}, {high}]"
                add("n", f"{rule}, got {n!r}")
        if seed is not None and (not _is_int(seed) or not 0 <= seed <= SEED_MAX):  # type: ignore[operator]
            add("seed", f"must be an integer in [0, {SEED_MAX}], got {seed!r}")
        # Like prompts, a negative prompt over NEGATIVE_PROMPT_MAX is truncated by the service.
        if negative_prompt is not None and not isinstance(negative_prompt, str):
            add("negative_prompt", "must be a string")
        if prompt_extend is not None:
            if not self.prompt_extend:
                add("prompt_extend", "is not supported by this model")
            elif not isinstance(prompt_extend, bool):
                add("prompt_extend", "must be a boolean")
        if watermark is not None and not isinstance(watermark, bool):
            add("watermark", "must be a boolean")
        if self.edit == "required" and not 1 <= images <= EDIT_IMAGES_MAX:
            add("images", f"an edit model needs 1 to {EDIT_IMAGES_MAX} input images, got {images}")
        elif self.edit == "optional" and images > EDIT_IMAGES_MAX:
            add("images", f"at most {EDIT_IMAGES_MAX} input images, got {images}")
        elif self.edit == "no" and images:
            add("images", "this model does not take input images")
        return found


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
