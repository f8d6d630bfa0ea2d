"""The picking core driven record by record: one instrument's records in, windows to run and picks out.

An ``InstrumentPicker`` routes records (one component's samples from an absolute sample index) to the
segment they continue, or starts a new segment after a gap. A ``RecordSegment`` holds the segment's samples
per component until no window needs them and drives a ``segment.SegmentPicker`` (the core batch annotation
uses): windows are cut as soon as the data of every awaited component reach them, outputs go back in any
order, and the picks and detections come out once final, identical to ``annotate`` over the same data.

Late components are waited for, not zeroed: a component that lags the others (a ring filled channel after
channel, a held channel) holds the windows back while the samples kept stay under ``max_wait_bytes``, so
the picks are still those of ``annotate``. Zeros (as batch mode fills a missing component) are used only
for a component that is not delivering while the others stream at about real time (``lag_tolerance_s``)
or once that bound is reached; both are kept in ``zero_fills`` for a note. Synchronous, no I/O:
``service.stream.picker`` feeds it records and inference results.

With ``first_look`` (samples) the windows to run include first-look windows (``WindowRequest.first_look``)
ending at the newest data (see ``segment``); their outputs go back through ``result(..., first_look=True)``
and change only the preliminary picks.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from seispick.models.card import ModelCard
from seispick.picking.notes import MAX_LISTED
from seispick.picking.preprocess import normalise_windows
from seispick.picking.results import Detection, Pick, PickUpdate
from seispick.picking.segment import CoreSettings, SegmentPicker, grid_clock
from seispick.picking.windowing import cut_windows

LATE_COMPONENT_MAX_BYTES = 8 * 1024 * 1024  # samples kept per instrument while waiting: an hour of 3 x 100 Hz
CATCH_UP = 2.0  # others delivering data faster than this times real time are catching up: no silence counted


@dataclass(frozen=True)
class WindowRequest:
    """A normalised (channels, samples) window to run, identified by instrument and absolute start sample;
    ``first_look``: a first-look window (its output is for the preliminary picks only)."""

    instrument: str
    start: int
    window: np.ndarray
    first_look: bool = False


@dataclass
class InstrumentStats:
    """Counters an operator watches per instrument."""

    records: int = 0
    samples: int = 0
    late_records: int = 0
    duplicate_records: int = 0
    gaps: int = 0
    windows: int = 0
    first_look_windows: int = 0
    picks: int = 0
    detections: int = 0
    late_component_bound_reached: int = 0  # records after which a lagging component was zero-filled


@dataclass(frozen=True)
class ZeroFill:
    """Components an instrument stopped waiting for: zeros in their place from ``time`` (epoch seconds) on;
    ``bound``: the samples kept for the wait reached ``max_wait_bytes`` (else they stopped delivering)."""

    components: tuple[int, ...]
    time: float
    bound: bool


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
        self.all_end = start  # every awaited component's data reach [start, all_end)
        self.reach = [start] * self.n_channels  # per component: the end of its furthest data (nothing of it
        # is covered from there on)
        self.core = SegmentPicker(
            owner.settings,
            owner.instrument,
            start,
            owner.time_of,
            preliminary=owner.preliminary,
            first_look=owner.first_look,
            vertical_only=owner.vertical_only,
        )

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

        ``active`` are the components windows wait for (see :meth:`ready`).
        """
        if not self.store(component, start, values):
            return None
        return self.ready(active)

    def store(self, component: int, start: int, values: np.ndarray) -> bool:
        """Keep a record's new samples; False (counted) when it was late or a duplicate."""
        end = start + len(values)
        stats = self.owner.stats
        if end <= self.base:
            stats.late_records += 1
            return False
        lo = max(start, self.base)
        self._grow(end)
        a, b = lo - self.base, end - self.base
        reach = self.reach[component]
        if lo >= reach:  # the usual record: after everything of its component, every sample new
            self.data[component, a:b] = values[lo - start :]
            self.covered[component, a:b] = True
            stats.samples += b - a
            self.reach[component] = end
        else:
            fresh = ~self.covered[component, a:b]
            if not fresh.any():
                stats.duplicate_records += 1
                return False
            self.data[component, a:b][fresh] = values[lo - start :][fresh]
            self.covered[component, a:b] |= True
            stats.samples += int(fresh.sum())
            self.reach[component] = max(reach, end)
        any_end = self.any_end
        if lo <= any_end < end:  # the union's covered run from the start goes on over this record, and on
            # over what other components hold beyond it
            if end >= max(self.reach):
                self.any_end = end
            else:
                self.any_end = self._run_end(self.covered[:, end - self.base :].any(axis=0), end)
        return True

    def ready(self, active: list[int]) -> list[WindowRequest]:
        """The windows the data of every ``active`` component now reach (a hole of one component, data on
        both sides, is zero as in batch mode); samples no window needs any more are dropped."""
        reach = min([self.reach[c] for c in active]) if active else self.any_end
        self.all_end = max(self.all_end, min(reach, self.any_end))
        requests = self._requests(self.core.extend(self.all_end, self.any_end))
        if (look := self.core.first_look_window()) is not None:
            requests += self._requests(np.asarray([look], np.int64), first_look=True)
        self._trim()
        return requests

    def blockers(self, active: list[int]) -> list[int]:
        """The ``active`` components whose data end where the ready data end: the windows wait for them."""
        if self.all_end >= self.any_end:
            return []
        return [c for c in active if self.reach[c] <= self.all_end]

    def close(self) -> list[WindowRequest]:
        """The segment ended where some component's data end: the windows batch mode adds at a segment end
        (a component still awaited is zero from where its data end, as in batch mode)."""
        requests = self._requests(self.core.close(self.any_end))
        self.data, self.covered = self.data[:, :0].copy(), self.covered[:, :0].copy()  # no window is cut now
        return requests

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
        if need > 0:  # by a quarter at least: a long wait grows in few copies
            need = max(need, self.owner.settings.stride, self.data.shape[1] // 4)
            self.data = np.concatenate([self.data, np.zeros((self.n_channels, need), np.float32)], axis=1)
            self.covered = np.concatenate([self.covered, np.zeros((self.n_channels, need), bool)], axis=1)

    def _requests(self, starts: np.ndarray, first_look: bool = False) -> list[WindowRequest]:
        """Cut and normalise the windows at ``starts`` (a segment shorter than the window is zero-padded)."""
        if not starts.size:
            return []
        window = self.owner.settings.window
        raw = cut_windows(self.data, starts - self.base, window)
        windows = normalise_windows(raw, self.owner.card.normalisation)
        if first_look:
            self.owner.stats.first_look_windows += len(starts)
        else:
            self.owner.stats.windows += len(starts)
        instrument = self.owner.instrument
        return [WindowRequest(instrument, s, w, first_look) for s, w in zip(starts.tolist(), windows)]

    def _trim(self) -> None:
        """Drop samples no window can still need (keeps the last full window for a possible tail window);
        after a wait, what is kept is copied so that the buffer of the wait is freed."""
        drop = self.core.needed_from() - self.base
        if drop > self.owner.settings.stride:
            self.data, self.covered = self.data[:, drop:], self.covered[:, drop:]
            if drop > self.data.shape[1]:
                self.data, self.covered = self.data.copy(), self.covered.copy()
            self.base += drop

    @property
    def sample_bytes(self) -> int:
        """Bytes of the samples kept (what a wait for a lagging component makes grow)."""
        return self.data.nbytes + self.covered.nbytes

    @property
    def nbytes(self) -> int:
        """Bytes held in sample and stacking buffers."""
        return self.sample_bytes + self.core.nbytes


@dataclass
class InstrumentPicker:
    """Continuous picking for one instrument (NET.STA.LOC.BI): routes records and results to segments.

    ``max_gap`` (samples) is how far past the covered end new data may start and still continue the segment
    (0: any missing sample is a gap, as in batch mode). Windows wait for every component of the model, so
    components sent one after another give the batch picks. A component is zero-filled from where its data
    end (as batch mode fills a missing one), so that a dead channel cannot stall its station, only when

    - it is silent (or was never seen) while the others streamed ``lag_tolerance_s`` seconds of data at
      about real time (``now``: arrival, wall clock; data coming more than ``CATCH_UP`` times faster than
      real time are a backlog the silent component is likely in too, and do not count), or
    - the samples kept while waiting for it exceed ``max_wait_bytes`` (``stats.late_component_bound_reached``).

    Each such zero fill of a component once seen (or forced by the bound) is kept in ``zero_fills`` (the last
    ``MAX_LISTED``) for a note. A zero-filled component is waited for again once its data reach the ready end.
    With ``preliminary`` the segments' pick updates (preliminary, confirmed, rejected) collect for
    ``take_updates``; ``first_look`` (samples, below the stride; 0: off) adds first-look windows for them.
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
    max_wait_bytes: int = LATE_COMPONENT_MAX_BYTES
    preliminary: bool = False
    first_look: int = 0
    stats: InstrumentStats = field(default_factory=InstrumentStats)

    def __post_init__(self) -> None:
        self.settings = CoreSettings.of(
            self.card, self.model_name, self.model_sha256, self.thresholds, self.stacking, self.overlap
        )
        self.time_of = grid_clock(self.card.sampling_rate, self.time_offset)
        n_channels = len(self.card.channel_order)
        self.awaited: set[int] = set(range(n_channels))  # components the windows wait for
        self.seen: set[int] = set()  # components that delivered data
        self.silence = [0.0] * n_channels  # real-time seconds the others streamed since its last record
        self.lead: int | None = None  # the end of the furthest data of any component (absolute sample)
        self.last_arrival: float | None = None  # wall clock of the last record
        self.zero_fills: deque[ZeroFill] = deque(maxlen=MAX_LISTED)
        self.current: RecordSegment | None = None
        self.closing: list[RecordSegment] = []
        self._updates: list[PickUpdate] = []

    def vertical_only(self) -> bool:
        """Whether no horizontal component has delivered data (asked by a segment when it first triggers: by
        then the windows waited for every component, so a three-component instrument has shown them)."""
        order = self.card.channel_order
        return all(order[c] == "Z" for c in self.seen)

    @property
    def last_sample_index(self) -> int | None:
        return None if self.current is None else self.current.any_end - 1

    def add(
        self, component: int, start: int, values: np.ndarray, now: float | None = None
    ) -> tuple[list[WindowRequest], list[Pick | Detection]]:
        """Add a record's samples (absolute start index, arriving at ``now``, wall clock seconds); returns
        windows to run and records already final."""
        self.stats.records += 1
        self._count_silence(component, start + len(values), time.monotonic() if now is None else now)
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
        if not seg.store(component, start, values):
            return requests, emitted
        if component not in self.awaited and seg.reach[component] >= seg.all_end:
            self.awaited.add(component)  # delivering again and caught up: waited for again
        return requests + self._ready(seg), emitted

    def _count_silence(self, component: int, end: int, now: float) -> None:
        """Credit every other component with the seconds of data this record adds at about real time."""
        if self.lead is not None and self.last_arrival is not None:
            wall = max(now - self.last_arrival, 0.0)
            data = max(end - self.lead, 0) / self.card.sampling_rate
            if data <= CATCH_UP * wall:
                self.silence = [s + min(wall, data) for s in self.silence]
        self.lead = end if self.lead is None else max(self.lead, end)
        self.last_arrival = now
        self.silence[component] = 0.0
        self.seen.add(component)

    def _ready(self, seg: RecordSegment) -> list[WindowRequest]:
        """The windows the awaited components' data reach, after zero-filling the components that hold them
        back while silent too long or while the samples kept exceed ``max_wait_bytes``."""
        requests = seg.ready(sorted(self.awaited))
        bound_reached = False
        while blockers := seg.blockers(sorted(self.awaited)):
            over = seg.sample_bytes > self.max_wait_bytes
            late = blockers if over else [c for c in blockers if self.silence[c] > self.lag_tolerance_s]
            if not late:
                break
            bound_reached |= over
            self.awaited.difference_update(late)
            if over or self.seen.intersection(late):  # never seen and silent: the components note says it
                self.zero_fills.append(ZeroFill(tuple(late), self.time_of(seg.all_end), over))
            requests += seg.ready(sorted(self.awaited))
        self.stats.late_component_bound_reached += bound_reached
        return requests

    def close(self) -> tuple[list[WindowRequest], list[Pick | Detection]]:
        """End the current segment (gap or silence): its tail windows, and anything that became final."""
        seg, self.current = self.current, None
        if seg is None:
            return [], []
        requests = seg.close()
        emitted = self._counted(seg.advance())
        self._updates += seg.core.take_updates()
        if not seg.done:
            self.closing.append(seg)
        return requests, emitted

    def result(self, start: int, output: np.ndarray, first_look: bool = False) -> list[Pick | Detection]:
        """Route a window's output to the segment that asked for it (a first-look window's: no final item)."""
        if first_look:
            for seg in [*self.closing, self.current]:
                if seg is not None and start in seg.core.looking:
                    seg.core.look_result(start, output)
                    self._updates += seg.core.take_updates()
                    break
            return []
        for seg in [*self.closing, self.current]:
            if seg is not None and start in seg.pending:
                emitted = self._counted(seg.result(start, output))
                self._updates += seg.core.take_updates()
                if seg.done and seg in self.closing:
                    self.closing.remove(seg)
                return emitted
        return []

    def _counted(self, emitted: list[Pick | Detection]) -> list[Pick | Detection]:
        self.stats.picks += sum(isinstance(e, Pick) for e in emitted)
        self.stats.detections += sum(isinstance(e, Detection) for e in emitted)
        return emitted

    def set_preliminary(self, preliminary: bool, first_look: int = 0) -> None:
        """Turn the pick updates (and first-look windows) on or off from now on, in the open segments too
        (``SegmentPicker.set_preliminary``); off drops the updates not yet taken."""
        self.preliminary, self.first_look = preliminary, first_look if preliminary else 0
        for seg in [*self.closing, self.current]:
            if seg is not None:
                seg.core.set_preliminary(preliminary, self.first_look, look_from=seg.base)
        if not preliminary:
            self._updates = []

    def take_updates(self) -> list[PickUpdate]:
        """Pick updates since the last call (``preliminary`` only), in order."""
        updates, self._updates = self._updates, []
        return updates

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
