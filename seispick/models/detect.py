"""Event detection with a window classifier (ConvNetQuake) over continuous data.

The detector sees windows on the same absolute time grid as the pickers (``annotate.prepare``) and outputs
(windows, 1 + K) class probabilities: column 0 is noise, column k an event in location cell k - 1. Consecutive
windows whose event probability (1 - P(noise)) reaches the threshold merge into one :class:`Detection`.
numpy and onnxruntime only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import obspy
from obspy import UTCDateTime

from .annotate import AnnotationJob, prepare
from .grouping import StationSegment
from .picks import Detection
from .runtime import OnnxModel

__all__ = ["DetectorRun", "SegmentWindows", "detect", "detections_from_windows", "run_detector"]

NOISE = 0


@dataclass
class SegmentWindows:
    """Per-window class probabilities of one segment; ``offsets`` are window starts within the segment."""

    segment: StationSegment
    offsets: np.ndarray
    probabilities: np.ndarray  # (windows, 1 + K)
    window_samples: int

    @property
    def event_probability(self) -> np.ndarray:
        """1 - P(noise) per window."""
        return 1.0 - self.probabilities[:, NOISE]

    def window_span(self, i: int) -> tuple[float, float]:
        """Epoch seconds of the first and last sample of window ``i`` (clipped to the segment)."""
        start = int(self.offsets[i])
        stop = min(start + self.window_samples, self.segment.n_samples) - 1
        return self.segment.time_of(start), self.segment.time_of(max(stop, start))


@dataclass
class DetectorRun:
    """A detector's window outputs over a stream, with the notes from grouping."""

    model: str
    model_sha256: str
    windows: list[SegmentWindows]
    notes: list[str]


def _check_detector(model: OnnxModel) -> None:
    if model.card.task != "detector":
        raise ValueError(f"model {model.name} is a {model.card.task}, not a detector")


def run_detector(
    stream: obspy.Stream, model: OnnxModel, batch_size: int = 256, overlap: int | None = None
) -> DetectorRun:
    """Class probabilities for every window of ``stream`` (grouped and gridded as for the pickers)."""
    _check_detector(model)
    job: AnnotationJob = prepare(stream, model.card, overlap=overlap)
    outputs = [model.predict(job.windows(a, a + batch_size)) for a in range(0, job.n_windows, batch_size)]
    n_classes = len(model.card.labels)
    merged = np.concatenate(outputs) if outputs else np.zeros((0, n_classes), np.float32)
    if merged.ndim != 2 or merged.shape[1] != n_classes:
        raise ValueError(
            f"model {model.name} output {merged.shape[1:]} does not match its {n_classes} labels"
        )
    windows, position = [], 0
    for segment, offsets in zip(job.segments, job.offsets):
        probs = merged[position : position + len(offsets)]
        position += len(offsets)
        windows.append(SegmentWindows(segment, offsets, probs, model.card.window_samples))
    return DetectorRun(model.name, model.sha256, windows, list(job.notes.messages))


def detections_from_windows(
    windows: SegmentWindows, threshold: float, model: str, model_sha256: str = ""
) -> list[Detection]:
    """Merge runs of consecutive windows (overlapping or touching) with event probability >= ``threshold``
    into detections; a window below the threshold ends a run.

    A detection spans its first window's start to its last window's end; its probability is the highest event
    probability of the run, and its cell the most likely cell of that window with the cell's class
    probability (the softmax output, so at most the event probability).
    """
    event = windows.event_probability
    above = np.flatnonzero(event >= threshold)
    runs: list[list[int]] = []
    for i in above:
        previous = runs[-1][-1] if runs else -2
        if i == previous + 1 and windows.offsets[i] <= windows.offsets[previous] + windows.window_samples:
            runs[-1].append(int(i))
        else:
            runs.append([int(i)])
    has_cells = windows.probabilities.shape[1] > 2
    out = []
    for run in runs:
        best = run[int(np.argmax(event[run]))]
        cell = cell_probability = None
        if has_cells:
            cell = int(np.argmax(windows.probabilities[best, 1:]))
            cell_probability = float(windows.probabilities[best, 1 + cell])
        out.append(
            Detection(
                trace_id=windows.segment.instrument,
                start_time=UTCDateTime(windows.window_span(run[0])[0]),
                end_time=UTCDateTime(windows.window_span(run[-1])[1]),
                probability=float(event[best]),
                model=model,
                model_sha256=model_sha256,
                cell=cell,
                cell_probability=cell_probability,
            )
        )
    return out


def detect(
    stream: obspy.Stream,
    model: OnnxModel,
    threshold: float | None = None,
    batch_size: int = 256,
    overlap: int | None = None,
) -> list[Detection]:
    """Detections in ``stream`` by a detector model (threshold default: the card's ``detection`` threshold)."""
    _check_detector(model)
    threshold = model.card.default_thresholds.get("detection", 0.5) if threshold is None else threshold
    run = run_detector(stream, model, batch_size=batch_size, overlap=overlap)
    detections = [
        d for w in run.windows for d in detections_from_windows(w, threshold, run.model, run.model_sha256)
    ]
    return sorted(detections, key=lambda d: (d.start_time, d.trace_id))
