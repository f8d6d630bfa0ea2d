"""Continuous picking of one instrument from records as they arrive, identical to batch annotation.

A ``SegmentPicker`` follows one gap-free stretch of data on the absolute sample grid and asks for a window as
soon as data cover it: grid windows (start a multiple of the stride since the epoch), a head window aligned to
the segment start and, once the segment has ended (a gap, or the stream went silent), a tail window aligned to
its end: the windows ``seispick.models.annotate`` places over the same data. Outputs are stacked as they come
back, in any order. A stacked sample is final when no window that could still cover it is missing; final
samples run through SeisBench's trigger (on at the threshold, off below half of it) in order, so each pick is
emitted exactly once, when no later window can change it. The buffer holds about one window plus one stride.

An ``InstrumentPicker`` routes records to the current segment and results to the segment that asked.
The code is synchronous and does no I/O; ``service.stream_picker`` feeds it records and inference results.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from obspy import UTCDateTime

from seispick.models.card import ModelCard
from seispick.models.picks import Detection, Pick
from seispick.models.preprocess import normalise_windows


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


@dataclass
class Trigger:
    """ObsPy's ``trigger_onset`` (SeisBench's pick trigger) over final samples fed in order."""

    threshold: float
    on: int | None = None
    peak: int = 0
    peak_value: float = -np.inf
    last_above_off: int = 0

    def feed(self, values: np.ndarray, first: int) -> list[tuple[int, int, int, float]]:
        """Feed samples starting at absolute index ``first``; returns closed triggers (on, off, peak, value)."""
        closed = []
        off, i, n = self.threshold / 2, 0, len(values)
        while i < n:
            if self.on is None:
                above = np.flatnonzero(values[i:] >= self.threshold)
                if above.size == 0:
                    break
                i += int(above[0])
                self.on, self.peak, self.peak_value, self.last_above_off = (
                    first + i,
                    first + i,
                    float(values[i]),
                    first + i,
                )
                i += 1
                continue
            below = np.flatnonzero(values[i:] < off)
            end = i + int(below[0]) if below.size else n
            if end > i:
                j = int(np.argmax(values[i:end]))
                if values[i + j] > self.peak_value:
                    self.peak, self.peak_value = first + i + j, float(values[i + j])
                self.last_above_off = first + end - 1
            if not below.size:
                break
            closed.append(self._take())
            i = end + 1
        return closed

    def close(self) -> tuple[int, int, int, float] | None:
        """End of data: an open trigger ends at its last sample above the off threshold."""
        return self._take() if self.on is not None else None

    def _take(self) -> tuple[int, int, int, float]:
        out = (self.on, self.last_above_off, self.peak, self.peak_value)
        self.on, self.peak_value = None, -np.inf
        return out


class SegmentPicker:
    """Windows, stacking and triggers over one gap-free segment starting at absolute sample ``start``."""

    def __init__(self, owner: InstrumentPicker, start: int) -> None:
        self.owner = owner
        card = owner.card
        self.window, self.stride, self.n_channels = owner.window, owner.stride, len(card.channel_order)
        self.start = start
        self.base = start  # absolute index of buffer column 0
        self.data = np.zeros((self.n_channels, 0), np.float32)
        self.covered = np.zeros((self.n_channels, 0), bool)
        self.any_end = start  # union of components covers [start, any_end)
        self.all_end = start  # every known component covers [start, all_end)
        self.next_grid = start + (-start) % self.stride
        self.head_done = start % self.stride == 0
        self.formed: list[int] = []
        self.pending: set[int] = set()
        self.closed_end: int | None = None
        labels = card.labels
        self.stack_base = start
        self.stack = np.zeros((len(labels), 0), np.float32)
        self.count = np.zeros(0, np.float32)
        self.final_until = start
        thresholds = owner.thresholds
        self.triggers = {lab: Trigger(thresholds[lab]) for lab in labels if lab != "N" and lab in thresholds}
        self.event_trigger = (
            Trigger(thresholds["detection"]) if "N" in labels and "detection" in thresholds else None
        )

    # -- data in -----------------------------------------------------------------------------------------------
    def add(
        self, component: int, start: int, values: np.ndarray, active: list[int]
    ) -> list[WindowRequest] | None:
        """Store samples; returns windows now covered, or None when the record was late or a duplicate.

        ``active`` are the components that still deliver data: windows wait until all of them cover it.
        """
        end = start + len(values)
        if end <= self.base:
            self.owner.stats.late_records += 1
            return None
        lo = max(start, self.base)
        self._grow(end)
        a, b = lo - self.base, end - self.base
        fresh = ~self.covered[component, a:b]
        if not fresh.any():
            self.owner.stats.duplicate_records += 1
            return None
        self.data[component, a:b][fresh] = values[lo - start :][fresh]
        self.covered[component, a:b] |= True
        self.owner.stats.samples += int(fresh.sum())
        self.any_end = self._run_end(self.covered.any(axis=0), self.any_end)
        self.all_end = max(self.all_end, self._run_end(self.covered[active].all(axis=0), self.all_end))
        return self._form_windows()

    def _run_end(self, mask: np.ndarray, end: int) -> int:
        rest = mask[end - self.base :]
        gaps = np.flatnonzero(~rest)
        return end + (int(gaps[0]) if gaps.size else rest.size)

    def _grow(self, end: int) -> None:
        need = end - self.base - self.data.shape[1]
        if need > 0:
            need = max(need, self.stride)
            self.data = np.concatenate([self.data, np.zeros((self.n_channels, need), np.float32)], axis=1)
            self.covered = np.concatenate([self.covered, np.zeros((self.n_channels, need), bool)], axis=1)

    def _form_windows(self) -> list[WindowRequest]:
        requests = []
        ready = self.all_end
        if not self.head_done and ready >= self.start + self.window:
            requests.append(self._request(self.start))
            self.head_done = True
        while self.next_grid is not None and self.next_grid + self.window <= ready:
            if self.next_grid not in self.formed:
                requests.append(self._request(self.next_grid))
            self.next_grid += self.stride
        self._trim()
        return requests

    def _request(self, start: int) -> WindowRequest:
        a = start - self.base
        raw = self.data[:, a : a + self.window]
        if raw.shape[1] < self.window:  # a segment shorter than the window: zero-padded as in batch mode
            raw = np.pad(raw, ((0, 0), (0, self.window - raw.shape[1])))
        window = normalise_windows(raw[None].copy(), self.owner.card.normalisation)[0]
        self.formed.append(start)
        self.pending.add(start)
        self.owner.stats.windows += 1
        return WindowRequest(self.owner.instrument, start, window)

    def _trim(self) -> None:
        """Drop samples no window can still need (keeps the last full window for a possible tail window)."""
        keep = self.any_end - self.window
        if self.next_grid is not None:
            keep = min(keep, self.next_grid)
        if not self.head_done:
            keep = self.start
        drop = keep - self.base
        if drop > self.stride:
            self.data, self.covered = self.data[:, drop:], self.covered[:, drop:]
            self.base += drop

    def close(self) -> list[WindowRequest]:
        """The segment ended at the union coverage end: the windows batch mode adds at a segment end."""
        if self.closed_end is not None:
            return []
        end = self.closed_end = self.any_end
        requests = []
        if end - self.start <= self.window:
            if not self.formed:
                requests.append(self._request(self.start))
        else:
            first = end if self.next_grid is None else self.next_grid
            for start in range(first, end - self.window + 1, self.stride):
                requests.append(self._request(start))  # grid windows waiting for a lagging component
            if not self.head_done:
                requests.append(self._request(self.start))
            if max(self.formed) + self.window < end:
                requests.append(self._request(end - self.window))
        self.next_grid, self.head_done = None, True
        return requests

    # -- results in --------------------------------------------------------------------------------------------
    def result(self, start: int, output: np.ndarray) -> list:
        """Stack one window's output (classes, window); returns picks and detections that became final."""
        self.pending.discard(start)
        a = start - self.stack_base
        need = a + self.window - self.count.size
        if need > 0:
            fill = -np.inf if self.owner.stacking == "max" else 0.0
            self.stack = np.concatenate(
                [self.stack, np.full((self.stack.shape[0], need), fill, np.float32)], axis=1
            )
            self.count = np.concatenate([self.count, np.zeros(need, np.float32)])
        part = self.stack[:, a : a + self.window]
        if self.owner.stacking == "max":
            np.maximum(part, output, out=part)
        else:
            part += output
        self.count[a : a + self.window] += 1
        return self.advance()

    def _final_limit(self) -> int:
        if self.closed_end is not None:
            limit = self.closed_end
        else:
            limit = self.any_end - self.window  # a tail window may still cover what follows
            if self.next_grid is not None:
                limit = min(limit, self.next_grid)
            if not self.head_done:
                limit = min(limit, self.start)
        return min(limit, min(self.pending)) if self.pending else limit

    def advance(self) -> list:
        """Run newly final samples through the triggers; returns the picks and detections they close."""
        limit = self._final_limit()
        emitted: list = []
        if limit > self.final_until:
            a, b = self.final_until - self.stack_base, limit - self.stack_base
            values = self.stack[:, a:b]
            if self.owner.stacking != "max":
                values = values / np.maximum(self.count[a:b], 1)
            labels = self.owner.card.labels
            for row, label in enumerate(labels):
                if label in self.triggers:
                    for closed in self.triggers[label].feed(values[row], self.final_until):
                        emitted.append(self.owner.make_pick(label, *closed))
            if self.event_trigger is not None:
                event = 1.0 - values[labels.index("N")]
                for on, off, _, value in self.event_trigger.feed(event, self.final_until):
                    emitted.append(self.owner.make_detection(on, off, value))
            self.stack, self.count = self.stack[:, b:], self.count[b:]
            self.final_until = self.stack_base = limit
        if self.done:
            for label, trigger in self.triggers.items():
                closed = trigger.close()
                if closed:
                    emitted.append(self.owner.make_pick(label, *closed))
            if self.event_trigger is not None and (closed := self.event_trigger.close()):
                emitted.append(self.owner.make_detection(closed[0], closed[1], closed[3]))
        return emitted

    @property
    def done(self) -> bool:
        """Closed, every window back, everything final."""
        return self.closed_end is not None and not self.pending and self.final_until >= self.closed_end


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
    stacking: str = "avg"
    overlap: int | None = None
    time_offset: float = 0.0
    max_gap: int = 0
    lag_tolerance_s: float = 30.0
    stats: InstrumentStats = field(default_factory=InstrumentStats)

    def __post_init__(self) -> None:
        self.thresholds = {**self.card.default_thresholds, **self.thresholds}
        self.stacking = self.stacking or self.card.stacking
        self.window = self.card.window_samples
        self.stride = self.window - (self.card.overlap_samples if self.overlap is None else self.overlap)
        self.rate = self.card.sampling_rate
        self.last_seen: dict[int, float] = {}  # component -> wall clock of its last record
        self.current: SegmentPicker | None = None
        self.closing: list[SegmentPicker] = []

    @property
    def last_sample_index(self) -> int | None:
        return None if self.current is None else self.current.any_end - 1

    def add(
        self, component: int, start: int, values: np.ndarray, now: float | None = None
    ) -> tuple[list[WindowRequest], list]:
        """Add a record's samples (absolute start index); returns windows to run and records already final."""
        self.stats.records += 1
        now = time.monotonic() if now is None else now
        self.last_seen[component] = now
        active = sorted(c for c, seen in self.last_seen.items() if now - seen <= self.lag_tolerance_s)
        requests: list[WindowRequest] = []
        emitted: list = []
        seg = self.current
        if seg is not None and start > seg.any_end + self.max_gap:
            if start + len(values) <= seg.base:
                self.stats.late_records += 1
                return [], []
            self.stats.gaps += 1
            r, e = self.close()
            requests, emitted = r, e
            seg = None
        elif seg is not None and start + len(values) <= seg.start:
            self.stats.late_records += 1  # before the current segment: its segment is gone
            return [], []
        if seg is None:
            seg = self.current = SegmentPicker(self, start)
        formed = seg.add(component, start, values, active)
        return requests + (formed or []), emitted

    def close(self) -> tuple[list[WindowRequest], list]:
        """End the current segment (gap or silence): its tail windows, and anything that became final."""
        seg, self.current = self.current, None
        if seg is None:
            return [], []
        requests = seg.close()
        emitted = seg.advance() if not requests else []
        if not seg.done:
            self.closing.append(seg)
        return requests, emitted

    def result(self, start: int, output: np.ndarray) -> list:
        """Route a window's output to the segment that asked for it."""
        for seg in [*self.closing, self.current]:
            if seg is not None and start in seg.pending:
                emitted = seg.result(start, output)
                if seg.done and seg in self.closing:
                    self.closing.remove(seg)
                return emitted
        return []

    @property
    def pending(self) -> int:
        return sum(len(s.pending) for s in [*self.closing, self.current] if s is not None)

    def time_of(self, index: int) -> float:
        return index / self.rate + self.time_offset

    def make_pick(self, label: str, on: int, off: int, peak: int, value: float) -> Pick:
        self.stats.picks += 1
        return Pick(
            trace_id=self.instrument,
            phase=label,
            peak_time=UTCDateTime(self.time_of(peak)),
            probability=float(value),
            start_time=UTCDateTime(self.time_of(on)),
            end_time=UTCDateTime(self.time_of(off)),
            model=self.model_name,
            model_sha256=self.model_sha256,
        )

    def make_detection(self, on: int, off: int, value: float) -> Detection:
        return Detection(
            trace_id=self.instrument,
            start_time=UTCDateTime(self.time_of(on)),
            end_time=UTCDateTime(self.time_of(off)),
            probability=float(value),
            model=self.model_name,
            model_sha256=self.model_sha256,
        )
