"""Every bad input is a 4xx with a message that says what is wrong; fuzzed bodies never give a 500."""

from __future__ import annotations

import asyncio
import json
import os

import numpy as np
import obspy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from service_harness import MSEED, ServiceHarness, event_bytes, event_stream, metric, to_json_body, to_mseed

from seispick.service.settings import Settings

# SEISPICK_FUZZ_EXAMPLES=2000 for a long hunt; the default keeps the suite fast.
FUZZ = settings(
    max_examples=int(os.environ.get("SEISPICK_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
pytestmark = [
    pytest.mark.filterwarnings("ignore::obspy.io.mseed.InternalMSEEDWarning"),
    pytest.mark.filterwarnings("ignore:Failed to decode:UserWarning"),
]
KEY = "s3cret-key"


@pytest.fixture(scope="module")
def service():
    with ServiceHarness(Settings()) as harness:
        yield harness


@pytest.fixture(scope="module")
def limited():
    limits = Settings(max_body_bytes=150_000, max_duration_s=60, api_keys=[KEY], request_timeout_s=0.3)
    with ServiceHarness(limits) as harness:
        yield harness


def small_json(**changes) -> dict:
    body = {
        "network": "XX",
        "station": "ABC",
        "location": "",
        "channel_prefix": "HH",
        "starttime": "2020-01-01T00:00:00Z",
        "sampling_rate": 100.0,
        "data": {c: np.random.default_rng(1).normal(size=500).tolist() for c in "ZNE"},
    }
    body.update(changes)
    return body


def expect(response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    detail = json.dumps(response.json()["detail"]).lower()
    for word in words:
        assert word.lower() in detail, (word, detail)


def multipart(parts: list[tuple[str, str, bytes]], boundary: str = "XyZ") -> tuple[bytes, str]:
    lines = b""
    for field, filename, data in parts:
        lines += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
                f"Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    return lines + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


# --- bodies -------------------------------------------------------------------------------------------


def test_empty_body(service):
    expect(service.post_mseed(b""), 400, "empty")


def test_corrupt_mseed(service):
    expect(service.post_mseed(np.random.default_rng(0).bytes(4096)), 400, "not valid miniseed")
    expect(service.post_mseed(b"hello, this is not seismic data"), 400, "not valid miniseed")


@pytest.mark.parametrize("content_type", ["text/plain", "image/png", ""])
def test_wrong_content_type(service, content_type):
    response = service.post("/v1/picks", content=event_bytes(0), headers={"content-type": content_type})
    expect(response, 415, "content type", "application/vnd.fdsn.mseed")


def test_broken_json(service):
    response = service.post(
        "/v1/picks", content=b'{"network": "XX", ', headers={"content-type": "application/json"}
    )
    expect(response, 400, "not valid json")


def test_json_unequal_channel_lengths(service):
    data = {"Z": [0.0] * 500, "N": [0.0] * 499, "E": [0.0] * 500}
    expect(service.post("/v1/picks", json=small_json(data=data)), 422, "unequal lengths")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_json_non_finite_samples(service, literal):
    text = json.dumps(small_json(data={"Z": [1.0, 2.0, 3.0]})).replace("3.0", literal)
    response = service.post("/v1/picks", content=text.encode(), headers={"content-type": "application/json"})
    expect(response, 422, "data.z.2", "finite")


@pytest.mark.parametrize(
    "rate", [0, -100, "NaN", "5e-324", "1e-300", "1e9"]
)  # tiny rates overflow ObsPy times
def test_json_bad_sampling_rate(service, rate):
    text = json.dumps(small_json(sampling_rate=1.0)).replace(
        '"sampling_rate": 1.0', f'"sampling_rate": {rate}'
    )
    response = service.post("/v1/picks", content=text.encode(), headers={"content-type": "application/json"})
    expect(response, 422, "sampling_rate")


@pytest.mark.parametrize("start", ["yesterday", "2020-13-45T99:00:00", ""])
def test_json_unparsable_start_time(service, start):
    expect(service.post("/v1/picks", json=small_json(starttime=start)), 422, "unparsable start time")


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"data": {}}, ["data"]),
        ({"data": {"Z": [], "N": []}}, ["no samples"]),
        ({"station": "A.B"}, ["station"]),
        ({"network": ""}, ["network"]),
        ({"channel_prefix": "HHZ"}, ["channel_prefix"]),
        ({"data": {"Z": ["1", "2"]}}, ["data.z.0"]),
        ({"extra_field": 1}, ["extra_field"]),
    ],
)
def test_json_invalid_fields(service, changes, words):
    expect(service.post("/v1/picks", json=small_json(**changes)), 422, *words)


def test_json_empty_list(service):
    expect(service.post("/v1/picks", json=[]), 422, "empty list")


def test_json_huge_samples(service):
    expect(service.post("/v1/picks", json=small_json(data={"Z": [1e35] * 400})), 422, "magnitude")


def test_mseed_codes_with_a_dot(service):
    stream = event_stream(0)
    for trace in stream:
        trace.stats.station = "A.B"
    expect(service.post_mseed(to_mseed(stream)), 422, "station code")


def test_no_usable_data(service):
    stream = event_stream(0)[:1]
    stream[0].stats.channel = "DPX"  # not a component PhaseNet reads
    expect(service.post_mseed(to_mseed(stream)), 422, "no usable data", "component x")


def test_multipart_problems(service):
    body, ctype = multipart([("other", "a.mseed", event_bytes(0))])
    expect(service.post("/v1/picks", content=body, headers={"content-type": ctype}), 400, "no 'files' part")
    body, ctype = multipart([("files", "empty.mseed", b"")])
    expect(
        service.post("/v1/picks", content=body, headers={"content-type": ctype}), 400, "empty.mseed", "empty"
    )
    body, ctype = multipart([("files", "bad.mseed", b"x" * 600)])
    expect(
        service.post("/v1/picks", content=body, headers={"content-type": ctype}), 400, "bad.mseed", "miniseed"
    )
    expect(
        service.post("/v1/picks", content=body[:-30], headers={"content-type": ctype}),
        400,
        "malformed multipart",
    )
    response = service.post("/v1/picks", content=body, headers={"content-type": "multipart/form-data"})
    expect(response, 400, "boundary")


# --- query ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["no-such-model", "../../etc/passwd", "/work/main/models/phasenet-original"])
def test_unknown_model(service, name):
    expect(service.post_mseed(event_bytes(0), params={"model": name}), 404, "unknown model")
    assert service.get(f"/v1/models/{name}").status_code == 404


def test_detector_model_refuses_what_only_pickers_answer(service):
    """A detector answers detections (tests/test_detector_service.py); QuakeML, P/S thresholds and
    probability traces are a picker's, and asking a detector for them is a 422 naming why."""
    detectors = [m["name"] for m in service.get("/v1/models").json()["models"] if m.get("task") == "detector"]
    if not detectors:
        pytest.skip("no detector model shipped")
    for params, reason in (
        ({"format": "quakeml"}, "no QuakeML form"),
        ({"p_threshold": 0.5}, "no P/S thresholds"),
        ({"probabilities": "true"}, "probability traces"),
    ):
        expect(service.post_mseed(event_bytes(0), params={"model": detectors[0], **params}), 422, reason)


@pytest.mark.parametrize(
    "params",
    [
        {"format": "xml"},
        {"p_threshold": 0},
        {"s_threshold": 1.5},
        {"p_threshold": "nan"},
        {"decimate": 0},
        {"probabilities": "maybe"},
        {"unknown": 1},
    ],
)
def test_bad_query(service, params):
    response = service.post_mseed(event_bytes(0), params=params)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["msg"]


def test_probabilities_need_json(service):
    expect(
        service.post_mseed(event_bytes(0), params={"format": "csv", "probabilities": True}),
        422,
        "format=json",
    )


# --- limits and auth ----------------------------------------------------------------------------------


def authed(**headers) -> dict:
    return {"headers": {"x-api-key": KEY, **headers}}


def test_body_over_limit_by_content_length(limited):
    big = event_bytes(0) + event_bytes(1)
    response = limited.post_mseed(big, **authed())
    expect(response, 413, "150000 bytes")


def test_body_over_limit_when_streamed(limited):
    async def chunks():
        for _ in range(40):
            yield b"\0" * 8192

    response = limited.post("/v1/picks", content=chunks(), headers={"content-type": MSEED, "x-api-key": KEY})
    assert "content-length" not in {k.lower() for k in response.request.headers}
    expect(response, 413, "150000 bytes")


def test_duration_over_limit(limited):
    expect(limited.post_mseed(event_bytes(0), **authed()), 413, "90.0 s", "limit of 60 s")


def test_api_keys(limited):
    short = event_stream(0).trim(event_stream(0)[0].stats.starttime, event_stream(0)[0].stats.starttime + 50)
    body = to_mseed(short)
    expect(limited.post_mseed(body), 401, "missing api key")
    expect(limited.post_mseed(body, headers={"x-api-key": "wrong"}), 403, "invalid api key")
    assert limited.post_mseed(body, **authed()).status_code == 200
    assert limited.get("/v1/models").status_code == 401
    assert limited.get("/v1/models", headers={"x-api-key": KEY}).status_code == 200
    for open_path in ("/healthz", "/readyz"):
        assert limited.get(open_path).status_code == 200
    assert limited.get("/metrics").status_code == 401  # open only with metrics_public
    assert limited.get("/metrics", headers={"x-api-key": KEY}).status_code == 200
    assert metric(limited.metrics(), "seispick_input_errors_total", kind="auth") >= 3


def test_timeout_gives_504(limited):
    batcher = limited.state.batcher
    original = batcher.predict

    async def slow(*args, **kwargs):
        await asyncio.sleep(2)
        return await original(*args, **kwargs)

    batcher.predict = slow
    try:
        response = limited.post_mseed(
            to_mseed(event_stream(0).slice(endtime=event_stream(0)[0].stats.starttime + 50)), **authed()
        )
    finally:
        batcher.predict = original
    expect(response, 504, "0.3 s")


def test_errors_are_counted_by_kind(service):
    before = service.metrics()
    service.post_mseed(b"")
    service.post("/v1/picks", content=b"x", headers={"content-type": "text/plain"})
    after = service.metrics()
    for kind in ("empty_body", "content_type"):
        name = "seispick_input_errors_total"
        assert metric(after, name, kind=kind) == metric(before, name, kind=kind) + 1


# --- fuzzing: no input may produce a 5xx --------------------------------------------------------------


def assert_client_error_or_ok(response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json()["detail"]


CONTENT_TYPES = st.sampled_from(
    [MSEED, "application/octet-stream", "application/json", "multipart/form-data; boundary=b"]
)


@FUZZ
@given(body=st.binary(max_size=3000), content_type=CONTENT_TYPES)
def test_fuzz_raw_bytes(service, body, content_type):
    assert_client_error_or_ok(service.post("/v1/picks", content=body, headers={"content-type": content_type}))


@FUZZ
@given(
    cut=st.integers(min_value=0, max_value=40_000),
    flips=st.lists(st.tuples(st.integers(0, 40_000), st.integers(0, 255)), min_size=1, max_size=12),
)
def test_fuzz_mutated_mseed(service, cut, flips):
    data = bytearray(event_bytes(0)[: 4096 * 3 + cut])
    for position, value in flips:
        # most flips land in record headers, where they change codes, times, rates and encodings
        data[position % 4096 if position % 2 else position % len(data)] = value
    assert_client_error_or_ok(service.post_mseed(bytes(data)))


JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**12), 10**12), st.floats(), st.text(max_size=12)
)
SAMPLES = st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=0, max_size=400)


@st.composite
def station_objects(draw) -> dict:
    length = draw(st.integers(0, 400))
    samples = st.lists(st.floats(-1e6, 1e6, width=32), min_size=length, max_size=length)
    body = {
        "network": draw(st.one_of(st.sampled_from(["XX", "NC"]), st.text(max_size=9))),
        "station": draw(st.one_of(st.sampled_from(["ABC", "Z1"]), st.text(max_size=9))),
        "location": draw(st.sampled_from(["", "00", "--", " ", "."])),
        "channel_prefix": draw(st.sampled_from(["HH", "EH", "B", "HHZ"])),
        "starttime": draw(
            st.one_of(
                st.sampled_from(["2020-01-01T00:00:00Z", "1970-01-01", "2100-02-29T00:00:00", "x"]),
                st.floats(allow_nan=False),
                st.text(max_size=20),
            )
        ),
        "sampling_rate": draw(
            st.one_of(st.sampled_from([100.0, 40.0, 250.0, 1.0, 1e-3, 5e4]), st.floats(allow_nan=False))
        ),
        "data": draw(
            st.dictionaries(
                st.sampled_from(["Z", "N", "E", "1", "2", "X", "ZZ"]), st.one_of(samples, SAMPLES), max_size=4
            )
        ),
    }
    for key in draw(st.lists(st.sampled_from(sorted(body)), max_size=2)):
        body[key] = draw(JSON_SCALARS)
    return body


@FUZZ
@given(body=st.one_of(station_objects(), st.lists(station_objects(), max_size=3), JSON_SCALARS))
def test_fuzz_json_bodies(service, body):
    text = json.dumps(body)  # Python writes NaN/Infinity literals, which the service must refuse
    response = service.post("/v1/picks", content=text.encode(), headers={"content-type": "application/json"})
    assert_client_error_or_ok(response)


@FUZZ
@given(
    params=st.dictionaries(
        st.sampled_from(["model", "p_threshold", "s_threshold", "format", "probabilities", "decimate", "x"]),
        st.one_of(st.text(max_size=10), st.floats(), st.integers(-5, 10**6), st.booleans()),
        max_size=4,
    )
)
def test_fuzz_query_parameters(service, params):
    short = json.dumps(small_json(data={"Z": [0.0, 1.0] * 300})).encode()
    response = service.post(
        "/v1/picks", params=params, content=short, headers={"content-type": "application/json"}
    )
    assert_client_error_or_ok(response)


def test_no_500_was_ever_recorded(service):
    samples = service.metrics()
    errors = [
        k
        for k, v in samples.items()
        if k[0] == "seispick_http_requests_total" and dict(k[1])["status"].startswith("5") and v
    ]
    assert errors == []


def test_a_trace_with_an_odd_rate_is_resampled(service):
    stream = event_stream(0).slice(endtime=event_stream(0)[0].stats.starttime + 40)
    for trace in stream:
        trace.stats.sampling_rate = 40.0
    response = service.post_mseed(to_mseed(stream))
    assert response.status_code == 200
    assert any("resampled" in note for note in response.json()["notes"])


def test_obspy_traces_json_round_trip_is_exact():
    """The JSON helper the tests use carries float32 samples exactly."""
    stream = event_stream(0)
    body = to_json_body(stream)
    assert np.array_equal(
        np.asarray(body["data"]["Z"], dtype=np.float32), stream.select(component="Z")[0].data
    )
    assert isinstance(obspy.UTCDateTime(body["starttime"]), obspy.UTCDateTime)
