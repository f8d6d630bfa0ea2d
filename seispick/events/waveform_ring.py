"""A bounded ring of recent waveforms per station, for amplitudes (live ML) of events that are still forming.

The service keeps no waveforms: its pickers hold only their model windows. ``WaveformRing`` keeps the last
``seconds`` of each channel (by the channel's own newest sample), as the records arrive, in the samples' own
type (int32 counts from STEIM2, float32 or float64), so that ``stream()`` gives back exactly the samples that
were added: the same bytes, so the same answer as the offline path that reads the same data from files.

Memory. A channel holds at most ``seconds * sampling_rate + 1`` samples; a station of 3 channels at 100 Hz of
4-byte samples (int32 or float32) holds ``3 * 100 * 4 * seconds`` bytes: 432,000 bytes for 360 s, 432 MB for
1,000 such stations (288 MB when only the horizontals are kept, as ``live_magnitude.live_magnitudes`` does).
Whatever the stations, the samples held (``nbytes``) never exceed ``max_bytes``: past it, data older than the
ring's newest sample minus ``seconds`` goes first (stations that fell silent), then the oldest samples of the
stations holding the most, until all are at most ``max_bytes`` less 1/32 of it (each station cut to the same
level, "water-filling": a small station keeps all it has). ``nbytes`` counts sample bytes; the bookkeeping adds
about 150 bytes of Python objects per stored record (a 512-byte STEIM2 record holds 100-500 int32 samples).

Records are appended to the channel's last segment when they continue it (start within half a sample of its
end, same rate and sample type); a gap starts a new segment (returned as a separate trace); the samples of a
record that overlap what the channel already holds are dropped (a repeated or out-of-order record adds only
what is new), counted in ``overlap_samples``. The ring is thread-safe (records are added on the event loop while
association reads it in a worker thread). Pure: ObsPy and NumPy only.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from obspy import Stream, Trace, UTCDateTime

from seispick.events.stations import station_key as station_of

NS = 1_000_000_000
CHUNK_SAMPLES = 4096  # a longer trace is stored in pieces of this many samples (cheap partial drops)


@dataclass
class _Segment:
    """Contiguous samples of one channel: chunks of arrays; sample k is at origin + k / rate."""

    origin_ns: int  # time of sample 0 of the segment as first stored (before any drop)
    rate: float
    dtype: np.dtype
    dropped: int = 0  # samples dropped from the head since origin
    chunks: list[np.ndarray] = field(default_factory=list)
    npts: int = 0
    nbytes: int = 0

    def time_ns(self, k: int) -> int:
        """Time of the segment's sample ``k`` counted from its origin (including dropped samples)."""
        return self.origin_ns + round(k * NS / self.rate)

    @property
    def start_ns(self) -> int:
        return self.time_ns(self.dropped)

    @property
    def end_ns(self) -> int:
        """Time just after the last sample (where a continuing record starts)."""
        return self.time_ns(self.dropped + self.npts)

    def append(self, data: np.ndarray) -> None:
        for i in range(0, len(data), CHUNK_SAMPLES):
            piece = np.array(data[i : i + CHUNK_SAMPLES], copy=True)
            self.chunks.append(piece)
            self.npts += len(piece)
            self.nbytes += piece.nbytes

    def drop_head(self, n: int) -> int:
        """Drop the first ``n`` samples (at most all); bytes freed."""
        freed = 0
        while n > 0 and self.chunks:
            head = self.chunks[0]
            if len(head) <= n:
                self.chunks.pop(0)
                k = len(head)
            else:
                self.chunks[0] = head[n:].copy()  # a copy: the view would keep the whole chunk alive
                k = n
            n -= k
            self.npts -= k
            self.dropped += k
            freed += k * head.itemsize
        self.nbytes -= freed
        return freed

    def samples_before(self, t_ns: int) -> int:
        """How many samples of the segment lie before ``t_ns``."""
        k = math.ceil((t_ns - self.origin_ns) * self.rate / NS - 1e-6) - self.dropped
        return min(max(k, 0), self.npts)


class WaveformRing:
    """The last ``seconds`` of every channel added, at most ``max_bytes`` of samples in all (module docstring).

    ``select(trace_id)``, when given, says which channels to keep (others are ignored on ``add``).
    """

    def __init__(self, seconds: float, max_bytes: int, select: Callable[[str], bool] | None = None) -> None:
        if not seconds > 0:
            raise ValueError(f"seconds must be positive, not {seconds}")
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, not {max_bytes}")
        self.seconds = float(seconds)
        self.max_bytes = int(max_bytes)
        self.select = select
        self._channels: dict[str, dict[str, list[_Segment]]] = {}  # NET.STA -> trace id -> segments
        self._station_bytes: dict[str, int] = {}
        self._nbytes = 0
        self._newest_ns: int | None = None
        self._lock = threading.Lock()
        self.records = 0  # traces added (kept channels)
        self.ignored = 0  # traces of channels not selected
        self.overlap_samples = 0  # samples dropped as already held (repeated or out-of-order records)
        self.expired_bytes = 0  # dropped as older than ``seconds``
        self.evicted_bytes = 0  # dropped to stay within ``max_bytes``

    @property
    def nbytes(self) -> int:
        """Bytes of samples held (never above ``max_bytes``)."""
        return self._nbytes

    def stations(self) -> list[str]:
        with self._lock:
            return sorted(self._channels)

    def station_nbytes(self, station_key: str) -> int:
        return self._station_bytes.get(station_key, 0)

    def add(self, trace: Trace) -> None:
        """Keep ``trace``'s samples (copied); drop what is older than ``seconds`` and what exceeds ``max_bytes``."""
        trace_id = trace.id
        if self.select is not None and not self.select(trace_id):
            self.ignored += 1
            return
        if isinstance(trace.data, np.ma.MaskedArray):  # gaps inside: each unmasked piece on its own
            for piece in trace.split():
                self.add(piece)
            return
        rate = float(trace.stats.sampling_rate)
        data = np.asarray(trace.data)
        if data.size == 0 or not rate > 0 or not math.isfinite(rate):
            return
        start_ns = trace.stats.starttime.ns
        key = station_of(trace_id)
        with self._lock:
            self.records += 1
            segments = self._channels.setdefault(key, {}).setdefault(trace_id, [])
            added = self._append(segments, start_ns, rate, data)
            self._station_bytes[key] = self._station_bytes.get(key, 0) + added
            self._nbytes += added
            if segments:
                end = segments[-1].end_ns
                if self._newest_ns is None or end > self._newest_ns:
                    self._newest_ns = end
                freed = self._expire(segments, end - round(self.seconds * NS))
                self._station_bytes[key] -= freed
                self._nbytes -= freed
                self.expired_bytes += freed
            if self._nbytes > self.max_bytes:
                self._shrink()

    def _append(self, segments: list[_Segment], start_ns: int, rate: float, data: np.ndarray) -> int:
        """Append ``data`` to the channel; bytes added."""
        last = segments[-1] if segments else None
        if last is not None:
            half = NS / rate / 2
            overlap = last.end_ns - start_ns
            if overlap > half:  # begins before what is held ends: keep only what is new
                skip = min(round(overlap * rate / NS), len(data))
                self.overlap_samples += skip
                data = data[skip:]
                if data.size == 0:
                    return 0
                start_ns += round(skip * NS / rate)
            if abs(start_ns - last.end_ns) <= half and last.rate == rate and last.dtype == data.dtype:
                before = last.nbytes
                last.append(data)
                return last.nbytes - before
        segment = _Segment(start_ns, rate, data.dtype)
        segment.append(data)
        segments.append(segment)
        return segment.nbytes

    @staticmethod
    def _expire(segments: list[_Segment], cutoff_ns: int) -> int:
        """Drop the channel's samples before ``cutoff_ns``; bytes freed."""
        freed = 0
        while segments:
            first = segments[0]
            n = first.samples_before(cutoff_ns)
            if n == 0:
                break
            freed += first.drop_head(n)
            if first.npts:
                break
            segments.pop(0)
        return freed

    def _shrink(self) -> None:
        """Down to ``max_bytes`` less 1/32: stale data first, then the oldest of the largest stations."""
        target = self.max_bytes - self.max_bytes // 32
        if self._newest_ns is not None:
            cutoff = self._newest_ns - round(self.seconds * NS)
            for key, channels in self._channels.items():
                freed = sum(self._expire(segments, cutoff) for segments in channels.values())
                self._station_bytes[key] -= freed
                self._nbytes -= freed
                self.expired_bytes += freed
        if self._nbytes > target:
            level = _water_level(list(self._station_bytes.values()), target)
            for key, size in list(self._station_bytes.items()):
                if size > level:
                    freed = self._drop_oldest(key, size - level)
                    self._station_bytes[key] -= freed
                    self._nbytes -= freed
                    self.evicted_bytes += freed
        for key in [k for k, size in self._station_bytes.items() if size == 0]:
            del self._station_bytes[key]
            del self._channels[key]

    def _drop_oldest(self, key: str, excess: int) -> int:
        """Drop at least ``excess`` bytes of the station's oldest samples, across its channels; bytes freed."""
        channels = self._channels[key]
        freed = 0
        while freed < excess:
            live = [(segs[0].start_ns, cid) for cid, segs in channels.items() if segs]
            if not live:
                break
            _, cid = min(live)
            segments = channels[cid]
            first = segments[0]
            head = first.chunks[0]
            n = min(len(head), math.ceil((excess - freed) / head.itemsize))
            freed += first.drop_head(n)
            if not first.npts:
                segments.pop(0)
        for cid in [c for c, segs in channels.items() if not segs]:
            del channels[cid]
        return freed

    def spans(self, station_key: str) -> dict[str, tuple[UTCDateTime, UTCDateTime]]:
        """Each channel of the station: (first sample, just after the last sample) held."""
        with self._lock:
            return {
                cid: (UTCDateTime(ns=segs[0].start_ns), UTCDateTime(ns=segs[-1].end_ns))
                for cid, segs in self._channels.get(station_key, {}).items()
                if segs
            }

    def stream(self, station_key: str, start: UTCDateTime, end: UTCDateTime) -> Stream:
        """The channels of ``station_key`` (``NET.STA``) between ``start`` and ``end`` (samples as added)."""
        start_ns, end_ns = UTCDateTime(start).ns, UTCDateTime(end).ns
        traces = []
        with self._lock:
            for cid, segments in sorted(self._channels.get(station_key, {}).items()):
                for seg in segments:
                    if seg.end_ns <= start_ns or seg.start_ns > end_ns:
                        continue
                    first = seg.samples_before(start_ns)  # samples at or after start
                    last = seg.samples_before(end_ns + round(NS / seg.rate / 2))  # up to end inclusive
                    if last <= first:
                        continue
                    pieces, k = [], 0
                    for chunk in seg.chunks:
                        lo, hi = max(first - k, 0), min(last - k, len(chunk))
                        if lo < hi:
                            pieces.append(chunk[lo:hi])
                        k += len(chunk)
                        if k >= last:
                            break
                    net, sta, loc, cha = cid.split(".")
                    header = {
                        "network": net,
                        "station": sta,
                        "location": loc,
                        "channel": cha,
                        "sampling_rate": seg.rate,
                        "starttime": UTCDateTime(ns=seg.time_ns(seg.dropped + first)),
                    }
                    traces.append(Trace(np.concatenate(pieces), header=header))
        return Stream(traces)


def _water_level(sizes: list[int], target: int) -> int:
    """The largest per-station level L with sum(min(size, L)) <= target."""
    if sum(sizes) <= target:
        return max(sizes, default=0)
    ordered = sorted(sizes)
    below, n = 0, len(ordered)
    for i, size in enumerate(ordered):
        remaining = n - i
        if below + size * remaining > target:
            return max((target - below) // remaining, 0)
        below += size
    return ordered[-1]
