"""Triggers over final values fed in order: the last step of the picking core, in numpy only (no scipy).

``Trigger`` is ObsPy's ``trigger_onset(values, threshold, threshold / 2)`` as SeisBench's
``picks_from_annotations`` uses it: a trigger turns on at the first sample at or above the threshold and
stays on while samples stay at or above half of it (NaN counts as below); its pick is the first maximum
between the on sample and the last sample at or above half the threshold. ``WindowRuns`` is its counterpart
for window classifiers (ConvNetQuake): runs of consecutive windows whose score reaches the threshold.

Both can be fed a whole trace at once (batch) or chunk by chunk as samples become final (stream) and give the
same triggers, each exactly once. Positions are absolute sample indices (``first`` is the index of
``values[0]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

OFF_RATIO = 0.5  # a trigger ends below half its threshold, as SeisBench's picks_from_annotations
EVENT = "event"  # label of the event trigger (1 - noise) in TriggerSet's output


@dataclass(frozen=True)
class Triggered:
    """One closed trigger: ``label`` (phase or EVENT), on and off samples, the peak sample and its value."""

    label: str
    on: int
    off: int
    peak: int
    value: float


@dataclass
class Trigger:
    """Hysteresis trigger on ``threshold`` (on) and ``threshold * off_ratio`` (off; SeisBench's
    ``threshold / 2`` by default) over samples fed in order."""

    threshold: float
    label: str = ""
    off_ratio: float = OFF_RATIO
    on: int | None = None  # absolute on sample of the open trigger
    peak: int = 0
    peak_value: float = -np.inf
    last: int = -1  # absolute index of the last sample fed

    def feed(self, values: np.ndarray, first: int) -> list[Triggered]:
        """Feed samples starting at absolute index ``first``; returns the triggers they close, in order."""
        values = np.asarray(values)
        n = len(values)
        if n == 0:
            return []
        self.last = first + n - 1
        closed: list[Triggered] = []
        off_level = self.threshold * self.off_ratio
        i = 0
        if self.on is not None:  # an open trigger runs until the first sample below the off level
            below = np.flatnonzero(~(values >= off_level))
            end = int(below[0]) if below.size else n
            self._raise_peak(values, 0, end, first)
            if not below.size:
                return closed
            closed.append(self._take(first + end - 1))
            i = end
        rest = values[i:]
        if rest.size == 0:
            return closed
        on_at = np.flatnonzero(rest >= self.threshold)
        if on_at.size == 0:
            return closed
        # runs of samples at or above the off level; a run holding an on sample is one trigger
        level = np.concatenate(([False], rest >= off_level, [False]))
        edges = np.flatnonzero(level[1:] != level[:-1])
        run_start, run_end = edges[0::2], edges[1::2]
        k = np.searchsorted(on_at, run_start)  # first on sample at or after each run start
        has_on = k < on_at.size
        has_on[has_on] = on_at[k[has_on]] < run_end[has_on]
        for start_on, end in zip(on_at[k[has_on]].tolist(), run_end[has_on].tolist()):
            self.on = first + i + start_on
            self.peak, self.peak_value = self.on, -np.inf
            self._raise_peak(rest, start_on, end, first + i)
            if end < rest.size:
                closed.append(self._take(first + i + end - 1))
        return closed

    def close(self) -> Triggered | None:
        """End of data: an open trigger ends at the last sample fed (all of it at or above the off level)."""
        return self._take(self.last) if self.on is not None else None

    def _raise_peak(self, values: np.ndarray, a: int, b: int, first: int) -> None:
        if b > a:
            j = a + int(np.argmax(values[a:b]))
            if values[j] > self.peak_value:
                self.peak, self.peak_value = first + j, float(values[j])

    def _take(self, off: int) -> Triggered:
        out = Triggered(self.label, self.on, off, self.peak, self.peak_value)
        self.on, self.peak_value = None, -np.inf
        return out


def trigger_intervals(values: np.ndarray, threshold: float, off_ratio: float = OFF_RATIO) -> np.ndarray:
    """(on, off) sample pairs of ``Trigger`` over a whole trace: ObsPy's
    ``trigger_onset(values, t, t * off_ratio)``."""
    trigger = Trigger(threshold, off_ratio=off_ratio)
    closed = trigger.feed(values, 0)
    if (last := trigger.close()) is not None:
        closed.append(last)
    return np.asarray([(t.on, t.off) for t in closed], dtype=np.int64).reshape(-1, 2)


class TriggerSet:
    """The triggers over one picker's output (classes, samples): one per phase label with a threshold, and
    an EVENT trigger on 1 - P(noise) when ``thresholds`` has ``detection`` and the labels have ``N``. A phase
    trigger ends below ``off_ratios[label]`` times its threshold (default half of it)."""

    def __init__(
        self, labels: list[str], thresholds: dict[str, float], off_ratios: dict[str, float] | None = None
    ) -> None:
        ratios = off_ratios or {}
        self.rows = [
            (row, Trigger(thresholds[label], label, ratios.get(label, OFF_RATIO)))
            for row, label in enumerate(labels)
            if label != "N" and label in thresholds
        ]
        self.event = (
            (labels.index("N"), Trigger(thresholds["detection"], EVENT))
            if "N" in labels and "detection" in thresholds
            else None
        )

    def feed(self, values: np.ndarray, first: int) -> list[Triggered]:
        """Feed final samples (classes, n) from absolute index ``first``; returns the triggers they close."""
        closed = [t for row, trigger in self.rows for t in trigger.feed(values[row], first)]
        if self.event is not None:
            closed += self.event[1].feed(1.0 - values[self.event[0]], first)
        return closed

    def close(self) -> list[Triggered]:
        """End of data: the triggers still open."""
        triggers = [trigger for _, trigger in self.rows] + ([self.event[1]] if self.event else [])
        return [t for t in (trigger.close() for trigger in triggers) if t is not None]

    def provisional(self, values: np.ndarray, first: int) -> list[Triggered]:
        """The phase triggers that samples (classes, n) from ``first``, not final yet, would give after the
        final ones fed so far (the open triggers closed at their end); this set is left unchanged."""
        closed: list[Triggered] = []
        for row, trigger in self.rows:
            probe = replace(trigger)
            closed += probe.feed(values[row], first)
            if (last := probe.close()) is not None:
                closed.append(last)
        return closed

    def open_on(self, label: str) -> int | None:
        """The on sample of ``label``'s open trigger (None when closed)."""
        return next((t.on for _, t in self.rows if t.label == label), None)


@dataclass(frozen=True)
class WindowRun:
    """Consecutive windows at or above the threshold: first and last window start, and the best window."""

    first: int
    last: int
    best: int  # start of the window with the highest score (the first of equals)
    score: float
    output: Any  # the best window's output row


@dataclass
class WindowRuns:
    """Runs of windows, fed in start order, whose score reaches ``threshold``; a window below the threshold
    ends a run, and so does one that neither overlaps nor touches the run's last window."""

    threshold: float
    window: int
    _run: list = field(default_factory=list)  # [first, last, best, score, output] of the open run

    def feed(self, starts: np.ndarray, scores: np.ndarray, outputs: Any) -> list[WindowRun]:
        """Feed windows (absolute starts in order, scores, output rows); returns the runs they close."""
        closed = []
        scores = np.asarray(scores)
        above = (scores >= self.threshold).tolist()  # numpy's comparison, as for the sample triggers
        for start, score, up, output in zip(np.asarray(starts).tolist(), scores.tolist(), above, outputs):
            run = self._run
            if run and (not up or start > run[1] + self.window):
                closed.append(self._take())
            if up:
                if not self._run:
                    self._run = [start, start, start, score, output]
                else:
                    run[1] = start
                    if score > run[3]:
                        run[2:] = [start, score, output]
        return closed

    def close(self) -> WindowRun | None:
        """End of data: the open run."""
        return self._take() if self._run else None

    def _take(self) -> WindowRun:
        run, self._run = self._run, []
        return WindowRun(*run)
