"""One miniSEED record in, one Trace out: cheap per-record decoding for the real-time sources.

Records are parsed by libmseed through pymseed (miniSEED 2 and 3), with no ObsPy Stream per record (about
5x cheaper than ObsPy's reader on 512-byte records). Bytes that are not a record, records libmseed refuses
and impossible sampling rates raise :class:`RecordError`; records without samples (text, empty) give None.

:func:`segment_trace` is the one place a pymseed record or trace segment becomes an ObsPy Trace (header and
samples): the per-record decoding here and the whole-buffer reading of files and HTTP bodies
(:func:`seispick.picking.waveforms.read_mseed_libmseed`) both use it.
"""

from __future__ import annotations

import io
import math
import struct
from typing import TYPE_CHECKING

import numpy as np
import obspy
import pymseed
from obspy import Trace, UTCDateTime

from seispick.miniseed.constants import MAX_RECORD_SAMPLING_RATE, NS_PER_S

if TYPE_CHECKING:
    from pymseed.mstracelist import MS3TraceSeg

    Segment = pymseed.MS3Record | MS3TraceSeg  # a record, or a contiguous segment of a trace list

try:  # obspy.read() re-parses plugin entry points on every call (~3 ms); the MSEED reader itself is ~0.8 ms
    from obspy.io.mseed.core import _read_mseed
except ImportError:  # pragma: no cover - a future ObsPy without the private reader
    _read_mseed = None

_HEADER_CODES = frozenset(range(0x20, 0x7F)) | {0}
NUMERIC_SAMPLE_TYPES = frozenset("ifd")  # pymseed sample types: int32, float32, float64 ("t" is text)
_MS3_HEADER = 40  # fixed part of a miniSEED 3 header


class RecordError(ValueError):
    """A record that cannot be used: undecodable bytes or an impossible sampling rate."""

    def __init__(self, message: str, kind: str = "decode") -> None:
        super().__init__(message)
        self.kind = kind  # "decode" or "rate"


def is_record_header(data: bytes, pos: int = 0) -> bool:
    """Whether ``data[pos:]`` starts like a miniSEED 2 fixed header (sequence, quality, ASCII codes)
    or a miniSEED 3 one (``MS`` and format version 3)."""
    if data[pos : pos + 3] == b"MS\x03":
        return len(data) - pos >= _MS3_HEADER
    if len(data) - pos < 48:
        return False
    head = data[pos : pos + 20]
    return (
        all(c in b"0123456789 \x00" for c in head[:6])
        and head[6] in b"DRQM"
        and head[7] in b" \x00"
        and all(c in _HEADER_CODES for c in head[8:20])
    )


def record_length(data: bytes, pos: int = 0) -> int | None:
    """Length of the record at ``pos`` (blockette 1000 in miniSEED 2, the header's sizes in miniSEED 3);
    None when it cannot be told."""
    if data[pos : pos + 3] == b"MS\x03":
        if len(data) - pos < _MS3_HEADER:
            return None
        sid_len, extra_len, payload_len = struct.unpack_from("<BHI", data, pos + 33)
        return _MS3_HEADER + sid_len + extra_len + payload_len
    year = struct.unpack_from(">H", data, pos + 20)[0]
    order = ">" if 1900 <= year <= 2200 else "<"
    next_offset = struct.unpack_from(order + "H", data, pos + 46)[0]
    for _ in range(16):
        if next_offset < 48 or pos + next_offset + 8 > len(data):
            return None
        kind, following = struct.unpack_from(order + "HH", data, pos + next_offset)
        if kind == 1000:
            exponent = data[pos + next_offset + 6]
            return 1 << exponent if 7 <= exponent <= 16 else None
        next_offset = following
    return None


def record_source_id(data: bytes) -> tuple[str, str] | None:
    """``(network, station)`` from a raw fixed header, for blaming a record that does not decode."""
    if data[:3] == b"MS\x03" and len(data) >= _MS3_HEADER:
        sid_len = data[33]
        try:
            network, station, _, _ = pymseed.sourceid2nslc(data[40 : 40 + sid_len].decode("ascii"))
        except Exception:
            return None
        return (network, station) if station else None
    if not is_record_header(data):
        return None
    station = data[8:13].decode("ascii", "replace").strip(" \x00")
    network = data[18:20].decode("ascii", "replace").strip(" \x00")
    return (network, station) if station else None


def plausible_rate(rate: float) -> bool:
    """Whether a record's sampling rate can be real: finite, positive, at most ``MAX_RECORD_SAMPLING_RATE``."""
    return math.isfinite(rate) and 0 < rate <= MAX_RECORD_SAMPLING_RATE


def has_samples(segment: Segment) -> bool:
    """Whether a pymseed record or trace segment holds numeric samples (not text, not empty)."""
    return segment.numsamples > 0 and segment.sampletype in NUMERIC_SAMPLE_TYPES


def segment_trace(nslc: tuple[str, str, str, str], segment: Segment) -> Trace:
    """The Trace of a pymseed record or trace segment with numeric samples (see :func:`has_samples`).

    ``nslc`` is ``pymseed.sourceid2nslc`` of its source ID. The samples are copied (the parser reuses its
    buffer) and keep libmseed's type (int32, float32 or float64).
    """
    network, station, location, channel = nslc
    header = {
        "network": network,
        "station": station,
        "location": location,
        "channel": channel,
        "sampling_rate": float(segment.samprate),
        "starttime": UTCDateTime(ns=segment.starttime),
    }
    return Trace(np.array(segment.np_datasamples), header=header)


def read_mseed_bytes(data: bytes) -> obspy.Stream:
    """Decode miniSEED bytes with ObsPy's MSEED reader (without ``obspy.read``'s per-call plugin lookup)."""
    if _read_mseed is None:  # pragma: no cover
        return obspy.read(io.BytesIO(data), format="MSEED")
    return _read_mseed(io.BytesIO(data))


def decode_record(data: bytes) -> Trace | None:
    """Decode one miniSEED record into a Trace; None for records without samples (empty, text).

    Raises :class:`RecordError` for bytes that are not a record and for impossible sampling rates.
    """
    if not is_record_header(data):
        raise RecordError("not a miniSEED record header")
    try:
        records = pymseed.MS3Record.from_buffer(bytes(data), unpack_data=True, validate_crc=True)
        record = next(records, None)
        if record is None:
            raise RecordError("undecodable record: libmseed found no record")
        if not has_samples(record):
            return None
        rate = float(record.samprate)
        nslc = pymseed.sourceid2nslc(record.sourceid)
        if not plausible_rate(rate):  # before the Trace: ObsPy refuses some of these rates (NaN)
            raise RecordError(f"{'.'.join(nslc)}: impossible sampling rate {rate}", kind="rate")
        return segment_trace(nslc, record)
    except RecordError:
        raise
    except Exception as exc:
        raise RecordError(f"undecodable record: {exc}") from exc
    finally:
        pymseed.clear_error_messages()


def trace_end_ns(trace: Trace) -> int:
    """Time just after the last sample (start + npts / rate), in epoch ns."""
    return trace.stats.starttime.ns + round(trace.stats.npts * NS_PER_S / trace.stats.sampling_rate)
