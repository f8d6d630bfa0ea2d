"""Bodies that cost far more than their size are refused before the work (issue 19): compressed members,
samples declared by headers, segments and windows, each a setting named in the 413; corrupt, cut and
impossible headers are a 4xx naming the record or field, the same answer every time; miniSEED 3 is read
wherever miniSEED 2 is; an unhandled error is a 500 with ``Connection: close`` and a request id."""

from __future__ import annotations

import asyncio
import gzip
import io
import logging
import struct
import time
import tracemalloc

import httpx
import numpy as np
import obspy
import pymseed
import pytest
from click.testing import CliRunner
from service_harness import ServiceHarness, event_bytes, event_stream

from seispick.cli.pick_cmd import pick as pick_command
from seispick.picking import waveforms
from seispick.picking.waveforms import (
    LimitExceededError,
    WaveformFormatError,
    decompress,
    read_waveform_bytes,
)
from seispick.service.api.app import create_app
from seispick.service.settings import Settings

pytestmark = [
    pytest.mark.filterwarnings("ignore::obspy.io.mseed.InternalMSEEDWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]
MB = 1 << 20


@pytest.fixture(scope="module")
def service():
    limits = Settings(max_samples=2_000_000, max_segments=200, max_windows=400, max_compressed_members=2_000)
    with ServiceHarness(limits) as harness:
        yield harness


def expect(response: httpx.Response, status: int, *words: str) -> str:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    for word in words:
        assert word.lower() in detail.lower(), (word, detail)
    return detail


def peak_of(call) -> tuple[object, int]:
    """What ``call()`` returns and the peak of Python/numpy allocations meanwhile, bytes."""
    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def to_bytes(stream: obspy.Stream, fmt: str = "MSEED", **kwargs) -> bytes:
    buffer = io.BytesIO()
    stream.write(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def to_mseed3(data: bytes) -> bytes:
    """miniSEED 2 bytes rewritten record by record as miniSEED 3 (libmseed's own writer)."""
    out = []
    for record in pymseed.MS3Record.from_buffer(data, unpack_data=True):
        copy = pymseed.MS3Record()
        copy.sourceid, copy.starttime, copy.samprate = record.sourceid, record.starttime, record.samprate
        copy.formatversion, copy.reclen, copy.encoding = 3, 4096, record.encoding
        out += list(copy.generate(np.array(record.np_datasamples), record.sampletype))
    return b"".join(out)


# --- compressed members -----------------------------------------------------------------------------------


def test_many_empty_gzip_members_unpack_in_linear_time():
    empty = gzip.compress(b"")
    raw = event_bytes(0)
    body = empty * 100_000 + gzip.compress(raw)  # 2 MB of members: copying the rest per member was 100 GB
    started = time.perf_counter()
    assert decompress(body, "gzip", max_members=None) == raw
    assert time.perf_counter() - started < 3.0
    for packer, name in ((__import__("bz2").compress, "bzip2"), (__import__("lzma").compress, "xz")):
        assert decompress(packer(b"") * 500 + packer(raw) + b"\0" * 3, name) == raw


def test_member_count_is_a_setting_named_in_the_413(service):
    body = gzip.compress(b"") * 2_500 + gzip.compress(event_bytes(0))
    expect(service.post_mseed(body), 413, "SEISPICK_MAX_COMPRESSED_MEMBERS", "2,000")
    ok = gzip.compress(b"") * 1_500 + gzip.compress(event_bytes(0))  # a valid body under the limit
    assert service.post_mseed(ok).status_code == 200
    assert len(read_waveform_bytes(body)) == 3  # the CLI's default limit is 10,000
    with pytest.raises(LimitExceededError, match="SEISPICK_MAX_COMPRESSED_MEMBERS"):
        read_waveform_bytes(gzip.compress(b"") * 10_001)


def constant_records(second: int, rate: float = 1e6) -> bytes:
    """A second of zero samples at ``rate`` Hz from 2020-01-01 + ``second``, Steim-2 in 4096-byte records."""
    record = pymseed.MS3Record()
    record.sourceid = "FDSN:XX_FAST__H_H_Z"
    record.starttime = (1_577_836_800 + second) * 10**9
    record.samprate, record.formatversion, record.reclen = rate, 2, 4096
    record.encoding = pymseed.DataEncoding.STEIM2
    return b"".join(record.generate(np.zeros(int(rate), dtype=np.int32), "i"))


# --- samples, segments, windows ----------------------------------------------------------------------------


def test_samples_declared_by_headers_are_refused_before_decoding(service, monkeypatch):
    trace = obspy.Trace(np.zeros(3_000_000, dtype=np.int32))  # 3 s at 1 MHz passes the duration limit
    trace.stats.update(dict(network="XX", station="FAST", channel="HHZ", sampling_rate=1e6))
    trace.stats.starttime = obspy.UTCDateTime(2020, 1, 1)
    plain = to_bytes(obspy.Stream([trace]), encoding="STEIM2", reclen=4096)

    def never(*args, **kwargs):
        raise AssertionError("samples were decoded")

    monkeypatch.setattr(waveforms.pymseed.MS3TraceList, "from_buffer", never)
    response, peak = peak_of(lambda: service.post_mseed(plain))
    expect(
        response, 413, "3,000,000 samples declared by the record headers", "SEISPICK_MAX_SAMPLES", "2,000,000"
    )
    assert peak < 64 * MB, peak
    huge = b"".join(constant_records(second) for second in range(30))  # 30 million samples, 17 MB
    packed = gzip.compress(huge)
    response, peak = peak_of(lambda: service.post_mseed(packed))  # refused while it is unpacked
    expect(response, 413, "counted while unpacking", "SEISPICK_MAX_SAMPLES")
    assert peak < len(huge) // 2, (peak, len(huge))


def test_samples_of_all_multipart_parts_count_together(service):
    stream = event_stream(0)
    parts = b""
    for index in range(3):  # three parts of 27,000 samples: well under the limit
        parts += b'--b\r\nContent-Disposition: form-data; name="files"; filename="%d"\r\n\r\n' % index
        parts += to_bytes(stream) + b"\r\n"
    ok = service.post("/v1/picks", content=parts + b"--b--\r\n",
                      headers={"content-type": "multipart/form-data; boundary=b"})  # fmt: skip
    assert ok.status_code == 200, ok.text
    big = obspy.Stream([tr.copy() for tr in stream])
    for trace in big:
        trace.data = np.tile(trace.data, 30)  # 270,000 samples a channel, 810,000 a part
        trace.stats.sampling_rate = 1000.0  # 270 s: within the duration limit
    thrice = b""
    for index in range(3):
        thrice += b'--b\r\nContent-Disposition: form-data; name="files"; filename="%d"\r\n\r\n' % index
        thrice += to_bytes(big) + b"\r\n"
    refused = service.post("/v1/picks", content=thrice + b"--b--\r\n",
                           headers={"content-type": "multipart/form-data; boundary=b"})  # fmt: skip
    expect(refused, 413, "declared by the record headers", "SEISPICK_MAX_SAMPLES")


def test_a_trace_alternating_value_and_nan_is_refused_before_windowing(service):
    data = np.ones(39_000, dtype=np.float32)
    data[1::2] = np.nan  # one segment per sample
    trace = obspy.Trace(data)
    trace.stats.update(dict(network="XX", station="NAN", channel="HHZ", sampling_rate=100.0))
    trace.stats.starttime = obspy.UTCDateTime(2020, 1, 1)
    body = to_bytes(obspy.Stream([trace]), "SAC")
    response, peak = peak_of(lambda: service.post("/v1/picks", content=body,
                                                  headers={"content-type": "application/x-sac"}))  # fmt: skip
    expect(response, 413, "segments", "SEISPICK_MAX_SEGMENTS")
    assert peak < 64 * MB, peak


def test_windows_per_request_are_a_setting():
    with ServiceHarness(Settings(max_windows=3)) as limited:
        detail = expect(limited.post_mseed(event_bytes(0)), 413, "windows", "SEISPICK_MAX_WINDOWS")
        assert "over the limit of 3 " in detail


# --- corrupt, cut and impossible headers --------------------------------------------------------------------


def int32_records() -> bytes:
    stream = event_stream(0).slice(endtime=event_stream(0)[0].stats.starttime + 30)
    for trace in stream:
        trace.data = trace.data.astype(np.int32)
    return to_bytes(stream, encoding="INT32", reclen=512)


def test_a_record_declaring_more_samples_than_it_holds_is_refused_the_same_way_every_time(service):
    data = bytearray(int32_records())
    struct.pack_into(">H", data, 512 * 3 + 30, 5000)  # the fourth record's sample count: 5000 in 448 bytes
    answers = {service.post_mseed(bytes(data)).text for _ in range(4)}
    assert len(answers) == 1
    expect(service.post_mseed(bytes(data)), 400, "record 4 at byte 1536", "declares 5000 samples")
    with pytest.raises(WaveformFormatError, match="record 4 at byte 1536"):
        read_waveform_bytes(bytes(data), "x.mseed")


def test_a_file_cut_mid_record_is_refused_as_the_readme_says(service, tmp_path):
    data = int32_records()
    cut = data[: 512 * 5 + 100]
    expect(service.post_mseed(cut), 400, "record 6 at byte 2560", "cut short")
    path = tmp_path / "cut.mseed"
    path.write_bytes(cut)
    result = CliRunner().invoke(pick_command, [str(path), "-q"])
    assert result.exit_code == 1 and "cut short" in result.stderr and "Traceback" not in result.stderr
    assert service.post_mseed(data[: 512 * 5]).status_code == 200  # cut at a record boundary: whole records
    assert service.post_mseed(data + b"\0" * 700).status_code == 200  # zero padding after the last record


@pytest.mark.parametrize("year", [0, 1899, 2200, 10208, 65535])
def test_records_with_impossible_years_are_refused_naming_the_field(service, year, tmp_path):
    data = bytearray(int32_records())
    for offset in range(0, len(data), 512):
        struct.pack_into(">H", data, offset + 20, year)
    detail = expect(service.post_mseed(bytes(data)), 400, "record 1 at byte 0")
    assert "year" in detail
    path = tmp_path / "year.mseed"
    path.write_bytes(bytes(data))
    result = CliRunner().invoke(pick_command, [str(path), "-q"])
    assert result.exit_code == 1 and "record 1 at byte 0" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("field,value", [("b", 3.4e38), ("b", -3.4e38), ("delta", 1e-30), ("delta", -0.01)])
def test_sac_headers_that_cannot_be_real_are_a_4xx_and_a_clean_cli_message(service, field, value, tmp_path):
    trace = event_stream(0)[0]
    body = bytearray(to_bytes(obspy.Stream([trace]), "SAC"))
    word = {"delta": 0, "b": 5}[field]
    struct.pack_into("<f", body, 4 * word, value)
    response = service.post("/v1/picks", content=bytes(body), headers={"content-type": "application/x-sac"})
    assert 400 <= response.status_code < 500, response.text
    path = tmp_path / "odd.sac"
    path.write_bytes(bytes(body))
    result = CliRunner().invoke(pick_command, [str(path), "-q"])
    assert result.exit_code == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


# --- miniSEED 3 ---------------------------------------------------------------------------------------------


def test_miniseed3_is_read_wherever_miniseed2_is(service, tmp_path):
    raw = event_bytes(0)
    ms3 = to_mseed3(raw)
    assert ms3[:3] == b"MS\x03"
    ours = read_waveform_bytes(ms3)
    theirs = read_waveform_bytes(raw)
    assert sorted(tr.id for tr in ours) == sorted(tr.id for tr in theirs)
    two = service.post_mseed(raw).json()
    three = service.post_mseed(ms3).json()
    assert [p["id"] for p in three["picks"]] == [p["id"] for p in two["picks"]] and two["picks"]
    assert service.post_mseed(gzip.compress(ms3)).json()["picks"] == three["picks"]
    path = tmp_path / "event.ms3"
    path.write_bytes(ms3)
    result = CliRunner().invoke(pick_command, [str(path), "-q", "--format", "json"])
    assert result.exit_code == 0, result.stderr


# --- an unhandled error -------------------------------------------------------------------------------------


def test_an_unhandled_error_is_a_500_with_connection_close_and_one_logged_request_id(caplog):
    app = create_app(Settings())

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("something\nbroke")

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/boom")

    with caplog.at_level(logging.INFO, logger="seispick.service.api.handlers"):
        response = asyncio.run(call())
    assert response.status_code == 500
    assert response.headers["connection"] == "close"
    request_id = response.headers["x-request-id"]
    assert request_id in response.json()["detail"]
    lines = [r for r in caplog.records if request_id in r.getMessage() and r.levelno >= logging.ERROR]
    assert len(lines) == 1 and "\n" not in lines[0].getMessage() and "RuntimeError" in lines[0].getMessage()
