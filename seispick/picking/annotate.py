"""Continuous annotation: a Stream of any length in, probability traces, picks and detections out.

The pipeline is split so that the service can put the windows of many requests into one batch:

    job = prepare(stream, card)                 # grouping, window placement (no inference)
    outputs = [model.predict(job.windows(a, b)) for a, b in batches]
    result = finish(job, np.concatenate(outputs), thresholds)   # the picking core: stacking, triggers

``finish`` drives the picking core (``segment.SegmentPicker``, the same one the stream drives record by
record) with each whole segment. ``annotate`` runs the three steps with a plain batch loop, for the CLI and
evaluation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import numpy as np
import obspy

from seispick.models.card import ModelCard
from seispick.models.inference import OnnxModel
from seispick.picking.grouping import Notes, StationSegment, group_stream
from seispick.picking.preprocess import normalise_windows
from seispick.picking.results import Detection, Pick
from seispick.picking.segment import CoreSettings, SegmentPicker, grid_clock
from seispick.picking.waveforms import InputLimits
from seispick.picking.windowing import cut_windows, window_offsets

# The limits ``prepare`` checks when given none: set by the service around a request (``job_limits``); the
# CLI and evaluation leave them unset (unbounded).
_JOB_LIMITS: ContextVar[InputLimits | None] = ContextVar("seispick_job_limits", default=None)


class NoUsableDataError(ValueError):
    """The input holds no data the model can use; the message says why."""


@contextmanager
def job_limits(limits: InputLimits) -> Iterator[None]:
    """``prepare`` checks ``limits`` (segments, windows) within the block, also in the threads started from it
    with ``asyncio.to_thread`` (which copies the context)."""
    token = _JOB_LIMITS.set(limits)
    try:
        yield
    finally:
        _JOB_LIMITS.reset(token)


@dataclass
class AnnotationJob:
    """Segments of a stream and the windows to run over them, before inference."""

    card: ModelCard
    segments: list[StationSegment]
    offsets: list[np.ndarray]  # window offsets per segment
    notes: Notes
    overlap: int  # samples shared by consecutive grid windows
    # flat index of windows: (segment index, window index within segment)
    _flat: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))

    def __post_init__(self) -> None:
        pairs = [(i, j) for i, offs in enumerate(self.offsets) for j in range(len(offs))]
        self._flat = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)

    @property
    def n_windows(self) -> int:
        return len(self._flat)

    def windows(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Normalised windows start..stop of the flat window list, ready for ``OnnxModel.predict``."""
        stop = self.n_windows if stop is None else min(stop, self.n_windows)
        window = self.card.window_samples
        parts = []
        flat = self._flat[start:stop]
        for seg in np.unique(flat[:, 0]):
            idx = flat[flat[:, 0] == seg, 1]
            parts.append(cut_windows(self.segments[seg].data, self.offsets[seg][idx], window))
        if not parts:
            return np.zeros((0, len(self.card.channel_order), window), dtype=np.float32)
        return normalise_windows(np.concatenate(parts), self.card.normalisation)

    def segment_window_counts(self) -> list[int]:
        return [len(o) for o in self.offsets]


@dataclass
class SegmentAnnotation:
    """Stacked model output over one segment: (classes, samples) for pickers."""

    segment: StationSegment
    probabilities: np.ndarray

    def time_of(self, sample: int | float) -> float:
        return self.segment.time_of(sample)

    def to_traces(self, labels: list[str], model_name: str) -> obspy.Stream:
        """Probability traces as an ObsPy Stream, channel ``<model>_<label>`` as SeisBench names them."""
        net, sta, loc, _ = self.segment.instrument.split(".")
        return obspy.Stream(
            [
                obspy.Trace(
                    self.probabilities[i].astype(np.float32),
                    header={
                        "network": net,
                        "station": sta,
                        "location": loc,
                        "channel": f"{model_name}_{label}",
                        "starttime": obspy.UTCDateTime(self.time_of(0)),
                        "sampling_rate": self.segment.sampling_rate,
                    },
                )
                for i, label in enumerate(labels)
            ]
        )


@dataclass
class AnnotationResult:
    """What one annotation run produced."""

    model: str
    model_sha256: str
    annotations: list[SegmentAnnotation]
    picks: list[Pick]
    detections: list[Detection]
    notes: list[str]

    def probability_stream(self, labels: list[str]) -> obspy.Stream:
        stream = obspy.Stream()
        for annotation in self.annotations:
            stream += annotation.to_traces(labels, self.model)
        return stream

    def covered_intervals(self) -> list[dict]:
        """The time spans that were annotated, per instrument."""
        return [
            {
                "trace_id": a.segment.instrument,
                "start_time": str(a.segment.starttime),
                "end_time": str(a.segment.endtime),
            }
            for a in self.annotations
        ]


def prepare(
    stream: obspy.Stream, card: ModelCard, overlap: int | None = None, limits: InputLimits | None = None
) -> AnnotationJob:
    """Group ``stream`` for ``card``'s model and place windows on the absolute time grid.

    ``limits`` (default: those of ``job_limits``, else none) bound the segments (checked while grouping) and
    the windows (checked once placed, before any is cut): ``LimitExceededError``.
    """
    notes = Notes()
    limits = limits or _JOB_LIMITS.get()
    if len(stream) == 0:
        raise NoUsableDataError("no traces in the input")
    settings = CoreSettings.of(card, card.name, overlap=overlap)  # refuses a bad overlap
    segments = group_stream(stream, card.channel_order, card.sampling_rate, notes, limits)
    if not segments:
        reason = "; ".join(notes.messages) or "no trace has usable samples"
        raise NoUsableDataError(f"no usable data: {reason}")
    offsets = []
    for seg in segments:
        if seg.n_samples < card.window_samples:
            notes.add(
                f"{seg.instrument}: a segment of {seg.n_samples / seg.sampling_rate:.2f} s is shorter than the "
                f"{card.window_samples / card.sampling_rate:.2f} s window and was zero-padded"
            )
        offsets.append(window_offsets(seg.start_index, seg.n_samples, card.window_samples, settings.stride))
    if limits is not None:
        windows = sum(len(o) for o in offsets)
        limits.check("max_windows", windows, f"windows of {card.name} over {len(segments)} segment(s)")
    return AnnotationJob(
        card=card,
        segments=segments,
        offsets=offsets,
        notes=notes,
        overlap=card.window_samples - settings.stride,
    )


def run_core(
    job: AnnotationJob, outputs: np.ndarray, settings: CoreSettings
) -> list[tuple[StationSegment, SegmentPicker, list[Pick | Detection]]]:
    """Each whole segment of ``job`` through the picking core with its window ``outputs`` (in ``job``'s flat
    window order): the segment, its core (holding its final probabilities) and what it emitted."""
    out, position = [], 0
    for seg, offsets in zip(job.segments, job.offsets):
        seg_out = outputs[position : position + len(offsets)]
        position += len(offsets)
        core = SegmentPicker(
            settings,
            seg.instrument,
            seg.start_index,
            grid_clock(seg.sampling_rate, seg.time_offset),
            keep=True,
            capacity=max(seg.n_samples, int(offsets[-1]) + settings.window),
            vertical_only=set(seg.channels) <= {"Z"},
        )
        starts = core.close(seg.start_index + seg.n_samples)
        if not np.array_equal(starts - seg.start_index, offsets):
            raise RuntimeError(f"{seg.instrument}: the core placed other windows than the job")  # never
        out.append((seg, core, core.results(starts, seg_out)))
    return out


def finish(
    job: AnnotationJob,
    outputs: np.ndarray,
    model_name: str,
    model_sha256: str = "",
    thresholds: dict[str, float] | None = None,
    stacking: str | None = None,
    off_ratios: dict[str, float] | None = None,
) -> AnnotationResult:
    """Stack window outputs (in ``job``'s flat window order) and extract picks and detections (``thresholds``
    and trigger ``off_ratios`` given replace the card's)."""
    settings = CoreSettings.of(
        job.card, model_name, model_sha256, thresholds, stacking, job.overlap, off_ratios
    )
    annotations, picks, detections = [], [], []
    for segment, core, emitted in run_core(job, outputs, settings):
        if not settings.per_window:
            annotations.append(SegmentAnnotation(segment, core.probabilities))
        picks += [e for e in emitted if isinstance(e, Pick)]
        detections += [e for e in emitted if isinstance(e, Detection)]
    picks.sort(key=lambda p: (p.peak_time, p.trace_id, p.phase))
    detections.sort(key=lambda d: (d.start_time, d.trace_id))
    return AnnotationResult(
        model=model_name,
        model_sha256=model_sha256,
        annotations=annotations,
        picks=picks,
        detections=detections,
        notes=list(job.notes.messages),
    )


def annotate(
    stream: obspy.Stream,
    model: OnnxModel,
    thresholds: dict[str, float] | None = None,
    batch_size: int = 32,
    overlap: int | None = None,
    stacking: str | None = None,
    progress: Callable[[AnnotationJob, int], None] | None = None,
) -> AnnotationResult:
    """Annotate a stream with a picker: probability traces, picks and detections.

    ``progress(job, windows_done)`` is called after each batch.
    """
    if model.card.task != "picker":
        raise ValueError(
            f"model {model.name} is a {model.card.task}; use seispick.picking.detect for detectors"
        )
    job = prepare(stream, model.card, overlap=overlap)
    outputs = []
    for start in range(0, job.n_windows, batch_size):
        batch = job.windows(start, start + batch_size)
        outputs.append(model.predict(batch))
        if progress:
            progress(job, start + len(batch))
    merged = np.concatenate(outputs) if outputs else np.zeros((0, len(model.card.labels), 0), np.float32)
    return finish(job, merged, model.name, model.sha256, thresholds=thresholds, stacking=stacking)
