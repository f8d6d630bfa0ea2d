"""Notes on the input: what was missing, cut, changed or suspicious, said the same way in batch and stream.

Batch grouping (``grouping.group_stream``: the CLI summary, the JSON answers) and the stream's station states
(``InstrumentNotes``, ``GET /v1/stations``) word every remark with the functions here:

- missing vertical / single component / other missing components (``components_note``);
- gaps with their spans (``gap_note``; a component without data while the others have some, too);
- resampling to the model rate (``resampled_note``);
- constant data (``constant_runs``: a second or more of identical samples);
- clipping (``clipped_samples``: two or more flat runs of 3+ samples at the largest magnitude, which is
  far above the data's quantisation step; flat ends of the data do not count);
- components the stream stopped waiting for and zero-filled (``zero_filled_note``; stream only).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from obspy import UTCDateTime

CONSTANT_MIN_S = 1.0  # identical consecutive samples for this long are "constant data"
CLIP_MIN_RUN = 3  # samples in a row at the largest magnitude
CLIP_MIN_STEPS = 64  # ... and that magnitude at least this many quantisation steps
MAX_LISTED = 5  # gaps / constant stretches listed per instrument before a summary line


@dataclass
class Notes:
    """Human-readable remarks on input handling, deduplicated, in order of first occurrence."""

    messages: list[str] = field(default_factory=list)

    def add(self, message: str) -> None:
        if message not in self.messages:
            self.messages.append(message)

    def extend(self, messages: list[str]) -> None:
        for message in messages:
            self.add(message)

    def __bool__(self) -> bool:
        return bool(self.messages)


def when(t: float | UTCDateTime) -> str:
    """UTC time rounded to the centisecond, ISO 8601 with a Z (epoch seconds beyond what a date can show)."""
    try:
        return UTCDateTime(round(UTCDateTime(t).timestamp, 2)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-4] + "Z"
    except (ValueError, OverflowError, OSError):  # years past 9999 or before 1: never a traceback in a note
        seconds = t.timestamp if isinstance(t, UTCDateTime) else float(t)
        return f"epoch {seconds:.6g} s"


def duration(seconds: float) -> str:
    """``0.25 s``, ``12.00 s``, ``3.5 min``, ``2.0 h``, ``1.5 d``."""
    if seconds < 120:
        return f"{seconds:.2f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def components_note(instrument: str, channels: dict[str, str], channel_order: str) -> str | None:
    """The note for components an instrument lacks (``channels``: model letter -> channel code present)."""
    if not channels or len(channels) >= len(channel_order):
        return None
    codes = ", ".join(code for _, code in sorted(channels.items(), key=lambda item: "ZNE12".find(item[0])))
    missing = [c for c in channel_order if c not in channels]
    if "Z" in channel_order and "Z" not in channels:
        return (
            f"{instrument}: no vertical component (only {codes}): the vertical is zero-filled, "
            "P picks are unreliable"
        )
    if len(channels) == 1:
        return (
            f"{instrument}: a single component ({codes}): the other {len(missing)} are zero-filled, as "
            "PhaseNet was trained for vertical-only stations; S picks are less reliable"
        )
    return f"{instrument}: component(s) {', '.join(missing)} missing (only {codes}): zero-filled"


def gap_note(name: str, last: float, following: float, rate: float) -> str:
    """``NET.STA.LOC.BI: gap of 10.00 s between <last sample> and <next sample>`` (missing time, not span)."""
    missing = max(following - last - 1.0 / rate, 0.0)
    return f"{name}: gap of {duration(missing)} between {when(last)} and {when(following)}"


def summary_note(name: str, what: str, count: int, seconds: float) -> str:
    """The line after ``MAX_LISTED`` listed gaps (or constant stretches)."""
    return f"{name}: and {count} more {what}s ({duration(seconds)} in all)"


def resampled_note(instrument: str, rate: float, model_rate: float) -> str:
    return f"{instrument}: resampled from {rate:g} Hz to the model's {model_rate:g} Hz"


def constant_runs(
    data: np.ndarray, min_samples: int, keep_edges: bool = False
) -> list[tuple[int, int, float]]:
    """(start, stop, value) of runs of at least ``min_samples`` identical consecutive samples.

    With ``keep_edges``, shorter runs (two samples or more) touching either end are kept too (they may go on
    in the neighbouring record).
    """
    values = np.asarray(data)
    if values.size < 2:
        return []
    same = values[1:] == values[:-1]
    if not (keep_edges and (same[0] or same[-1])) and np.count_nonzero(same) < min_samples - 1:
        return []  # the common case, decided without finding runs
    padded = np.concatenate([[False], same, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    starts, stops = edges[0::2], edges[1::2] + 1  # same[a:b] true: samples a .. b are equal
    keep = stops - starts >= min_samples
    if keep_edges:
        keep |= (starts == 0) | (stops == values.size)
    return [(int(a), int(b), float(values[a])) for a, b in zip(starts[keep], stops[keep])]


def clipped_samples(data: np.ndarray, below: float = 0.0) -> tuple[int, int, float]:
    """(samples, runs) flat at the largest magnitude, and that magnitude.

    Only runs of ``CLIP_MIN_RUN`` samples or more that do not touch the data's ends count (a padded end is
    not clipping), and only when the magnitude is ``CLIP_MIN_STEPS`` quantisation steps or more. A magnitude
    under ``below`` (one already seen, whose flat tops are the ones that count) gives no samples, uncounted.
    """
    values = np.asarray(data)  # native dtype: no copy on the common path
    if not values.size:
        return 0, 0, 0.0
    high, low = float(values.max()), float(values.min())
    if not math.isfinite(high - low):
        values = values[np.isfinite(values)]
        high, low = (float(values.max()), float(values.min())) if values.size else (0.0, 0.0)
    peak = max(high, -low)
    if (
        peak == 0
        or peak < below
        or np.count_nonzero(values == (high if high >= -low else low)) < CLIP_MIN_RUN
    ):
        return 0, 0, peak  # the common case: the peak is reached once or twice
    values = values.astype(np.float64)
    steps = np.abs(np.diff(values))
    steps = steps[steps > 0]
    if not steps.size or peak < CLIP_MIN_STEPS * float(steps.min()):
        return 0, 0, peak
    padded = np.concatenate([[False], np.abs(values) == peak, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    starts, stops = edges[0::2], edges[1::2]
    keep = (stops - starts >= CLIP_MIN_RUN) & (starts > 0) & (stops < values.size)
    return int((stops - starts)[keep].sum()), int(keep.sum()), peak


def looks_clipped(runs: int) -> bool:
    """Two or more flat tops at the largest magnitude: one could be chance or a stuck sample."""
    return runs >= 2


def clipped_note(trace_id: str, count: int, peak: float) -> str:
    return f"{trace_id}: {count} samples sit flat at +-{peak:g}, the largest magnitude: possibly clipped"


def zero_filled_note(instrument: str, codes: list[str], first: float, bound_bytes: int | None = None) -> str:
    """Components (``codes``) the stream zero-filled from ``first`` (epoch seconds): they stopped while the
    others went on, or (``bound_bytes``) they lagged the others by more than the wait buffer holds."""
    which = ", ".join(codes)
    if bound_bytes is None:
        return f"{instrument}: {which} stopped while the other components went on: zero-filled from {when(first)}"
    return (
        f"{instrument}: {which} lagged the other components by more than the wait buffer "
        f"({bound_bytes / 2**20:.3g} MiB) holds: zero-filled from {when(first)}"
    )


def constant_note(trace_id: str, first: float, last: float, value: float, rate: float) -> str:
    """Constant samples from ``first`` to ``last`` (sample times)."""
    seconds = last - first + 1.0 / rate
    return f"{trace_id}: constant data (all {value:g}) for {duration(seconds)} from {when(first)} to {when(last)}"


def signal_notes(trace_id: str, data: np.ndarray, starttime: float, rate: float) -> list[str]:
    """Constant stretches (the first ``MAX_LISTED``, then a summary) and clipping of one trace's samples."""
    notes = []
    runs = constant_runs(data, max(int(CONSTANT_MIN_S * rate), 2))
    for start, stop, value in runs[:MAX_LISTED]:
        first, last = starttime + start / rate, starttime + (stop - 1) / rate
        notes.append(constant_note(trace_id, first, last, value, rate))
    if len(runs) > MAX_LISTED:
        rest = sum(stop - start for start, stop, _ in runs[MAX_LISTED:]) / rate
        notes.append(summary_note(trace_id, "constant stretch", len(runs) - MAX_LISTED, rest))
    count, runs, peak = clipped_samples(data)
    if looks_clipped(runs):
        notes.append(clipped_note(trace_id, count, peak))
    return notes


@dataclass
class _Channel:
    code: str
    rate: float
    last_end: float | None = None  # time of the last sample received
    constant: tuple[float, float, float] | None = None  # open run of identical samples: first, last, value
    clipped: int = 0  # samples flat at ``peak``
    clip_runs: int = 0
    peak: float = 0.0  # largest magnitude so far

    def long_enough(self, first: float, last: float) -> bool:
        return round((last - first) * self.rate) + 1 >= max(int(CONSTANT_MIN_S * self.rate), 2)


@dataclass
class _Listed:
    """The last ``MAX_LISTED`` items (gaps, constant stretches) and a count and duration of older ones."""

    items: deque = field(default_factory=lambda: deque(maxlen=MAX_LISTED))
    older: int = 0
    older_seconds: float = 0.0

    def add(self, item: list, seconds: float) -> None:
        if len(self.items) == self.items.maxlen:
            self.older += 1
            self.older_seconds += self.items[0][-1]
        self.items.append([*item, seconds])


@dataclass
class InstrumentNotes:
    """Notes of one instrument in the stream, kept up to date record by record (bounded memory).

    ``messages`` words them as batch grouping does; the last ``MAX_LISTED`` gaps and constant stretches are
    listed, older ones summarised. A gap seen on every channel is one note for the instrument.
    """

    instrument: str
    channel_order: str
    model_rate: float
    channels: dict[str, _Channel] = field(default_factory=dict)  # model letter -> channel
    rates: set[float] = field(default_factory=set)
    gaps: _Listed = field(default_factory=_Listed)  # [codes, last, following, rate, seconds]
    constants: _Listed = field(default_factory=_Listed)  # [code, first, last, value, rate, seconds]

    def observe(self, letter: str, code: str, start: float, rate: float, data: np.ndarray) -> None:
        """Take one record of component ``letter`` (channel ``code``) starting at epoch ``start``."""
        if not data.size:
            return
        self.rates.add(rate)
        channel = self.channels.get(letter)
        if channel is None or channel.rate != rate:
            channel = self.channels[letter] = _Channel(code, rate, channel.last_end if channel else None)
        end = start + (data.size - 1) / rate
        if channel.last_end is not None and start > channel.last_end + 1.5 / rate:
            self._add_gap(code, channel.last_end, start, rate)
        channel.last_end = end if channel.last_end is None else max(channel.last_end, end)
        self._observe_constant(channel, start, data)
        count, runs, peak = clipped_samples(data, below=channel.peak)
        if peak > channel.peak:  # a new largest magnitude: flat tops below it were no clipping
            channel.peak, channel.clipped, channel.clip_runs = peak, count, runs
        elif peak == channel.peak:
            channel.clipped += count
            channel.clip_runs += runs

    def _observe_constant(self, channel: _Channel, start: float, data: np.ndarray) -> None:
        rate = channel.rate
        runs = constant_runs(data, max(int(CONSTANT_MIN_S * rate), 2), keep_edges=True)
        times = [(start + a / rate, start + (b - 1) / rate, value) for a, b, value in runs]
        open_run = channel.constant
        if open_run is not None:
            first = times[0] if times and runs[0][0] == 0 else None
            if first and first[2] == open_run[2] and first[0] <= open_run[1] + 1.5 / rate:
                times[0] = (open_run[0], first[1], open_run[2])  # the run goes on in this record
            else:
                self._close(channel, open_run)
            channel.constant = None
        for i, (first_t, last_t, value) in enumerate(times):
            if i == len(times) - 1 and runs[-1][1] == data.size:
                channel.constant = (first_t, last_t, value)  # may go on in the next record
            else:
                self._close(channel, (first_t, last_t, value))

    def _close(self, channel: _Channel, run: tuple[float, float, float]) -> None:
        if channel.long_enough(run[0], run[1]):
            seconds = run[1] - run[0] + 1.0 / channel.rate
            self.constants.add([channel.code, *run, channel.rate], seconds)

    def _add_gap(self, code: str, last: float, following: float, rate: float) -> None:
        """A gap of one channel; the same span on another channel joins it (one note per instrument gap)."""
        for gap in self.gaps.items:
            if abs(gap[1] - last) <= 1.5 / rate and abs(gap[2] - following) <= 1.5 / rate:
                gap[0].add(code)
                return
        self.gaps.add([{code}, last, following, rate], max(following - last - 1.0 / rate, 0.0))

    @property
    def messages(self) -> list[str]:
        notes = Notes()
        name = self.instrument
        prefix = name[: name.rfind(".") + 1]
        codes = {letter: ch.code for letter, ch in sorted(self.channels.items(), key=self._order)}
        note = components_note(name, codes, self.channel_order)
        if note:
            notes.add(note)
        for rate in sorted(self.rates - {self.model_rate}):
            notes.add(resampled_note(name, rate, self.model_rate))
        if self.gaps.older:
            notes.add(summary_note(name, "earlier gap", self.gaps.older, self.gaps.older_seconds))
        for gap_codes, last, following, rate, _ in self.gaps.items:
            label = name if gap_codes >= set(codes.values()) else prefix + ",".join(sorted(gap_codes))
            notes.add(gap_note(label, last, following, rate))
        if self.constants.older:
            older = self.constants
            notes.add(summary_note(name, "earlier constant stretch", older.older, older.older_seconds))
        constants = [item[:-1] for item in self.constants.items]
        constants += [
            [ch.code, *ch.constant, ch.rate]
            for ch in self.channels.values()
            if ch.constant is not None and ch.long_enough(ch.constant[0], ch.constant[1])  # still going on
        ]
        for code, first, last, value, rate in constants:
            notes.add(constant_note(prefix + code, first, last, value, rate))
        for ch in self.channels.values():
            if looks_clipped(ch.clip_runs):
                notes.add(clipped_note(prefix + ch.code, ch.clipped, ch.peak))
        return notes.messages

    def _order(self, item: tuple[str, _Channel]) -> int:
        return self.channel_order.find(item[0]) % (len(self.channel_order) + 1)
