"""
Fault injection: what goes wrong, for which requests, how often.

A `Fault` names a kind, the endpoints it applies to, and either a probability (drawn from the
emulator's seeded RNG, so a run is reproducible) or a count of the next matching requests. Each
request draws once, after it has been authenticated and parsed and before it changes any state, so a
"before" fault never leaves a trace and an "after" fault always does.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import json
from collections import Counter
from typing import TYPE_CHECKING, Any, Final

import attrs
from aiohttp import web

from aioqwenimage.testing._wire import Endpoint, public

if TYPE_CHECKING:
    import random
    from collections.abc import Iterable, Iterator, Mapping

__all__ = [
    "WILD_RETRY_AFTERS",
    "Fault",
    "FaultKind",
    "Faults",
    "Fired",
    "hostile_answer",
    "is_streamed",
    "stream_answer",
]


@public
class FaultKind(enum.Enum):
    """What an injected fault does."""

    THROTTLE = "throttle"
    """429 ``Throttling.RateQuota`` with ``Retry-After``; nothing happens."""
    WILD_RETRY_AFTER = "wild_retry_after"
    """429 ``Throttling.RateQuota`` whose ``Retry-After`` is `Fault.retry_after_text`, or else
    one of ``inf``, ``1e9``, ``nan``, ``-5`` and an HTTP date drawn at random: a wait no client
    should take literally; nothing happens."""
    INTERNAL_ERROR = "internal_error"
    """500 ``InternalError``; nothing happens."""
    UNAVAILABLE = "unavailable"
    """503 ``ModelUnavailable``; nothing happens."""
    DROP_BEFORE = "drop_before"
    """The connection is closed without an answer; nothing happens."""
    DROP_AFTER = "drop_after"
    """The request takes effect (a task is created, a cancel done), then the connection is closed
    without an answer: the ambiguous case a client must not blindly retry."""
    DELAY = "delay"
    """The answer comes `Fault.delay` simulated seconds late."""
    MALFORMED = "malformed"
    """The request takes effect, and the answer is a 200 whose JSON body is cut short."""
    NOT_JSON = "not_json"
    """The request takes effect, and the answer is a 200 HTML page (a gateway's, say)."""
    OVERSIZED = "oversized"
    """The request takes effect, and the answer is a 200 whose JSON is padded with `Fault.size`
    bytes of whitespace (6 MiB by default, past a client's 4 MiB cap), streamed without a
    ``Content-Length`` so that only reading it tells how long it is."""
    DRIP = "drip"
    """The request takes effect, and the answer is trickled out over `Fault.delay` simulated
    seconds, a few bytes at a time: it holds its connection all that while."""
    NESTED = "nested"
    """The request takes effect, and the answer is a 200 whose JSON nests 100,000 levels deep."""
    SKEWED_TIMES = "skewed_times"
    """The request takes effect, and the answer's ``submit_time`` is a year early: a finished
    task claims to have run for a year."""
    TASK_FAILED = "task_failed"
    """The task ends FAILED (a sync call answers the error); create and sync only."""
    MODERATION = "moderation"
    """400 ``DataInspectionFailed`` at submission; create and sync only."""
    IMAGE_MODERATION = "image_moderation"
    """Some images fail ``DataInspectionFailed`` (partial success); create and sync only."""


_GENERATION_ONLY: Final = frozenset(
    {FaultKind.TASK_FAILED, FaultKind.MODERATION, FaultKind.IMAGE_MODERATION}
)
_GENERATION: Final = frozenset({Endpoint.CREATE, Endpoint.SYNC})
# What a hostile server might put in Retry-After: none of it is a wait to take literally.
WILD_RETRY_AFTERS: Final = ("inf", "1e9", "nan", "-5", "Wed, 21 Oct 2037 07:28:00 GMT")
_FAULTABLE: Final = frozenset(
    {Endpoint.CREATE, Endpoint.SYNC, Endpoint.QUERY, Endpoint.LIST, Endpoint.CANCEL, Endpoint.FILE}
)


def _to_kind(value: FaultKind | str) -> FaultKind:
    return value if isinstance(value, FaultKind) else FaultKind(value)


def _to_endpoints(value: Endpoint | str | Iterable[Endpoint | str] | None) -> frozenset[Endpoint]:
    if value is None:
        return _FAULTABLE
    items = [value] if isinstance(value, Endpoint | str) else list(value)
    endpoints = frozenset(e if isinstance(e, Endpoint) else Endpoint(e) for e in items)
    if not endpoints or not endpoints <= _FAULTABLE:
        msg = f"endpoints must be among {sorted(e.value for e in _FAULTABLE)}, got {value!r}"
        raise ValueError(msg)
    return endpoints


def _check_types(fault: Fault) -> None:
    # Faults also arrive as JSON (the admin endpoint): refuse what would break a request later.
    numbers: dict[str, object] = {
        "rate": fault.rate,
        "delay": fault.delay,
        "retry_after": fault.retry_after,
    }
    integers: dict[str, object] = {
        "times": fault.times,
        "images": fault.images,
        "size": fault.size,
    }
    texts: dict[str, object] = {
        "model": fault.model,
        "code": fault.code,
        "message": fault.message,
        "retry_after_text": fault.retry_after_text,
    }
    for name, value in numbers.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            msg = f"{name} must be a number, got {value!r}"
            raise ValueError(msg)
    for name, value in integers.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            msg = f"{name} must be an integer, got {value!r}"
            raise ValueError(msg)
    for name, text in texts.items():
        if text is not None and not isinstance(text, str):
            msg = f"{name} must be a string, got {text!r}"
            raise ValueError(msg)


@public
@attrs.frozen(kw_only=True)
class Fault:
    """
    One injected fault.

    With neither `rate` nor `times`, it fires on every matching request.

    Attributes:
        kind: What happens.
        endpoints: Where: any of ``"create"``, ``"sync"``, ``"query"``, ``"list"``,
            ``"cancel"``, ``"file"``; default every endpoint the kind applies to.
        rate: The probability of firing on each matching request.
        times: Fire on the next `times` matching requests, then retire.
        model: Only requests for this model (create and sync requests name one).
        delay: For `FaultKind.DELAY` and `FaultKind.DRIP`, in simulated seconds.
        retry_after: For `FaultKind.THROTTLE`, the simulated seconds in ``Retry-After``.
        retry_after_text: For `FaultKind.WILD_RETRY_AFTER`, the literal ``Retry-After``;
            by default one of `WILD_RETRY_AFTERS`, drawn for each answer.
        size: For `FaultKind.OVERSIZED`, the bytes of padding.
        code: Overrides the error code (FAILED tasks, sync errors, moderation items).
        message: Overrides the error message.
        images: For `FaultKind.IMAGE_MODERATION`, how many of the request's images fail (the
            last ones); when it covers all of them the task is FAILED.
    """

    kind: FaultKind = attrs.field(converter=_to_kind)
    endpoints: frozenset[Endpoint] = attrs.field(default=None, converter=_to_endpoints)
    rate: float | None = None
    times: int | None = None
    model: str | None = None
    delay: float = 0.0
    retry_after: float = 1.0
    code: str | None = None
    message: str | None = None
    images: int = 1
    retry_after_text: str | None = None
    size: int = 6 * 1024 * 1024

    def __attrs_post_init__(self) -> None:
        _check_types(self)
        if self.rate is not None and not 0.0 <= self.rate <= 1.0:
            msg = f"rate must be in [0, 1], got {self.rate!r}"
            raise ValueError(msg)
        if self.times is not None and self.times < 1:
            msg = f"times must be at least 1, got {self.times!r}"
            raise ValueError(msg)
        if self.rate is not None and self.times is not None:
            msg = "give rate or times, not both"
            raise ValueError(msg)
        if self.delay < 0 or self.retry_after < 0 or self.images < 1 or self.size < 0:
            msg = "delay, retry_after and size must be >= 0, images >= 1"
            raise ValueError(msg)
        if self.kind in _GENERATION_ONLY:
            object.__setattr__(self, "endpoints", self.endpoints & _GENERATION)
            if not self.endpoints:
                msg = f"{self.kind.value} applies to create and sync requests only"
                raise ValueError(msg)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Fault:
        """
        A fault from its JSON form (the admin endpoint), e.g. ``{"kind": "throttle", "times": 2}``.

        Raises:
            ValueError: Unknown keys or invalid values.
        """
        known = {a.name for a in attrs.fields(cls)}
        unknown = set(data) - known
        if unknown:
            msg = f"unknown fault keys: {sorted(unknown)}"
            raise ValueError(msg)
        try:
            return cls(**data)
        except TypeError as exc:
            raise ValueError(str(exc)) from exc

    def to_json(self) -> dict[str, Any]:
        """The JSON form `from_json` reads."""
        data = attrs.asdict(self, recurse=False)
        data["kind"] = self.kind.value
        data["endpoints"] = sorted(e.value for e in self.endpoints)
        return data


@attrs.frozen
class Fired:
    """The faults one request drew, by kind."""

    by_kind: Mapping[FaultKind, Fault] = attrs.field(factory=dict)

    def __contains__(self, kind: FaultKind) -> bool:
        return kind in self.by_kind

    def get(self, kind: FaultKind) -> Fault | None:
        """The fault of `kind` that fired, if any."""
        return self.by_kind.get(kind)


NOTHING_FIRED: Final = Fired()


@attrs.define
class _Armed:
    fault: Fault
    remaining: int | None


@public
class Faults:
    """
    The faults armed on a running emulator; change them at any time.

    Args:
        rng: The seeded source of `Fault.rate` draws.
    """

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._armed: list[_Armed] = []
        self.fired: Counter[FaultKind] = Counter()
        """How often each kind has fired since the emulator started (or `clear`)."""

    def __repr__(self) -> str:
        return f"<Faults armed={len(self._armed)}>"

    def __len__(self) -> int:
        return len(self._armed)

    def __iter__(self) -> Iterator[Fault]:
        return iter([armed.fault for armed in self._armed])

    def add(self, *faults: Fault) -> None:
        """Arm `faults`, after those already armed."""
        self._armed.extend(_Armed(fault, fault.times) for fault in faults)

    def clear(self) -> None:
        """Disarm every fault and forget how often they fired."""
        self._armed.clear()
        self.fired.clear()

    def draw(self, endpoint: Endpoint, model: str | None = None) -> Fired:
        """
        The faults that fire for one request; scripted ones count down as they fire.

        The first armed fault of each kind that fires wins; later ones of that kind are not
        drawn, so their counts and the RNG are untouched.
        """
        if not self._armed:
            return NOTHING_FIRED
        fired: dict[FaultKind, Fault] = {}
        for armed in list(self._armed):
            fault = armed.fault
            if fault.kind in fired or endpoint not in fault.endpoints:
                continue
            if fault.model is not None and fault.model != model:
                continue
            if fault.rate is not None and self._rng.random() >= fault.rate:
                continue
            if fault.kind is FaultKind.WILD_RETRY_AFTER and fault.retry_after_text is None:
                # Drawn here, from the seeded RNG, so that a run is reproducible.
                text = self._rng.choice(WILD_RETRY_AFTERS)
                fault = attrs.evolve(fault, retry_after_text=text)
            fired[fault.kind] = fault
            self.fired[fault.kind] += 1
            if armed.remaining is not None:
                armed.remaining -= 1
                if armed.remaining == 0:
                    self._armed.remove(armed)
        return Fired(fired) if fired else NOTHING_FIRED


# Deep enough to overflow a recursive parser's stack, small enough (200 kB) to send quickly.
NESTING: Final = 100_000
_TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S.%f"
_YEAR: Final = dt.timedelta(days=365)
HTML_PAGE: Final = b"<html><body><h1>502 Bad Gateway</h1></body></html>"


def hostile_answer(fired: Fired, body: bytes, content_type: str) -> tuple[bytes, str]:
    """
    The answer's body and content type after the hostile-body faults that `fired`.

    Applied after the request took effect, like `FaultKind.MALFORMED`: the client's parsers, not
    the server's state, are under test.
    """
    if FaultKind.NOT_JSON in fired:
        return HTML_PAGE, "text/html; charset=utf-8"
    if FaultKind.NESTED in fired:
        return b"[" * NESTING + b"]" * NESTING, content_type
    if FaultKind.SKEWED_TIMES in fired:
        return _skew_submit_time(body), content_type
    return body, content_type


def _skew_submit_time(body: bytes) -> bytes:
    try:
        data = json.loads(body)
        output = data["output"]
        text = output["submit_time"]
        # Only shifted, never compared: the zone (UTC+8) does not matter.
        submitted = dt.datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=dt.UTC)
    except (ValueError, KeyError, TypeError):
        return body  # nothing to skew (an error answer, a list): the answer as it was
    skewed = submitted - _YEAR
    output["submit_time"] = f"{skewed:%Y-%m-%d %H:%M:%S}.{skewed.microsecond // 1000:03d}"
    return json.dumps(data, separators=(",", ":")).encode()


# A drip-fed answer goes out in this many pieces: enough to hold the line, few enough to be cheap.
DRIP_PIECES: Final = 32
_PADDING: Final = b" " * (64 * 1024)


def is_streamed(fired: Fired) -> bool:
    """Whether the answer goes out with `stream_answer` (its length or pace is the fault)."""
    return FaultKind.OVERSIZED in fired or FaultKind.DRIP in fired


async def stream_answer(
    request: web.Request, fired: Fired, body: bytes, content_type: str, time_scale: float
) -> web.StreamResponse:
    """
    Send `body` drip-fed, padded past any sane size, or both, as the faults that `fired` say.

    A client that hangs up half-way (its cap or deadline struck, as it should) ends the answer;
    the emulator's own time spent on one is bounded by the fault's `delay` and `size`.
    """
    drip, oversized = fired.get(FaultKind.DRIP), fired.get(FaultKind.OVERSIZED)
    response = web.StreamResponse(headers={"Content-Type": content_type})
    if oversized is None:
        response.content_length = len(body)  # a drip's client knows how much is still to come
    try:
        await response.prepare(request)
        if drip is None:
            await response.write(body)
        else:
            step = max(1, -(-len(body) // DRIP_PIECES))
            pause = drip.delay * time_scale / DRIP_PIECES
            for start in range(0, len(body), step):
                if start:
                    await asyncio.sleep(pause)
                await response.write(body[start : start + step])
        if oversized is not None:
            for start in range(0, oversized.size, len(_PADDING)):
                await response.write(_PADDING[: oversized.size - start])
        await response.write_eof()
    except ConnectionError:
        pass  # the client stopped listening: the answer is over
    return response
