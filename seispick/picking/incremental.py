"""The picking core driven record by record: one instrument's records in, windows to run and picks out.

An ``InstrumentPicker`` routes records (one component's samples from an absolute sample index) to the
segment they continue, or starts a new segment after a gap. A ``RecordSegment`` holds the segment's samples
per component until no window needs them and drives a ``segment.SegmentPicker`` (the core batch annotation
uses): windows are cut as soon as every awaited component covers them, outputs go back in any order, and
the picks and detections come out once final, identical to ``annotate`` over the same data. Synchronous,
no I/O: ``service.stream.picker`` feeds it records and inference results.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from seispick.models.card import ModelCard
from seispick.picking.preprocess import normalise_windows
from seispick.picking.results import Detection, Pick
from seispick.picking.segment import CoreSettings, SegmentPicker, grid_clock
from seispick.picking.windowing import cut_windows


@dataclass(frozen=True)
class WindowRequest:
    """A normalised (channels, samples) window to run, identified by instrument and absolute start sample."""

    instrument: str
    start: int
    window: np.ndarray


@dataclass
class InstrumentStats:
    """Counters an operator watches per instrument."""

    records: int = 0
    samples: int = 0
    late_records: int = 0
    duplicate_records: int = 0
    gaps: int = 0
    windows: int = 0
    picks: int = 0
    detections: int = 0


class RecordSegment:
    """The samples of one gap-free segment from absolute sample ``start``, fed to its ``SegmentPicker``."""

    def __init__(self, owner: InstrumentPicker, start: int) -> None:
        self.owner = owner
        self.start = start
        self.n_channels = len(owner.card.channel_order)
        self.base = start  # absolute index of buffer column 0
        self.data = np.zeros((self.n_channels, 0), np.float32)
        self.covered = np.zeros((self.n_channels, 0), bool)
        self.any_end = start  # union of components covers [start, any_end)
        self.all_end = start  # every awaited component covers [start, all_end)
        self.core = SegmentPicker(owner.settings, owner.instrument, start, owner.time_of)

    @property
    def pending(self) -> set[int]:
        return self.core.pending

    @property
    def done(self) -> bool:
        return self.core.done

    def add(
        self, component: int, start: int, values: np.ndarray, active: list[int]
    ) -> list[WindowRequest] | None:
        """Store samples; returns windows now covered, or None when the record was late or a duplicate.

        ``active`` are the components that still deliver data: windows wait until all of them cover it.
        """
        end = start + len(values)
        stats = self.owner.stats
        if end <= self.base:
            stats.late_records += 1
            return None
        lo = max(start, self.base)
        self._grow(end)
        a, b = lo - self.base, end - self.base
        fresh = ~self.covered[component, a:b]
        if not fresh.any():
            stats.duplicate_records += 1
            return None
        self.data[component, a:b][fresh] = values[lo - start :][fresh]
        self.covered[component, a:b] |= True
        stats.samples += int(fresh.sum())
        self.any_end = self._run_end(self.covered[:, self.any_end - self.base :].any(axis=0), self.any_end)
        tail = self.covered[active, self.all_end - self.base :]  # only what lies past the covered run
        self.all_end = max(self.all_end, self._run_end(tail.all(axis=0), self.all_end))
        requests = self._requests(self.core.extend(self.all_end, self.any_end))
        self._trim()
        return requests

    def close(self) -> list[WindowRequest]:
        """The segment ended where some component's data end: the windows batch mode adds at a segment end."""
        return self._requests(self.core.close(self.any_end))

    def result(self, start: int, output: np.ndarray) -> list[Pick | Detection]:
        return self.core.result(start, output)

    def advance(self) -> list[Pick | Detection]:
        return self.core.advance()

    @staticmethod
    def _run_end(rest: np.ndarray, end: int) -> int:
        """``end`` moved over the covered samples of ``rest`` (coverage from ``end`` on) up to the first gap."""
        gaps = np.flatnonzero(~rest)
        return end + (int(gaps[0]) if gaps.size else rest.size)

    def _grow(self, end: int) -> None:
        need = end - self.base - self.data.shape[1]
        if need > 0:
            need = max(need, self.owner.settings.stride)
            self.data = np.concatenate([self.data, np.zeros((self.n_channels, need), np.float32)], axis=1)
            self.covered = np.concatenate([self.covered, np.zeros((self.n_channels, need), bool)], axis=1)

    def _requests(self, starts: np.ndarray) -> list[WindowRequest]:
        """Cut and normalise the windows at ``starts`` (a segment shorter than the window is zero-padded)."""
        if not starts.size:
            return []
        window = self.owner.settings.window
        raw = cut_windows(self.data, starts - self.base, window)
        windows = normalise_windows(raw, self.owner.card.normalisation)
        self.owner.stats.windows += len(starts)
        return [WindowRequest(self.owner.instrument, s, w) for s, w in zip(starts.tolist(), windows)]

    def _trim(self) -> None:
        """Drop samples no window can still need (keeps the last full window for a possible tail window)."""
        drop = self.core.needed_from() - self.base
        if drop > self.owner.settings.stride:
            self.data, self.covered = self.data[:, drop:], self.covered[:, drop:]
            self.base += drop

    @property
    def nbytes(self) -> int:
        """Bytes held in sample and stacking buffers."""
        return self.data.nbytes + self.covered.nbytes + self.core.nbytes


@dataclass
class InstrumentPicker:
    """Continuous picking for one instrument (NET.STA.LOC.BI): routes records and results to segments.

    ``max_gap`` (samples) is how far past the covered end new data may start and still continue the segment
    (0: any missing sample is a gap, as in batch mode). Windows wait for every component that delivered data
    in the last ``lag_tolerance_s`` seconds (wall clock); one silent for longer is taken as missing (zeros,
    as batch mode fills a missing component), so a dead channel cannot stall its station.
    """

    instrument: str
    card: ModelCard
    model_name: str
    model_sha256: str = ""
    thresholds: dict[str, float] = field(default_factory=dict)
    stacking: str | None = None
    overlap: int | None = None
    time_offset: float = 0.0
    max_gap: int = 0
    lag_tolerance_s: float = 30.0
    stats: InstrumentStats = field(default_factory=InstrumentStats)

    def __post_init__(self) -> None:
        self.settings = CoreSettings.of(
            self.card, self.model_name, self.model_sha256, self.thresholds, self.stacking, self.overlap
        )
        self.time_of = grid_clock(self.card.sampling_rate, self.time_offset)
        self.last_seen: dict[int, float] = {}  # component -> wall clock of its last record
        self.current: RecordSegment | None = None
        self.closing: list[RecordSegment] = []

    @property
    def last_sample_index(self) -> int | None:
        return None if self.current is None else self.current.any_end - 1

    def add(
        self, component: int, start: int, values: np.ndarray, now: float | None = None
    ) -> tuple[list[WindowRequest], list[Pick | Detection]]:
        """Add a record's samples (absolute start index); returns windows to run and records already final."""
        self.stats.records += 1
        now = time.monotonic() if now is None else now
        self.last_seen[component] = now
        active = sorted(c for c, seen in self.last_seen.items() if now - seen <= self.lag_tolerance_s)
        requests: list[WindowRequest] = []
        emitted: list[Pick | Detection] = []
        seg = self.current
        if seg is not None and start > seg.any_end + self.max_gap:
            if start + len(values) <= seg.base:
                self.stats.late_records += 1
                return [], []
            self.stats.gaps += 1
            requests, emitted = self.close()
            seg = None
        elif seg is not None and start + len(values) <= seg.start:
            self.stats.late_records += 1  # before the current segment: its segment is gone
            return [], []
        if seg is None:
            seg = self.current = RecordSegment(self, start)
        formed = seg.add(component, start, values, active)
        return requests + (formed or []), emitted

    def close(self) -> tuple[list[WindowRequest], list[Pick | Detection]]:
        """End the current segment (gap or silence): its tail windows, and anything that became final."""
        seg, self.current = self.current, None
        if seg is None:
            return [], []
        requests = seg.close()
        emitted = self._counted(seg.advance())
        if not seg.done:
            self.closing.append(seg)
        return requests, emitted

    def result(self, start: int, output: np.ndarray) -> list[Pick | Detection]:
        """Route a window's output to the segment that asked for it."""
        for seg in [*self.closing, self.current]:
            if seg is not None and start in seg.pending:
                emitted = self._counted(seg.result(start, output))
                if seg.done and seg in self.closing:
                    self.closing.remove(seg)
                return emitted
        return []

    def _counted(self, emitted: list[Pick | Detection]) -> list[Pick | Detection]:
        self.stats.picks += sum(isinstance(e, Pick) for e in emitted)
        self.stats.detections += sum(isinstance(e, Detection) for e in emitted)
        return emitted

    @property
    def pending(self) -> int:
        return sum(len(s.pending) for s in [*self.closing, self.current] if s is not None)

    def final_until(self) -> float | None:
        """Epoch seconds before which this instrument's data are final (triggered: every pick and detection
        ending before it has been emitted); None when no segment is open or closing (all emitted)."""
        ends = [s.core.final_until for s in [*self.closing, self.current] if s is not None]
        return self.time_of(min(ends)) if ends else None

    def buffer_bytes(self) -> int:
        """Bytes held in sample and stacking buffers of this instrument's open segments."""
        return sum(s.nbytes for s in [*self.closing, self.current] if s is not None)
