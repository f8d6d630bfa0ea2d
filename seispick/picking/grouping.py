"""From an ObsPy Stream to per-instrument, gap-free, multi-component segments at the model's sampling rate.

Traces are grouped by instrument (``NET.STA.LOC`` plus band and instrument code, e.g. ``HH``), components are
mapped onto the model's channel order (Z12 is taken as ZNE; a missing component is zero, as PhaseNet was
trained for vertical-only stations), data are resampled to the model rate, placed on the absolute sample grid
(sample index = round(epoch seconds x rate)) and cut into segments wherever no component has data.
Everything dropped, changed or suspicious on the way is reported as a note (worded by ``notes``): missing
components, gaps with their spans, resampling, constant stretches and clipping.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import obspy

from seispick.picking.notes import (
    MAX_LISTED,
    Notes,
    components_note,
    gap_note,
    resampled_note,
    signal_notes,
    summary_note,
)
from seispick.picking.waveforms import InputLimits

# Larger magnitudes overflow the float32 normalisation (squares beyond 3.4e38): treated like NaN.
MAX_ABS_SAMPLE = 1e15
# Traces more than this many times below the model rate are ignored (with a note), not upsampled.
MAX_UPSAMPLING = 100  # 1 Hz (LH) data for a 100 Hz model: the lowest rate worth picking
# A component starting or ending this much later / earlier than the others is noted as a gap.
EDGE_HOLE_S = 1.0
# Horizontal components that stand for each other (SeisBench's flexible_horizontal_components).
_EQUIVALENT_COMPONENTS = {"1": "N", "2": "E", "N": "1", "E": "2"}


@dataclass
class StationSegment:
    """Gap-free data of one instrument on the absolute sample grid.

    ``data`` is (channels, samples) in the model's channel order; sample i lies at
    ``(start_index + i) / sampling_rate + time_offset`` epoch seconds.
    """

    instrument: str  # NET.STA.LOC.BI, e.g. "NC.MEM..EH"
    channels: dict[str, str]  # model component letter -> channel code present, e.g. {"Z": "EHZ"}
    start_index: int
    sampling_rate: float
    data: np.ndarray
    time_offset: float = 0.0
    channel_order: str = "ZNE"  # the model's channel order: row i of ``data`` is component channel_order[i]

    @property
    def n_samples(self) -> int:
        return self.data.shape[-1]

    @property
    def network(self) -> str:
        return self.instrument.split(".")[0]

    @property
    def station_id(self) -> str:
        """NET.STA.LOC, the id SeisBench uses for picks."""
        return self.instrument.rsplit(".", 1)[0]

    def time_of(self, sample: int | float) -> float:
        """Epoch seconds of a (fractional) sample index within the segment."""
        return (self.start_index + sample) / self.sampling_rate + self.time_offset

    @property
    def starttime(self) -> obspy.UTCDateTime:
        return obspy.UTCDateTime(self.time_of(0))

    @property
    def endtime(self) -> obspy.UTCDateTime:
        return obspy.UTCDateTime(self.time_of(self.n_samples - 1))


def group_stream(
    stream: obspy.Stream,
    channel_order: str,
    sampling_rate: float,
    notes: Notes,
    limits: InputLimits | None = None,
) -> list[StationSegment]:
    """Group, clean, resample and segment ``stream`` (not modified) for a model.

    ``limits.max_segments`` is checked as each instrument's gaps are found, before its segments are built.
    """
    traces = [tr for tr in (_clean_trace(tr, notes) for tr in stream) if tr is not None]
    groups: dict[str, list[obspy.Trace]] = defaultdict(list)
    for trace in traces:
        groups[_instrument_id(trace)].append(trace)
    segments: list[StationSegment] = []
    for instrument in sorted(groups):
        segments.extend(
            _segment_instrument(
                instrument, groups[instrument], channel_order, sampling_rate, notes, limits, len(segments)
            )
        )
    return segments


def _instrument_id(trace: obspy.Trace) -> str:
    s = trace.stats
    return f"{s.network}.{s.station}.{s.location}.{s.channel[:-1]}"


def _clean_trace(trace: obspy.Trace, notes: Notes) -> obspy.Trace | None:
    """Drop empty traces and impossible sampling rates; turn non-finite samples into gaps."""
    if trace.stats.npts == 0:
        notes.add(f"{trace.id}: trace without samples ignored")
        return None
    rate = trace.stats.sampling_rate
    if not np.isfinite(rate) or rate <= 0:
        notes.add(f"{trace.id}: impossible sampling rate {rate} Hz, trace ignored")
        return None
    if not trace.stats.channel:
        notes.add(f"{trace.id}: trace without a channel code ignored")
        return None
    data = np.asarray(trace.data)
    if not np.issubdtype(data.dtype, np.number):
        notes.add(f"{trace.id}: non-numeric samples, trace ignored")
        return None
    finite = np.isfinite(data)
    if finite.all() and (data.size == 0 or np.abs(data).max() < MAX_ABS_SAMPLE):
        notes.extend(signal_notes(trace.id, data, trace.stats.starttime.timestamp, rate))
        return trace
    huge = finite & (np.abs(np.where(finite, data, 0)) >= MAX_ABS_SAMPLE)
    finite &= ~huge
    bad = int((~finite).sum())
    notes.add(f"{trace.id}: {bad} NaN/Inf samples (or beyond +-1e15) treated as gaps")
    if not finite.any():
        return None
    notes.extend(
        signal_notes(trace.id, np.where(finite, data, np.nan), trace.stats.starttime.timestamp, rate)
    )
    clean = trace.copy()
    clean.data = np.ma.masked_array(data.astype(np.float64), mask=~finite)
    # Keep it one trace with a mask; _segment_instrument honours masks as gaps.
    return clean


def _resample(trace: obspy.Trace, sampling_rate: float) -> obspy.Trace:
    """SeisBench's resampling: low-pass + decimate for integer factors, Fourier resampling otherwise."""
    rate = trace.stats.sampling_rate
    trace = trace.copy()
    trace.data = (
        np.ma.filled(trace.data.astype(np.float64), 0.0) if np.ma.isMaskedArray(trace.data) else trace.data
    )
    if rate > sampling_rate and rate % sampling_rate == 0:
        trace.filter("lowpass", freq=sampling_rate * 0.5, zerophase=True)
        trace.decimate(int(rate / sampling_rate), no_filter=True)
    else:
        trace.resample(sampling_rate, no_filter=True)
    return trace


def _resampling_problem(trace: obspy.Trace, sampling_rate: float) -> str | None:
    """Why ``trace`` cannot be resampled to the model rate (None when it can): too few samples to leave one,
    or a rate so low that its upsampled samples would be made up (and unbounded in number)."""
    rate = float(trace.stats.sampling_rate)
    if rate * MAX_UPSAMPLING < sampling_rate:
        return (
            f"sampling rate {rate:g} Hz is more than {MAX_UPSAMPLING}x below the model's {sampling_rate:g} Hz"
        )
    if trace.stats.npts * sampling_rate / rate < 2:
        return f"{trace.stats.npts} sample(s) at {rate:g} Hz leave less than two at the model's {sampling_rate:g} Hz"
    return None


def component_index(component: str, channel_order: str) -> int | None:
    """Index of a component letter in a model's channel order (1 and 2 stand for N and E), or None."""
    if component in channel_order:
        return channel_order.index(component)
    other = _EQUIVALENT_COMPONENTS.get(component)
    if other and other in channel_order:
        return channel_order.index(other)
    return None


def _segment_instrument(
    instrument: str,
    traces: list[obspy.Trace],
    channel_order: str,
    sampling_rate: float,
    notes: Notes,
    limits: InputLimits | None = None,
    before: int = 0,
) -> list[StationSegment]:
    pieces = []  # (component index, channel code, absolute start index, data, mask of valid samples)
    offsets = []
    for trace in traces:
        comp = trace.stats.channel[-1].upper()
        index = component_index(comp, channel_order)
        if index is None:
            notes.add(f"{trace.id}: component {comp} is not one of {channel_order} (or 1/2), ignored")
            continue
        if trace.stats.sampling_rate != sampling_rate:
            problem = _resampling_problem(trace, sampling_rate)
            if problem:
                notes.add(f"{trace.id}: {problem}, trace ignored")
                continue
            notes.add(resampled_note(instrument, trace.stats.sampling_rate, sampling_rate))
            trace = _resample(trace, sampling_rate)
        start = trace.stats.starttime.timestamp
        abs_start = int(round(start * sampling_rate))
        offsets.append(start - abs_start / sampling_rate)
        data = trace.data
        valid = ~np.ma.getmaskarray(data) if np.ma.isMaskedArray(data) else np.ones(len(data), dtype=bool)
        pieces.append(
            (index, trace.stats.channel, abs_start, np.ma.filled(data, 0.0).astype(np.float64), valid)
        )
    if not pieces:
        return []
    channels_present = sorted({p[0] for p in pieces})
    channels = {channel_order[i]: next(p[1] for p in pieces if p[0] == i) for i in channels_present}
    note = components_note(instrument, channels, channel_order)
    if note:
        notes.add(note)
    conflicting = _conflicting_channels(pieces)
    if conflicting:
        notes.add(f"{instrument}: both {' and '.join(conflicting)} present; the first one read is used")
    time_offset = float(np.mean(offsets))
    segments: list[StationSegment] = []
    holes: list[tuple[str, int, int]] = []  # (name, first missing sample, first sample after), absolute
    for seg_start, seg_end in _covered_intervals(pieces):
        n = seg_end - seg_start
        data = np.zeros((len(channel_order), n), dtype=np.float64)
        covered = np.zeros((len(channel_order), n), dtype=bool)
        disagreements = 0
        for index, _, abs_start, values, valid in pieces:
            a, b = abs_start - seg_start, abs_start - seg_start + len(values)
            if b <= 0 or a >= n:
                continue
            lo, hi = max(a, 0), min(b, n)
            vals, ok = values[lo - a : hi - a], valid[lo - a : hi - a]
            already = covered[index, lo:hi] & ok
            if already.any() and not np.allclose(
                data[index, lo:hi][already], vals[already], rtol=1e-6, atol=1e-6
            ):
                disagreements += 1
            fresh = ok & ~covered[index, lo:hi]
            data[index, lo:hi][fresh] = vals[fresh]
            covered[index, lo:hi] |= ok
        if disagreements:
            notes.add(f"{instrument}: overlapping records with different samples; the first one read is kept")
        holes.extend(_component_holes(covered, seg_start, channels, channel_order, instrument, sampling_rate))
        runs = _runs(covered.any(axis=0))
        if limits is not None:
            total = before + len(segments) + len(runs)
            limits.check("max_segments", total, "gap-free segments (split at gaps and NaN samples)")
        for start, stop in runs:
            segments.append(
                StationSegment(
                    instrument=instrument,
                    channels=channels,
                    start_index=seg_start + start,
                    sampling_rate=sampling_rate,
                    data=data[:, start:stop].astype(np.float32),
                    time_offset=time_offset,
                    channel_order=channel_order,
                )
            )
    holes += [
        (instrument, a.start_index + a.n_samples, b.start_index) for a, b in zip(segments, segments[1:])
    ]
    _gap_notes(holes, sampling_rate, time_offset, instrument, notes)
    return segments


def _component_holes(
    covered: np.ndarray,
    seg_start: int,
    channels: dict[str, str],
    channel_order: str,
    instrument: str,
    rate: float,
) -> list[tuple[str, int, int]]:
    """Stretches where one component has no data while another has (zero-filled).

    Holes at a segment's edges (channels starting or ending a little apart) count from ``EDGE_HOLE_S`` on.
    """
    holes = []
    anything = covered.any(axis=0)
    prefix = instrument[: instrument.rfind(".") + 1]
    for letter, code in channels.items():
        missing = anything & ~covered[channel_order.index(letter)]
        for start, stop in _runs(missing):
            at_edge = start == 0 or stop == covered.shape[1]
            if not at_edge or stop - start >= EDGE_HOLE_S * rate:
                holes.append((prefix + code, seg_start + start, seg_start + stop))
    return holes


def _gap_notes(
    holes: list[tuple[str, int, int]], rate: float, offset: float, instrument: str, notes: Notes
) -> None:
    """Notes of the first ``MAX_LISTED`` gaps in time order (last sample before to first after), a summary."""
    holes.sort(key=lambda h: (h[1], h[0]))
    for name, first_missing, next_present in holes[:MAX_LISTED]:
        notes.add(gap_note(name, (first_missing - 1) / rate + offset, next_present / rate + offset, rate))
    if len(holes) > MAX_LISTED:
        seconds = sum(b - a for _, a, b in holes[MAX_LISTED:]) / rate
        notes.add(summary_note(instrument, "gap", len(holes) - MAX_LISTED, seconds))


def _conflicting_channels(pieces: list) -> list[str]:
    by_index: dict[int, set[str]] = defaultdict(set)
    for index, channel, *_ in pieces:
        by_index[index].add(channel)
    return [" and ".join(sorted(codes)) for codes in by_index.values() if len(codes) > 1]


def _covered_intervals(pieces: list) -> list[tuple[int, int]]:
    """Union of the pieces' sample intervals [start, end), merged where they touch or overlap."""
    spans = sorted((p[2], p[2] + len(p[3])) for p in pieces)
    merged = [list(spans[0])]
    for start, end in spans[1:]:
        if start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Start/stop indices of the runs of True in a boolean array."""
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist()))
