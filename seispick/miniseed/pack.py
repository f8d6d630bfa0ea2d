"""miniSEED helpers for the SeedLink replay server.

Loads an archive with ObsPy, re-packs every trace into 512-byte miniSEED 2 records (big-endian), shifts
record times in place (for re-stamping and looping) and builds the ASCII records that carry SeedLink INFO
XML. Times are integer nanoseconds since the epoch throughout.
"""

from __future__ import annotations

import io
import logging
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import obspy
from obspy import Stream, Trace

from seispick.miniseed.constants import NS_PER_S, RECLEN, TICK_NS

logger = logging.getLogger(__name__)

_BTIME = struct.Struct(">HHBBBBH")  # year, day of year, hour, minute, second, unused, 0.0001 s
_BTIME_OFFSET = 20
_NSAMP = struct.Struct(">H")
_NSAMP_OFFSET = 30
_STEIM2_MAX_DIFF = 2**29  # Steim2 stores first differences in at most 30 signed bits
_TEXT_DATA_OFFSET = 56  # 48-byte fixed header + 8-byte blockette 1000
_TEXT_PER_RECORD = RECLEN - _TEXT_DATA_OFFSET


@dataclass(frozen=True, slots=True)
class MseedRecord:
    """One 512-byte miniSEED record and the stream/time facts the server needs about it."""

    network: str
    station: str
    location: str
    channel: str
    start_ns: int  # time of the first sample
    end_ns: int  # time just after the last sample: start + npts / sampling rate
    data: bytes  # exactly RECLEN bytes


def find_files(paths: Iterable[str | Path]) -> list[tuple[Path, bool]]:
    """Expand files and directories (recursively) into ``(file, explicit)`` pairs, sorted per argument."""
    found: list[tuple[Path, bool]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend((p, False) for p in sorted(path.rglob("*")) if p.is_file())
        elif path.is_file():
            found.append((path, True))
        else:
            raise FileNotFoundError(f"no such file or directory: {path}")
    return found


def read_archive(paths: Iterable[str | Path]) -> Stream:
    """Read every waveform file under ``paths`` with ObsPy.

    Files named explicitly must be readable; unreadable files found inside directories are skipped.
    Raises ``ValueError`` when no data at all was found.
    """
    stream = Stream()
    for path, explicit in find_files(paths):
        try:
            stream += obspy.read(str(path))
        except Exception as exc:
            if explicit:
                raise ValueError(f"cannot read {path} as waveform data: {exc}") from exc
            logger.debug("skipping %s: %s", path, exc)
    if not stream:
        raise ValueError("no waveform data found in the given paths")
    try:
        stream.merge(method=-1)  # joins only exactly contiguous pieces, never fills or alters samples
    except Exception as exc:  # mixed dtypes or sampling rates for one id: keep the pieces as they are
        logger.debug("not merging archive traces: %s", exc)
    stream = stream.split()  # masked arrays (gaps) become separate traces
    stream.sort()
    return stream


def choose_encoding(data: np.ndarray) -> tuple[np.ndarray, str]:
    """Pick a lossless miniSEED encoding: STEIM2 (or INT32) for integers, FLOAT32 or FLOAT64 for floats."""
    if data.dtype.kind in "iu":
        if data.size and (data.min() < np.iinfo(np.int32).min or data.max() > np.iinfo(np.int32).max):
            raise ValueError("integer samples exceed the 32-bit range of miniSEED")
        ints = np.ascontiguousarray(data, dtype=np.int32)
        diffs = np.diff(ints.astype(np.int64))
        if diffs.size and np.abs(diffs).max() >= _STEIM2_MAX_DIFF:
            return ints, "INT32"
        return ints, "STEIM2"
    if data.dtype.kind == "f":
        as32 = np.ascontiguousarray(data, dtype=np.float32)
        if data.dtype == np.float32 or np.array_equal(as32.astype(data.dtype), data, equal_nan=True):
            return as32, "FLOAT32"
        return np.ascontiguousarray(data, dtype=np.float64), "FLOAT64"
    raise ValueError(f"unsupported sample type {data.dtype}")


def pack_trace(trace: Trace) -> list[MseedRecord]:
    """Re-pack one trace into 512-byte records with ObsPy; record times follow from the sample counts."""
    rate = float(trace.stats.sampling_rate)
    if trace.stats.npts == 0 or rate <= 0:
        return []
    data, encoding = choose_encoding(trace.data)
    buffer = io.BytesIO()
    Trace(data=data, header=trace.stats.copy()).write(
        buffer, format="MSEED", reclen=RECLEN, encoding=encoding, byteorder=">"
    )
    raw = buffer.getvalue()
    t0 = trace.stats.starttime.ns
    net, sta, loc, cha = (trace.stats.network, trace.stats.station, trace.stats.location, trace.stats.channel)
    records, done = [], 0
    for offset in range(0, len(raw), RECLEN):
        record = raw[offset : offset + RECLEN]
        nsamp = _NSAMP.unpack_from(record, _NSAMP_OFFSET)[0]
        start = t0 + round(done * NS_PER_S / rate)
        done += nsamp
        records.append(MseedRecord(net, sta, loc, cha, start, t0 + round(done * NS_PER_S / rate), record))
    if done != trace.stats.npts:
        raise RuntimeError(f"{trace.id}: packed {done} of {trace.stats.npts} samples")
    return records


def pack_stream(stream: Stream) -> list[MseedRecord]:
    """Pack every trace of ``stream``; traces that cannot be packed (e.g. text channels) are skipped."""
    records: list[MseedRecord] = []
    for trace in stream:
        try:
            records.extend(pack_trace(trace))
        except ValueError as exc:
            logger.warning("skipping %s: %s", trace.id, exc)
    return records


def load_records(paths: Iterable[str | Path]) -> list[MseedRecord]:
    """Read an archive and re-pack it as 512-byte records (unsorted)."""
    records = pack_stream(read_archive(paths))
    if not records:
        raise ValueError("the archive holds no packable waveform data")
    return records


def round_to_tick(ns: int) -> int:
    """Round a time offset to a whole number of BTIME ticks (100 microseconds)."""
    return round(ns / TICK_NS) * TICK_NS


def shift_record(record: bytes, shift_ns: int) -> bytes:
    """Return ``record`` with its start time moved by ``shift_ns`` (a multiple of 100 microseconds).

    Only the BTIME field changes; the sub-tick remainder in blockette 1001, if any, stays valid.
    """
    if shift_ns == 0:
        return record
    if shift_ns % TICK_NS:
        raise ValueError("record shifts must be whole multiples of 100 microseconds")
    year, yday, hour, minute, second, _, ticks = _BTIME.unpack_from(record, _BTIME_OFFSET)
    start = datetime(year, 1, 1) + timedelta(
        days=yday - 1, hours=hour, minutes=minute, seconds=second, microseconds=ticks * 100
    )
    new = start + timedelta(microseconds=shift_ns // 1000)
    out = bytearray(record)
    fields = (new.year, new.timetuple().tm_yday, new.hour, new.minute, new.second, 0, new.microsecond // 100)
    _BTIME.pack_into(out, _BTIME_OFFSET, *fields)
    return bytes(out)


def text_records(text: str, channel: str = "INF") -> list[bytes]:
    """Pack ASCII ``text`` into 512-byte miniSEED records (station INFO, network XX), as INFO packets use."""
    payload = text.encode("ascii", "replace")
    chunks = [payload[i : i + _TEXT_PER_RECORD] for i in range(0, len(payload), _TEXT_PER_RECORD)] or [b""]
    now = datetime.now(timezone.utc)
    btime = (now.year, now.timetuple().tm_yday, now.hour, now.minute, now.second, 0, now.microsecond // 100)
    records = []
    for number, chunk in enumerate(chunks, start=1):
        header = bytearray(_TEXT_DATA_OFFSET)
        header[0:20] = b"%06dD INFO   %-3sXX" % (number % 1_000_000, channel.encode("ascii")[:3])
        _BTIME.pack_into(header, _BTIME_OFFSET, *btime)
        # nsamp, rate factor/multiplier, flags x3, 1 blockette, time correction, data offset, blockette offset
        struct.pack_into(">HhhBBBBiHH", header, 30, len(chunk), 0, 0, 0, 0, 0, 1, 0, _TEXT_DATA_OFFSET, 48)
        struct.pack_into(">HHBBBB", header, 48, 1000, 0, 0, 1, 9, 0)  # ASCII, big-endian, 2**9 bytes
        records.append(bytes(header) + chunk.ljust(_TEXT_PER_RECORD, b"\x00"))
    return records
