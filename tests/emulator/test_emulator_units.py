"""The emulator's pure parts: sliding windows, PNG writer, wire formats, faults, limits, URLs."""

from __future__ import annotations

import random
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aioqwenimage._catalog import MODELS
from aioqwenimage.testing import (
    INHERIT,
    EmulatorLimits,
    Endpoint,
    FakeDashScope,
    Fault,
    FaultKind,
    Faults,
    ModelQuota,
    _wire,
)
from aioqwenimage.testing._config import LaneQuota, build_limits, resolve_quota
from aioqwenimage.testing._files import FileRequest, OssError, UrlSigner, oss_error
from aioqwenimage.testing._png import encode_png
from aioqwenimage.testing._ratelimit import SlidingWindow
from aioqwenimage.testing._stats import Stats


def decode_png(data: bytes) -> tuple[int, int, bytes]:
    """Check a PNG's structure and CRCs; return (width, height, raw scanlines)."""
    assert b"\x89PNG\r\n\x1a\n" == data[:8]
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc
        chunks.append((kind, body))
        pos += 12 + length
    assert [b"IHDR", b"IDAT", b"IEND"] == [kind for kind, _ in chunks]
    width, height, depth, colour = struct.unpack(">IIBB", chunks[0][1][:10])
    assert (8, 2) == (depth, colour)
    return width, height, zlib.decompress(chunks[1][1])


# --- sliding windows -------------------------------------------------------------------------


def test_window_admits_up_to_its_limit_then_says_how_long():
    """A full window refuses with the time until its oldest admission leaves."""
    window = SlidingWindow(2, 1.0)
    assert [0.0, 0.0] == [window.acquire(10.0), window.acquire(10.25)]
    assert 0.75 == pytest.approx(window.acquire(10.25))
    assert 0.0 == window.acquire(11.0)
    assert "<SlidingWindow 2/2 per 1s>" == repr(window)


def test_window_clear_forgets_admissions():
    """clear() empties the window."""
    window = SlidingWindow(1, 60.0)
    window.acquire(0.0)
    window.clear()
    assert 0.0 == window.acquire(1.0)


@pytest.mark.parametrize(("limit", "period"), [(0, 1.0), (1, 0.0)])
def test_window_rejects_nonsense(limit: int, period: float):
    """A window needs a positive limit and period."""
    with pytest.raises(ValueError, match="must be"):
        SlidingWindow(limit, period)


@settings(max_examples=50, deadline=None)
@given(
    limit=st.integers(1, 5),
    gaps=st.lists(st.floats(0, 0.7, allow_nan=False), min_size=1, max_size=40),
)
def test_window_never_admits_more_than_limit_per_period(limit: int, gaps: list[float]):
    """In any span of one period, at most `limit` events are admitted."""
    window, now, admitted = SlidingWindow(limit, 1.0), 0.0, []
    for gap in gaps:
        now += gap
        if window.acquire(now) == 0.0:
            admitted.append(now)
    for i, start in enumerate(admitted):
        inside = [t for t in admitted[i:] if t < start + 1.0]
        assert (True, start) == (len(inside) <= limit, start)


# --- stats: the busiest simulated second of the task API ---------------------------------------


def make_stats() -> Stats:
    return Stats(tasks_source=list, in_flight_source=lambda: (0, 0))


def test_task_calls_per_second_counts_a_half_open_sliding_second():
    """Calls at t and t + 1 s are in different seconds; three within any second are three."""
    stats = make_stats()
    for now in (10.0, 10.5, 11.0):  # (10, 11] holds 10.5 and 11.0; 10.0 has left
        stats.count_task_call(now, 1.0)
    assert 2 == stats.peak_task_calls_per_second
    for now in (11.2, 11.9):  # (10.9, 11.9] holds 11.0, 11.2, 11.9
        stats.count_task_call(now, 1.0)
    assert 3 == stats.peak_task_calls_per_second
    assert 3 == stats.to_dict(tasks=False)["peak_task_calls_per_second"]
    stats.clear()
    stats.count_task_call(50.0, 1.0)
    assert 1 == stats.peak_task_calls_per_second


def test_task_calls_per_second_counts_in_compressed_time_and_survives_a_clock_step_back():
    """`second` is the real length of a simulated second; a clock stepping back stands still."""
    stats = make_stats()
    for now in (100.0, 100.004, 99.0, 100.009, 100.0101):  # 99.0 counts as 100.004
        stats.count_task_call(now, 0.01)
    assert 4 == stats.peak_task_calls_per_second


@given(
    second=st.sampled_from([1.0, 0.01]),
    gaps=st.lists(st.floats(0, 0.7, allow_nan=False), min_size=1, max_size=40),
)
def test_task_calls_per_second_is_the_most_calls_in_any_second(second: float, gaps: list[float]):
    """The peak is, over every call, how many calls arrived in the second that ends with it."""
    stats, now, calls = make_stats(), 0.0, []
    for gap in gaps:
        now += gap * second
        calls.append(now)
        stats.count_task_call(now, second)
    expected = max(sum(end - second < t <= end for t in calls) for end in calls)
    assert expected == stats.peak_task_calls_per_second


# --- PNG -------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(1, 1), (3, 2), (1664, 928), (2048, 2048), (1, 262_144)])
def test_png_decodes_to_the_requested_size(size: tuple[int, int]):
    """The PNG is valid, RGB, and exactly the requested size."""
    width, height, raw = decode_png(encode_png(*size))
    assert (size, height * (1 + 3 * width)) == ((width, height), len(raw))


def test_png_is_encoded_once_per_size():
    """The same size returns the same cached bytes object."""
    assert encode_png(640, 480) is encode_png(640, 480)


@pytest.mark.parametrize("size", [(0, 5), (5, 0), (8193, 8193)])
def test_png_refuses_impossible_sizes(size: tuple[int, int]):
    """Sides outside [1, 16384] are refused."""
    with pytest.raises(ValueError, match="PNG sides"):
        encode_png(*size)


# --- wire formats ----------------------------------------------------------------------------


def test_task_times_are_utc_plus_8_with_millis():
    """Task timestamps are YYYY-MM-DD HH:mm:ss.SSS in UTC+8."""
    assert "2023-11-15 06:13:20.123" == _wire.format_time(1_700_000_000.123456)
    assert 1_700_000_000_123 == _wire.epoch_ms(1_700_000_000.1234)


def test_list_times_read_as_utc_plus_8():
    """A list bound YYYYMMDDhhmmss is read in UTC+8."""
    assert 1_700_000_000.0 == _wire.parse_list_time("20231115061320")
    with pytest.raises(ValueError, match="YYYYMMDDhhmmss"):
        _wire.parse_list_time("2023-11-15")


@pytest.mark.parametrize(
    ("simulated", "scale", "expected"),
    [
        (0.2, 1.0, "1"),
        (1.0, 1.0, "1"),
        (59.5, 1.0, "60"),
        (0.5, 0.01, "0.01"),
        (3.2, 0.001, "0.004"),
    ],
)
def test_retry_after_is_whole_simulated_seconds_then_scaled(
    simulated: float, scale: float, expected: str
):
    """Retry-After rounds up to whole simulated seconds (at least 1), then scales."""
    assert expected == _wire.retry_after(simulated, scale)


@pytest.mark.parametrize(
    ("code", "status"),
    [("InternalError.Algo", 500), ("ModelUnavailable", 503), ("Throttling", 429), ("X", 400)],
)
def test_injected_codes_get_their_documented_status(code: str, status: int):
    """An error code maps to the HTTP status the service pairs it with."""
    assert status == _wire.status_for_code(code)


def test_error_bodies_carry_request_id_code_message():
    """Error bodies are {request_id, code, message}."""
    assert b'{"request_id":"r","code":"C","message":"\xe4\xb8\xad"}' == _wire.error_body(
        "C", "中", "r"
    )


def test_to_jsonable_flattens_containers_and_enums():
    """Admin answers turn tuples, sets and enums into JSON types."""
    assert {"a": [1, "query"]} == _wire.to_jsonable({"a": (1, Endpoint.QUERY)})


# --- faults ----------------------------------------------------------------------------------


def test_scripted_faults_fire_the_next_n_times_then_retire():
    """A fault with times=2 fires on the next two matching requests only."""
    faults = Faults(random.Random(0))
    faults.add(Fault(kind="throttle", endpoints="query", times=2))
    fired = [FaultKind.THROTTLE in faults.draw(Endpoint.QUERY) for _ in range(3)]
    assert ([True, True, False], 0) == (fired, len(faults))


def test_faults_match_endpoint_and_model():
    """A fault fires only for its endpoints and, when set, its model."""
    faults = Faults(random.Random(0))
    faults.add(Fault(kind=FaultKind.TASK_FAILED, model="wan2.2-t2i-flash"))
    assert FaultKind.TASK_FAILED not in faults.draw(Endpoint.CREATE, "qwen-image-plus")
    assert FaultKind.TASK_FAILED not in faults.draw(Endpoint.QUERY)
    assert FaultKind.TASK_FAILED in faults.draw(Endpoint.CREATE, "wan2.2-t2i-flash")


def test_rated_faults_follow_the_seeded_rng():
    """A rate fault fires about that often, reproducibly for a seed."""

    def run(seed: int) -> list[bool]:
        faults = Faults(random.Random(seed))
        faults.add(Fault(kind="internal_error", rate=0.3))
        return [FaultKind.INTERNAL_ERROR in faults.draw(Endpoint.LIST) for _ in range(400)]

    first = run(1)
    assert first == run(1)
    assert 80 < sum(first) < 160


def test_the_first_fault_of_a_kind_wins():
    """Two faults of one kind: the first fires, the second keeps its count."""
    faults = Faults(random.Random(0))
    first, second = Fault(kind="delay", delay=1), Fault(kind="delay", delay=2, times=1)
    faults.add(first, second)
    assert first == faults.draw(Endpoint.FILE).get(FaultKind.DELAY)
    assert [first, second] == list(faults)
    faults.clear()
    assert "<Faults armed=0>" == repr(faults)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "throttle", "rate": 1.5},
        {"kind": "throttle", "times": 0},
        {"kind": "throttle", "times": 1, "rate": 0.5},
        {"kind": "delay", "delay": -1},
        {"kind": "task_failed", "endpoints": "query"},
        {"kind": "throttle", "endpoints": "admin"},
        {"kind": "throttle", "endpoints": []},
        {"kind": "nonsense"},
        {"kind": "throttle", "times": 1.5},
        {"kind": "image_moderation", "images": True},
        {"kind": "delay", "delay": "1"},
        {"kind": "throttle", "model": 5},
    ],
)
def test_invalid_faults_are_refused(kwargs: dict[str, object]):
    """Out-of-range or contradictory faults raise ValueError."""
    with pytest.raises(ValueError):
        Fault(**kwargs)  # type: ignore[arg-type]


def test_generation_faults_narrow_to_create_and_sync():
    """Generation-only kinds drop endpoints where they cannot apply."""
    fault = Fault(kind="image_moderation", endpoints=["create", "query"])
    assert frozenset({Endpoint.CREATE}) == fault.endpoints


def test_faults_round_trip_through_json():
    """to_json and from_json are inverse; unknown keys and bad types are refused."""
    fault = Fault(kind="throttle", endpoints=["query", "list"], times=3, retry_after=2.0)
    assert fault == Fault.from_json(fault.to_json())
    with pytest.raises(ValueError, match="unknown fault keys"):
        Fault.from_json({"kind": "throttle", "when": "now"})
    with pytest.raises(ValueError, match="kind"):
        Fault.from_json({})


# --- limits ----------------------------------------------------------------------------------


def test_quota_defaults_come_from_the_catalog():
    """Without overrides a lane enforces the documented limits of its region."""
    plus, wan = MODELS["qwen-image-plus"], MODELS["wan2.6-t2i"]
    assert LaneQuota(submits=2, period=1, in_flight=2, over_cap="queue") == resolve_quota(
        plus, EmulatorLimits()
    )
    beijing = EmulatorLimits(region="beijing", over_cap="reject")
    assert LaneQuota(submits=1, period=1, in_flight=5, over_cap="reject") == resolve_quota(
        wan, beijing
    )


def test_quota_overrides_field_by_field():
    """A ModelQuota overrides only the fields it sets; None means unlimited."""
    limits = EmulatorLimits(models={"qwen-image-plus": ModelQuota(in_flight=None, submits=10)})
    lane = resolve_quota(MODELS["qwen-image-plus"], limits)
    assert LaneQuota(submits=10, period=1, in_flight=None, over_cap="queue") == lane
    assert "ModelQuota(submits=INHERIT, period=INHERIT, in_flight=INHERIT, over_cap=INHERIT)" == (
        repr(ModelQuota())
    )
    assert INHERIT is ModelQuota().period


def test_no_limits_means_unlimited_lanes():
    """limits=None gives every lane no limit."""
    lane = resolve_quota(MODELS["qwen-image-plus"], None)
    assert (None, None) == (lane.submits, lane.in_flight)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ModelQuota(submits=0),
        lambda: ModelQuota(period=-1.0),
        lambda: ModelQuota(in_flight=True),
        lambda: ModelQuota(over_cap="drop"),
        lambda: EmulatorLimits(region="mars"),
        lambda: EmulatorLimits(task_queries_per_second=0),
    ],
    ids=["submits", "period", "bool", "over_cap", "region", "queries"],
)
def test_limit_settings_are_validated(make):
    """Nonsense limits raise ValueError."""
    with pytest.raises(ValueError, match="must be"):
        make()


def test_build_limits_applies_the_shortcuts():
    """over_cap and no_limits shortcuts build the right limits."""
    assert None is build_limits(no_limits=True)
    assert "reject" == build_limits(over_cap="reject").over_cap  # type: ignore[union-attr]
    assert EmulatorLimits() == build_limits()


# --- result URLs -----------------------------------------------------------------------------


def _request(url: str, *, drop: str | None = None) -> FileRequest:
    path, _, query = url.partition("?")
    params = dict(part.split("=", 1) for part in query.split("&"))
    from urllib.parse import unquote

    return FileRequest(
        key=path.split("/", 3)[3],
        expires=None if drop == "Expires" else params["Expires"],
        access_key_id=params["OSSAccessKeyId"],
        signature=None if drop == "Signature" else unquote(params["Signature"]),
    )


def test_signed_urls_check_until_they_expire():
    """A URL is good until Expires, then 403 AccessDenied 'Request has expired.'."""
    signer = UrlSigner(b"k" * 20, time_scale=1.0)
    url = signer.url("http://h:1", owner="t-1", index=0, size=(64, 32), expires=1000.9)
    assert "Expires=1000&" in url
    assert (64, 32) == signer.check(_request(url), 999.0)
    with pytest.raises(OssError) as caught:
        signer.check(_request(url), 1000.5)
    assert (403, "Request has expired.") == (caught.value.status, caught.value.message)


def test_compressed_time_urls_expire_to_the_millisecond():
    """Under a compressed time scale, Expires carries milliseconds."""
    signer = UrlSigner(b"k" * 20, time_scale=0.001)
    url = signer.url("http://h:1", owner="t", index=1, size=(8, 8), expires=1000.1234)
    assert "Expires=1000.123&" in url


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (
            lambda r: FileRequest(key="x.png", expires="1", access_key_id="a", signature="s"),
            "NoSuchKey",
        ),
        (
            lambda r: FileRequest(key=r.key, expires=None, access_key_id=None, signature=None),
            "AccessDenied",
        ),
        (
            lambda r: FileRequest(
                key=r.key, expires="999999", access_key_id=r.access_key_id, signature=r.signature
            ),
            "SignatureDoesNotMatch",
        ),
    ],
    ids=["key", "unsigned", "forged"],
)
def test_forged_or_broken_urls_are_refused(mutate, code: str):
    """Unknown keys, missing or forged signatures get the OSS refusals."""
    signer = UrlSigner(b"k" * 20, time_scale=1.0)
    url = signer.url("http://h:1", owner="t", index=0, size=(8, 8), expires=5000.0)
    with pytest.raises(OssError) as caught:
        signer.check(mutate(_request(url)), 0.0)
    assert code == caught.value.code


def test_oss_errors_are_xml_documents():
    """OSS refusals render as its XML error document, escaped."""
    body = oss_error(OssError(403, "AccessDenied", "a < b", extra={"Expires": "x"}), "RID")
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<Error>\n  <Code>AccessDenied')
    assert b"<Message>a &lt; b</Message>" in body
    assert b"<Expires>x</Expires>" in body


# --- constructor checks ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"time_scale": 0},
        {"host": "0.0.0.0"},  # noqa: S104 - refused, which is the point
        {"host": "example.com"},
        {"durations": {"*": (5.0, 1.0)}},
        {"retention": 0},
        {"api_key": ""},
        {"unknown_models": "maybe"},
    ],
)
def test_fake_refuses_bad_options(kwargs: dict[str, object]):
    """FakeDashScope validates its options before binding anything."""
    with pytest.raises(ValueError):
        FakeDashScope(**kwargs)  # type: ignore[arg-type]


def test_localhost_and_explicit_remote_hosts_are_allowed():
    """localhost is loopback; another host needs allow_remote (the CLI's --force-host)."""
    assert "new" in repr(FakeDashScope(host="localhost"))
    assert "new" in repr(FakeDashScope(host="192.0.2.1", allow_remote=True))


def test_public_names_are_sorted_complete_and_public():
    """__all__ is sorted, every name resolves, and classes show the public module."""
    from aioqwenimage import testing

    def isort_key(name: str) -> tuple[int, str]:
        # ruff's RUF022 order: CONSTANTS, then Classes, then functions.
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert sorted(testing.__all__, key=isort_key) == testing.__all__
    assert sorted(testing.__all__) == dir(testing)
    for name in testing.__all__:
        value = getattr(testing, name)
        if isinstance(value, type):
            assert (name, "aioqwenimage.testing") == (name, value.__module__)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        testing.Nope  # noqa: B018 - the access is the test
