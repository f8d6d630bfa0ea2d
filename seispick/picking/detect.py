"""Event detection with a window classifier (ConvNetQuake) over continuous data.

The detector sees windows on the same absolute time grid as the pickers (``annotate.prepare``) and outputs
(windows, 1 + K) class probabilities: column 0 is noise, column k an event in location cell k - 1. Consecutive
windows whose event probability (1 - P(noise)) reaches the threshold merge into one :class:`Detection`
(``trigger.WindowRuns``). ``detect`` runs the picking core (``segment.SegmentPicker``) as ``annotate`` does, so
the stream detects with the same code record by record. numpy and onnxruntime only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import obspy

from seispick.models.inference import OnnxModel
from seispick.picking.annotate import AnnotationJob, AnnotationResult, finish, prepare
from seispick.picking.grouping import StationSegment
from seispick.picking.results import Detection, PickContext
from seispick.picking.segment import NOISE, grid_clock
from seispick.picking.trigger import WindowRuns

__all__ = [
    "DetectorRun",
    "SegmentWindows",
    "detect",
    "detect_result",
    "detections_from_windows",
    "run_detector",
]


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


Progress = Callable[[AnnotationJob, int], None]


def _detector_outputs(
    stream: obspy.Stream,
    model: OnnxModel,
    batch_size: int,
    overlap: int | None,
    progress: Progress | None = None,
) -> tuple[AnnotationJob, np.ndarray]:
    _check_detector(model)
    job: AnnotationJob = prepare(stream, model.card, overlap=overlap)
    outputs = []
    for start in range(0, job.n_windows, batch_size):
        outputs.append(model.predict(job.windows(start, start + batch_size)))
        if progress:
            progress(job, min(start + batch_size, job.n_windows))
    n_classes = len(model.card.labels)
    merged = np.concatenate(outputs) if outputs else np.zeros((0, n_classes), np.float32)
    if merged.ndim != 2 or merged.shape[1] != n_classes:
        raise ValueError(
            f"model {model.name} output {merged.shape[1:]} does not match its {n_classes} labels"
        )
    return job, merged


def run_detector(
    stream: obspy.Stream, model: OnnxModel, batch_size: int = 256, overlap: int | None = None
) -> DetectorRun:
    """Class probabilities for every window of ``stream`` (grouped and gridded as for the pickers)."""
    job, merged = _detector_outputs(stream, model, batch_size, overlap)
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
    segment = windows.segment
    runs = WindowRuns(threshold, windows.window_samples)
    starts = segment.start_index + np.asarray(windows.offsets, dtype=np.int64)
    closed = runs.feed(starts, windows.event_probability, windows.probabilities)
    closed += [run] if (run := runs.close()) else []
    context = PickContext(
        segment.instrument, model, model_sha256, grid_clock(segment.sampling_rate, segment.time_offset)
    )
    end = segment.start_index + segment.n_samples
    return [context.window_detection(run, windows.window_samples, end) for run in closed]


def detect(
    stream: obspy.Stream,
    model: OnnxModel,
    threshold: float | None = None,
    batch_size: int = 256,
    overlap: int | None = None,
    progress: Progress | None = None,
) -> list[Detection]:
    """Detections in ``stream`` by a detector model (threshold default: the card's ``detection`` threshold).

    ``progress(job, windows_done)`` is called after each batch (as ``annotate`` does).
    """
    return detect_result(stream, model, threshold, batch_size, overlap, progress).detections


def detect_result(
    stream: obspy.Stream,
    model: OnnxModel,
    threshold: float | None = None,
    batch_size: int = 256,
    overlap: int | None = None,
    progress: Progress | None = None,
) -> AnnotationResult:
    """``detect`` with the notes on the input: an ``AnnotationResult`` holding detections and no picks."""
    job, merged = _detector_outputs(stream, model, batch_size, overlap, progress)
    thresholds = None if threshold is None else {"detection": threshold}
    return finish(job, merged, model.name, model.sha256, thresholds=thresholds)
