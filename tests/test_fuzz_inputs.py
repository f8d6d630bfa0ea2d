"""Fuzzed waveform bodies through ``POST /v1/picks`` and the CLI's reader (issue 19).

Mutated miniSEED 2 and 3, SAC and gzip bodies (bit flips, cuts at and between record boundaries, extreme header
fields: years, days, rates, sample counts, encodings, lengths, SAC floats and ints), from a derandomized
hypothesis (the same examples every run). The invariant, per body: the service answers 200 or a 4xx with a
reason, never a 5xx, the same answer twice; the CLI's reader (``read_waveform_bytes`` then ``prepare``)
gives traces or a ``ValueError`` with a message, the same twice; and the peak RSS of a request stays within
``RSS_BOUND`` above what the process held before it.

``SEISPICK_FUZZ_EXAMPLES`` sets the examples per body kind (default 120: about 15 s on two cores).
"""

from __future__ import annotations

import gzip
import io
import os
import struct
from pathlib import Path

import numpy as np
import obspy
import pymseed
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from service_harness import ServiceHarness, event_stream

from seispick.models.registry import DEFAULT_MODEL, ModelRegistry
from seispick.picking.annotate import NoUsableDataError, prepare
from seispick.picking.waveforms import read_waveform_bytes
from seispick.service.settings import Settings

FUZZ = settings(
    max_examples=int(os.environ.get("SEISPICK_FUZZ_EXAMPLES", "120")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
pytestmark = [
    pytest.mark.filterwarnings("ignore::obspy.io.mseed.InternalMSEEDWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),
]
RSS_BOUND = 400 << 20  # bytes a single request may add to the process's resident memory at its peak
RECLEN = 512


# --- seed bodies --------------------------------------------------------------------------------------------


def _stream() -> obspy.Stream:
    stream = event_stream(0)
    stream = stream.slice(endtime=stream[0].stats.starttime + 20)
    for trace in stream:
        trace.data = trace.data.astype(np.int32)
    return stream


def _write(stream: obspy.Stream, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    stream.write(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


_CRC_TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC_TABLE.append(_c)


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def with_crc(record: bytearray) -> bytearray:
    """A miniSEED 3 record with its CRC recomputed (so that mutated fields reach the checks behind it)."""
    struct.pack_into("<I", record, 28, 0)
    struct.pack_into("<I", record, 28, crc32c(bytes(record)))
    return record


def _mseed3(data: bytes) -> bytes:
    out = []
    for record in pymseed.MS3Record.from_buffer(data, unpack_data=True):
        copy = pymseed.MS3Record()
        copy.sourceid, copy.starttime, copy.samprate = record.sourceid, record.starttime, record.samprate
        copy.formatversion, copy.reclen, copy.encoding = 3, RECLEN, record.encoding
        out += list(copy.generate(np.array(record.np_datasamples), record.sampletype))
    return b"".join(out)


STREAM = _stream()
MS2 = _write(STREAM, "MSEED", encoding="STEIM2", reclen=RECLEN)
MS2_INT = _write(STREAM, "MSEED", encoding="INT32", reclen=RECLEN)
MS3 = _mseed3(MS2)
SAC = _write(obspy.Stream([STREAM[0]]), "SAC")


def _offsets(data: bytes) -> list[int]:
    """Where each record starts (miniSEED 3 records are as long as their data, not a fixed length)."""
    offsets, at = [], 0
    for record in pymseed.MS3Record.from_buffer(data):
        offsets.append(at)
        at += record.reclen
    return offsets


SEEDS = {"ms2": MS2, "ms2-int": MS2_INT, "ms3": MS3, "sac": SAC, "gzip": MS2}
STARTS = {kind: _offsets(data) if kind != "sac" else [0] for kind, data in SEEDS.items()}

# (offset in the record, struct format) of fixed-header fields, and values at and past their ends.
MS2_FIELDS = {
    "year": (20, ">H"), "day": (22, ">H"), "hour": (24, "B"), "second": (26, "B"), "fraction": (28, ">H"),
    "samples": (30, ">H"), "rate factor": (32, ">h"), "rate multiplier": (34, ">h"), "blockettes": (39, "B"),
    "time correction": (40, ">i"), "data offset": (44, ">H"), "blockette offset": (46, ">H"),
    "blockette type": (48, ">H"), "encoding": (52, "B"), "byte order": (53, "B"), "record length": (54, "B"),
}  # fmt: skip
MS3_FIELDS = {
    "flags": (3, "B"), "nanoseconds": (4, "<I"), "year": (8, "<H"), "day": (10, "<H"), "hour": (12, "B"),
    "second": (14, "B"), "encoding": (15, "B"), "rate": (16, "<d"), "samples": (24, "<I"),
    "version": (32, "B"), "sid length": (33, "B"), "extra length": (34, "<H"), "data length": (36, "<I"),
}  # fmt: skip
SAC_FLOATS = {"delta": 0, "depmin": 1, "scale": 3, "b": 5, "e": 6, "o": 7}
SAC_INTS = {"nzyear": 70, "nzjday": 71, "nzhour": 72, "nzsec": 74, "nzmsec": 75, "nvhdr": 76, "npts": 79,
            "iftype": 85, "leven": 105}  # fmt: skip
INTS = st.sampled_from([0, 1, 2, 7, 100, 127, 128, 255, 366, 367, 1899, 2200, 10208, 32767, 32768, 65535,
                        2**31 - 1, 2**31, 2**32 - 1])  # fmt: skip
FLOATS = st.sampled_from([0.0, -0.0, 1e-300, -1.0, 1e-30, 1e30, 3.4e38, -3.4e38, 1e308, float("nan"),
                          float("inf"), float("-inf"), 1e6, 0.001])  # fmt: skip


def _pack(fmt: str, value: float | int) -> bytes:
    if fmt.endswith("d") or fmt.endswith("f"):
        return struct.pack(fmt, float(value))
    size = struct.calcsize(fmt)
    return (int(value) % (1 << (8 * size))).to_bytes(size, "little" if fmt.startswith("<") else "big")


@st.composite
def mutated(draw, kind: str) -> bytes:
    """A seed body of ``kind`` with a few mutations."""
    data = bytearray(SEEDS[kind])
    starts = STARTS[kind]
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "field", "field", "cut-at", "cut-in"]))
        if op == "flip":
            position = draw(st.integers(0, len(data) - 1))
            if draw(st.booleans()):
                position %= 64  # mostly headers
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut-at":
            data = data[: ([*starts[1:], len(data)])[draw(st.integers(0, len(starts) - 1))]]
        elif op == "cut-in":
            data = data[: draw(st.integers(1, len(data)))]
        elif kind.startswith("ms") or kind == "gzip":
            fields = MS3_FIELDS if kind == "ms3" else MS2_FIELDS
            offset, fmt = fields[draw(st.sampled_from(sorted(fields)))]
            value = draw(FLOATS if fmt.endswith("d") else INTS)
            index = draw(st.integers(0, len(starts) - 1))
            record = starts[index]
            raw = _pack(fmt, value)
            data[record + offset : record + offset + len(raw)] = raw
            end = ([*starts[1:], len(SEEDS[kind])])[index]
            if kind == "ms3" and draw(st.booleans()) and len(data) >= end:
                data[record:end] = with_crc(data[record:end])
        else:  # sac
            name = draw(st.sampled_from(sorted(SAC_FLOATS) + sorted(SAC_INTS)))
            if name in SAC_FLOATS:
                at = 4 * SAC_FLOATS[name]
                with np.errstate(over="ignore"):
                    data[at : at + 4] = np.array([draw(FLOATS)], dtype="<f4").tobytes()
            else:
                data[4 * SAC_INTS[name] : 4 * SAC_INTS[name] + 4] = _pack("<i", draw(INTS))
        if not data:
            data = bytearray(b"\0")
    if kind == "gzip":
        packed = gzip.compress(bytes(data))
        members = draw(st.integers(0, 3))
        packed = gzip.compress(b"") * members + packed
        if draw(st.booleans()):
            cut = bytearray(packed)
            cut[draw(st.integers(0, len(cut) - 1))] ^= 1 << draw(st.integers(0, 7))
            packed = bytes(cut[: draw(st.integers(1, len(cut)))])
        return packed
    return bytes(data)


# --- the invariant ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def service():
    with ServiceHarness(Settings(max_samples=2_000_000)) as harness:
        yield harness


@pytest.fixture(scope="module")
def card():
    return ModelRegistry().load(DEFAULT_MODEL).card


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    """Reset the process's peak RSS (VmHWM) to its current RSS; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def answer(service: ServiceHarness, body: bytes) -> tuple[int, str]:
    """The service's answer, checked against the invariant, and the peak RSS it added."""
    before = _status_kb("VmRSS")
    exact = _reset_peak()
    response = service.post_mseed(body)
    if exact:
        added = (_status_kb("VmHWM") - before) << 10
        assert added < RSS_BOUND, f"a request added {added >> 20} MiB at its peak"
    assert response.status_code == 200 or 400 <= response.status_code < 500, response.text
    if response.status_code != 200:
        assert response.json()["detail"]
    return response.status_code, response.text


def read_like_the_cli(body: bytes, card) -> str:
    """What the CLI's reader makes of ``body``: the traces and windows, or the message refusing it."""
    try:
        stream = read_waveform_bytes(body, "fuzz.bin")
        job = prepare(stream, card)
    except (ValueError, NoUsableDataError) as exc:
        assert str(exc)
        return f"refused: {exc}"
    return f"{sorted(tr.id for tr in stream)} {job.n_windows} windows"


def check(service: ServiceHarness, card, body: bytes) -> None:
    first = answer(service, body)
    assert answer(service, body) == first
    cli = read_like_the_cli(body, card)
    assert read_like_the_cli(body, card) == cli


@pytest.mark.parametrize("kind", sorted(SEEDS))
@FUZZ
@given(data=st.data())
def test_fuzzed_bodies_get_200_or_a_4xx_the_same_twice_in_bounded_memory(service, card, kind, data):
    check(service, card, data.draw(mutated(kind), label=kind))


def test_the_seed_bodies_are_valid(service, card):
    for body in (MS2, MS2_INT, MS3, SAC, gzip.compress(MS2)):
        assert answer(service, body)[0] == 200
        assert "windows" in read_like_the_cli(body, card)
    first = bytearray(MS3[: STARTS["ms3"][1]])
    assert with_crc(bytearray(first)) == first  # the CRC is libmseed's
