"""
The emulator's limit settings: frozen values that default to the catalog's documented limits.

`EmulatorLimits` holds account-wide settings and per-model `ModelQuota` overrides; a model not named
keeps what ``ModelSpec.default_limits(region)`` documents (§7). `resolve_quota` turns both into the
numbers a lane enforces, so no copy of the limits table lives here.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, Final, Literal

import attrs

from aioqwenimage.testing._wire import public

if TYPE_CHECKING:
    from collections.abc import Mapping

    from aioqwenimage._catalog import ModelSpec

__all__ = ["INHERIT", "EmulatorLimits", "LaneQuota", "ModelQuota", "OverCap", "resolve_quota"]

OverCap = Literal["queue", "reject"]
"""What a create beyond the in-flight cap gets: kept PENDING in FIFO order, or a 429."""

_OVER_CAP: Final = ("queue", "reject")
REGIONS: Final = {"singapore": "ap-southeast-1", "beijing": "cn-beijing", "virginia": "us-east-1"}


class _Inherit(enum.Enum):
    TOKEN = "inherit"  # noqa: S105 - a sentinel, not a secret

    def __repr__(self) -> str:
        return "INHERIT"


INHERIT: Final = _Inherit.TOKEN
"""A `ModelQuota` field left at this value keeps the catalog's (or the account's) setting."""


def _check_over_cap(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not INHERIT and value not in _OVER_CAP:
        msg = f"{attribute.name} must be 'queue' or 'reject', got {value!r}"
        raise ValueError(msg)


def _check_positive_or_none(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is INHERIT or value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        msg = f"{attribute.name} must be a positive number or None, got {value!r}"
        raise ValueError(msg)


@public
@attrs.frozen(kw_only=True)
class ModelQuota:
    """
    One model's limits, overriding the documented ones field by field.

    Attributes:
        submits: Submissions (async creates and sync calls together) per `period`; ``None``
            admits every submission.
        period: The submission window in simulated seconds (1 or 60 in the docs).
        in_flight: Async tasks PENDING or RUNNING at once; ``None`` for no cap.
        over_cap: ``"queue"`` or ``"reject"`` for creates beyond `in_flight`.
    """

    submits: int | _Inherit | None = attrs.field(default=INHERIT, validator=_check_positive_or_none)
    period: float | _Inherit = attrs.field(default=INHERIT, validator=_check_positive_or_none)
    in_flight: int | _Inherit | None = attrs.field(
        default=INHERIT, validator=_check_positive_or_none
    )
    over_cap: OverCap | _Inherit = attrs.field(default=INHERIT, validator=_check_over_cap)


@public
@attrs.frozen(kw_only=True)
class EmulatorLimits:
    """
    Account-wide limits: the documented defaults unless overridden.

    Pass ``limits=None`` to `FakeDashScope` to switch every limit off.

    Attributes:
        region: Whose documented limits apply (``"singapore"``, ``"beijing"``, ``"virginia"``);
            also the region reported by the task list.
        over_cap: What creates beyond a model's in-flight cap get, unless a quota says otherwise.
        task_queries_per_second: The shared limit of task query, list and cancel calls (20
            documented); ``None`` for none.
        models: Per-model overrides by model name.
    """

    region: str = attrs.field(default="singapore")
    over_cap: OverCap = attrs.field(default="queue", validator=_check_over_cap)
    task_queries_per_second: int | None = attrs.field(default=20, validator=_check_positive_or_none)
    models: Mapping[str, ModelQuota] = attrs.field(factory=dict)

    @region.validator
    def _check_region(self, _attribute: attrs.Attribute[str], value: str) -> None:
        if value not in REGIONS:
            msg = f"region must be one of {', '.join(REGIONS)}, got {value!r}"
            raise ValueError(msg)


@attrs.frozen(kw_only=True)
class LaneQuota:
    """The limits one model's lane enforces, every field resolved."""

    submits: int | None
    period: float
    in_flight: int | None
    over_cap: OverCap


UNLIMITED: Final = LaneQuota(submits=None, period=1.0, in_flight=None, over_cap="queue")


def resolve_quota(spec: ModelSpec, limits: EmulatorLimits | None) -> LaneQuota:
    """The effective limits for `spec`'s model: overrides first, then the catalog."""
    if limits is None:
        return UNLIMITED
    documented = spec.default_limits(limits.region)
    quota = limits.models.get(spec.name, ModelQuota())
    return LaneQuota(
        submits=documented.submits if quota.submits is INHERIT else quota.submits,
        period=documented.period if quota.period is INHERIT else quota.period,
        in_flight=documented.in_flight if quota.in_flight is INHERIT else quota.in_flight,
        over_cap=limits.over_cap if quota.over_cap is INHERIT else quota.over_cap,
    )


def build_limits(
    limits: EmulatorLimits | None = None,
    *,
    over_cap: OverCap | None = None,
    no_limits: bool = False,
) -> EmulatorLimits | None:
    """The limits the CLI flags and the pytest marker's shortcuts describe."""
    if no_limits:
        return None
    base = limits if limits is not None else EmulatorLimits()
    if over_cap is not None:
        base = attrs.evolve(base, over_cap=over_cap)
    return base
