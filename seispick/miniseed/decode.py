"""One miniSEED record in, one Trace out: cheap per-record decoding for the real-time sources.

Records are parsed by libmseed through pymseed (miniSEED 2 and 3), with no ObsPy Stream per record (about
5x cheaper than ObsPy's reader on 512-byte records). Bytes that are not a record, records libmseed refuses
and impossible sampling rates raise :class:`RecordError`; records without samples (text, empty) give None.

:func:`fast_trace` is the one place decoded samples become an ObsPy Trace (the Trace ObsPy would build, without
its per-key ``Stats`` bookkeeping): the per-record decoding here and, through :func:`segment_trace` (a pymseed
record or trace segment), the whole-buffer reading of files and HTTP bodies
(:func:`seispick.picking.waveforms.read_mseed_libmseed`) both use it. :func:`scan_records` checks every record
header of a whole buffer before anything is decoded (what libmseed refuses, cut records, impossible times, rates
and sample counts; the samples declared), so a reader can refuse it at once, naming the record.
"""

from __future__ import annotations

import io
import itertools
import math
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import obspy
import pymseed
from obspy import Trace, UTCDateTime
from obspy.core.trace import Stats

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
# Record start and end times outside these years are corrupt headers (and beyond what ObsPy's times and the
# absolute sample grid can hold): the same bounds for every format read.
EARLIEST_YEAR, LATEST_YEAR = 1900, 2199
EARLIEST_NS = int(UTCDateTime(EARLIEST_YEAR, 1, 1).ns)
LATEST_NS = int(UTCDateTime(LATEST_YEAR + 1, 1, 1).ns)
# The most samples one byte of encoded data can hold, per libmseed encoding code (Steim-2: 7 per 32-bit
# word); a record declaring more than its data bytes can hold is corrupt. Unknown codes: libmseed decides.
_SAMPLES_PER_BYTE = {
    0: 1.0,
    1: 0.5,
    3: 0.25,
    4: 0.25,
    5: 0.125,
    10: 1.0,
    11: 1.75,
    12: 1 / 3,
    13: 0.5,
    14: 0.5,
}
_LISTED_REFUSALS = 3  # records named in a refusal; the others are counted


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
    if len(data) - pos < 48:
        return None
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
    return fast_trace(np.array(segment.np_datasamples), nslc, float(segment.samprate), int(segment.starttime))


def fast_trace(data: np.ndarray, nslc: tuple[str, str, str, str], rate: float, start_ns: int) -> Trace:
    """``Trace(data, header)`` for these codes, rate and start without ObsPy's per-key ``Stats`` bookkeeping
    (a third of a record's decoding): the same ``Stats`` (delta and endtime derived as ObsPy derives them)."""
    network, station, location, channel = nslc
    delta = 1.0 / rate if rate else 0.0
    npts = int(data.size)
    timediff = 0 if npts == 0 else float(npts - 1) * delta
    stats = Stats.__new__(Stats)
    stats.__dict__.update(
        sampling_rate=rate,
        delta=delta,
        starttime=UTCDateTime(ns=start_ns),
        endtime=UTCDateTime(ns=start_ns + int(round(timediff * 1e9))),
        npts=npts,
        calib=1.0,
        network=network,
        station=station,
        location=location,
        channel=channel,
    )
    trace = Trace.__new__(Trace)
    trace.__dict__.update(stats=stats, data=data)
    return trace


_NSLC: dict[str, tuple[str, str, str, str]] = {}  # source ID -> its codes (every record asks)
_NSLC_MAX = 100_000


def source_nslc(sourceid: str) -> tuple[str, str, str, str]:
    """``pymseed.sourceid2nslc``, remembered per source ID."""
    nslc = _NSLC.get(sourceid)
    if nslc is None:
        if len(_NSLC) >= _NSLC_MAX:
            _NSLC.clear()
        nslc = _NSLC[sourceid] = tuple(pymseed.sourceid2nslc(sourceid))
    return nslc


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
        if record.numsamples <= 0 or record.sampletype not in NUMERIC_SAMPLE_TYPES:  # has_samples
            return None
        rate = float(record.samprate)
        nslc = source_nslc(record.sourceid)
        if not plausible_rate(rate):  # before the Trace: ObsPy refuses some of these rates (NaN)
            raise RecordError(f"{'.'.join(nslc)}: impossible sampling rate {rate}", kind="rate")
        return fast_trace(np.array(record.np_datasamples), nslc, rate, int(record.starttime))  # segment_trace
    except RecordError:
        pymseed.clear_error_messages()
        raise
    except Exception as exc:
        pymseed.clear_error_messages()  # (a decode that succeeds leaves none: each pymseed call starts clean)
        raise RecordError(f"undecodable record: {exc}") from exc


@dataclass
class BufferScan:
    """What the record headers of a buffer declare: records, numeric samples, and the records refused."""

    records: int = 0
    samples: int = 0  # declared by records with numeric samples
    end: int = 0  # where the last record ends (zero padding may follow)
    refused: list[str] = field(default_factory=list)  # the first few, worded
    refused_count: int = 0

    def refuse(self, index: int, offset: int, where: str, reason: str) -> None:
        self.refused_count += 1
        if len(self.refused) < _LISTED_REFUSALS:
            self.refused.append(f"record {index + 1} at byte {offset}{where}: {reason}")

    def problem(self) -> str | None:
        """The refusal message (None when every record is usable)."""
        if not self.refused_count:
            return None
        more = self.refused_count - len(self.refused)
        tail = f"; and {more} more" if more > 0 else ""
        total = self.records + (0 if self.records >= self.refused_count else self.refused_count)
        return f"{self.refused_count} of {total} record(s) refused: " + "; ".join(self.refused) + tail


def scan_records(data: bytes | memoryview) -> BufferScan:
    """Check every record header of a miniSEED (2 or 3) buffer with libmseed, decoding no samples.

    A record is refused when libmseed refuses it, when the data end inside it (cut short), when its start or
    end time lies outside ``EARLIEST_YEAR``..``LATEST_YEAR``, when it has samples but no positive finite
    sampling rate, or when it declares more samples than its data bytes can hold. After a refused record the
    scan goes on at the next record when its length can be told. Zero bytes after the last record are padding.
    """
    scan, view, offset, index = BufferScan(), memoryview(data).cast("B"), 0, 0
    while offset < len(view):
        advanced = offset
        try:
            for record in pymseed.MS3Record.from_buffer(view[offset:], unpack_data=False, validate_crc=True):
                reason = _header_problem(record)
                if reason is None:
                    scan.records += 1
                    if record.encoding != 0 and record.samplecnt > 0:
                        scan.samples += int(record.samplecnt)
                else:
                    scan.refuse(index, advanced, _where(record.sourceid), reason)
                advanced += int(record.reclen)
                index += 1
            scan.end = advanced
            break
        except Exception as exc:  # noqa: BLE001 - libmseed's refusal of the record at ``advanced``
            if not any(view[advanced : advanced + 4096]) and not view[advanced:].tobytes().strip(b"\0"):
                scan.end = advanced
                break  # zero padding after the last record
            cut = getattr(exc, "status_code", None) == pymseed.clibmseed.MS_ENDOFFILE
            reason = _libmseed_reason(exc) if not cut else _cut_reason(view, advanced)
            head = view[advanced : advanced + 64].tobytes()
            sid = record_source_id(head)
            field_problem = _raw_time_problem(head)
            if field_problem and not cut:
                reason = f"{field_problem}; {reason}"
            scan.refuse(index, advanced, f" ({'.'.join(sid)})" if sid else "", reason)
            index += 1
            length = None if cut else record_length(view[advanced : advanced + 4096].tobytes())
            if length is None:
                break  # the rest cannot be told apart into records
            offset = advanced + length
        finally:
            pymseed.clear_error_messages()
    return scan


class SampleTally:
    """The samples the records of a miniSEED byte stream declare, counted as the stream arrives in pieces
    (while it is unpacked), without keeping it: an early, cheap count; :func:`scan_records` is the check.

    Counting stops (the total stays where it is) at bytes whose record length cannot be told.
    """

    HEAD = 128  # header bytes looked at per record (blockette 1000 follows the fixed header)

    def __init__(self) -> None:
        self.total = 0
        self._skip = 0  # bytes of the current record still to pass over
        self._head = bytearray()
        self._counting = True

    def feed(self, piece: bytes) -> int:
        """Count the records that ``piece`` completes the header of; the running total."""
        view, pos = memoryview(piece), 0
        while self._counting and pos < len(view):
            if self._skip:
                step = min(self._skip, len(view) - pos)
                self._skip, pos = self._skip - step, pos + step
                continue
            take = min(self.HEAD - len(self._head), len(view) - pos)
            self._head += view[pos : pos + take]
            pos += take
            while self._counting and len(self._head) >= self.HEAD:
                self._count_record()
        return self.total

    def _count_record(self) -> None:
        head = bytes(self._head)
        length = record_length(head) if is_record_header(head) else None
        if length is None:
            self._counting = False
            return
        if head[:3] == b"MS\x03":
            self.total += struct.unpack_from("<I", head, 24)[0]
        else:
            year = struct.unpack_from(">H", head, 20)[0]
            self.total += struct.unpack_from(">H" if 1900 <= year <= 2200 else "<H", head, 30)[0]
        if length >= len(head):
            self._skip, self._head = length - len(head), bytearray()
        else:
            self._head = bytearray(head[length:])


def first_undecodable(data: bytes | memoryview) -> str | None:
    """``record N at byte B (NET.STA...): <libmseed's reason>`` for the first record whose samples libmseed does
    not decode (headers already checked by :func:`scan_records`); None when all decode."""
    offset = 0
    records = pymseed.MS3Record.from_buffer(data, unpack_data=True, validate_crc=True)
    for index in itertools.count():
        try:
            record = next(records, None)
        except Exception as exc:  # noqa: BLE001 - libmseed's refusal to unpack this record
            sid = record_source_id(memoryview(data)[offset : offset + 64].tobytes())
            where = f" ({'.'.join(sid)})" if sid else ""
            return f"record {index + 1} at byte {offset}{where}: its samples do not decode ({_libmseed_reason(exc)})"
        finally:
            pymseed.clear_error_messages()
        if record is None:
            return None
        offset += int(record.reclen)
    return None


def _where(sourceid: str) -> str:
    try:
        return f" ({'.'.join(pymseed.sourceid2nslc(sourceid))})"
    except Exception:  # noqa: BLE001 - an unusual source ID is still named as it is
        return f" ({sourceid[:40]!r})"


def _header_problem(record: pymseed.MS3Record) -> str | None:
    """Why a record libmseed parsed is unusable, naming the header field; None when it is usable."""
    start = int(record.starttime)
    if not EARLIEST_NS <= start < LATEST_NS:
        return f"start time (header fields year/day) outside the years {EARLIEST_YEAR}-{LATEST_YEAR}"
    count = int(record.samplecnt)
    if record.encoding == 0 or count <= 0:
        return None  # text or no samples: left out when decoded
    rate = float(record.samprate)
    if not (math.isfinite(rate) and rate > 0):
        return f"sampling rate {rate:g} with {count} samples (header sample rate fields)"
    capacity = _SAMPLES_PER_BYTE.get(int(record.encoding))
    if capacity is not None and count > int(record.datalength) * capacity + 1:
        return f"declares {count} samples, more than its {record.datalength} data bytes hold (header sample count)"
    if start + count / rate * NS_PER_S >= LATEST_NS:
        return f"ends after {LATEST_YEAR} ({count} samples at {rate:g} Hz; header sample count and rate)"
    return None


def _raw_time_problem(head: bytes) -> str | None:
    """The header's year or day-of-year when out of range in either byte order (libmseed then refuses the
    record, or guesses its byte order from them), naming the field; None otherwise."""
    if head[:3] == b"MS\x03" and len(head) >= 12:
        year, day = struct.unpack_from("<HH", head, 8)
        orders = [(year, day)]
    elif len(head) >= 24:
        orders = [struct.unpack_from(order + "HH", head, 20) for order in "><"]
    else:
        return None
    if any(EARLIEST_YEAR <= y <= LATEST_YEAR and 1 <= d <= 366 for y, d in orders):
        return None
    year, day = orders[0]
    if not EARLIEST_YEAR <= year <= LATEST_YEAR:
        return f"header field year holds {year} (accepted: {EARLIEST_YEAR}-{LATEST_YEAR})"
    return f"header field day of year holds {day} (accepted: 1-366)"


def _libmseed_reason(exc: Exception) -> str:
    text = " ".join(str(exc).split())[:160] or type(exc).__name__
    return f"libmseed refuses it ({text})"


def _cut_reason(view: memoryview, offset: int) -> str:
    remaining = len(view) - offset
    length = record_length(view[offset : offset + 4096].tobytes())
    if length is not None and length > remaining:
        return f"cut short: the data end {remaining} bytes into a record of {length} bytes"
    return f"cut short: the data end {remaining} bytes into it"


def trace_end_ns(trace: Trace) -> int:
    """Time just after the last sample (start + npts / rate), in epoch ns."""
    return trace.stats.starttime.ns + round(trace.stats.npts * NS_PER_S / trace.stats.sampling_rate)
