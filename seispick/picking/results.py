"""Picks and detections: the records seispick produces, and how triggers (``trigger.py``) become them."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from obspy import UTCDateTime

from seispick.picking.trigger import EVENT, Triggered, TriggerSet, WindowRun


@dataclass(frozen=True)
class Pick:
    """A phase arrival: peak of an above-threshold interval of the phase probability.

    ``id`` is the pick's identity everywhere (CSV, JSON, QuakeML resource ids, HTTP, SSE, WebSocket, Redis).
    """

    trace_id: str  # NET.STA.LOC.BI (band + instrument code of the channels used)
    phase: str
    peak_time: UTCDateTime
    probability: float
    start_time: UTCDateTime
    end_time: UTCDateTime
    model: str
    model_sha256: str = ""

    @property
    def id(self) -> str:
        """``pick-`` + 16 hex of sha1("trace_id|phase|peak time in 10 ms|model sha256 (or name)").

        The same pick of the same model on the same data always gets the same id, whatever the input format
        or path (CLI, HTTP, stream) and however the file was cut, as long as the peak stays in its 10 ms.
        """
        key = f"{self.trace_id}|{self.phase}|{centis(self.peak_time)}|{self.model_sha256 or self.model}"
        return "pick-" + hashlib.sha1(key.encode()).hexdigest()[:16]

    @property
    def station_id(self) -> str:
        """NET.STA.LOC."""
        return self.trace_id.rsplit(".", 1)[0]

    def as_dict(self) -> dict:
        """JSON-ready dict with its id and UTC ISO times; ``probability`` is a number."""
        return {
            "id": self.id,
            "trace_id": self.trace_id,
            "phase": self.phase,
            "peak_time": iso(self.peak_time),
            "probability": round(float(self.probability), 6),
            "start_time": iso(self.start_time),
            "end_time": iso(self.end_time),
            "model": self.model,
            "model_sha256": self.model_sha256,
        }


@dataclass(frozen=True)
class Detection:
    """An event detection: an interval where the event probability (1 - noise, or a detector's) is high."""

    trace_id: str
    start_time: UTCDateTime
    end_time: UTCDateTime
    probability: float
    model: str
    model_sha256: str = ""
    cell: int | None = None  # most likely location cell (detectors with cells)
    cell_probability: float | None = None

    @property
    def id(self) -> str:
        """``det-`` + 16 hex of sha1("trace_id|D|start in 10 ms|end in 10 ms|model sha256 (or name)")."""
        key = (
            f"{self.trace_id}|D|{centis(self.start_time)}|{centis(self.end_time)}|"
            f"{self.model_sha256 or self.model}"
        )
        return "det-" + hashlib.sha1(key.encode()).hexdigest()[:16]

    def as_dict(self) -> dict:
        """JSON-ready dict with its id and UTC ISO times; probabilities are numbers."""
        out = {
            "id": self.id,
            "trace_id": self.trace_id,
            "start_time": iso(self.start_time),
            "end_time": iso(self.end_time),
            "probability": round(float(self.probability), 6),
            "model": self.model,
            "model_sha256": self.model_sha256,
        }
        if self.cell is not None:
            out["cell"] = self.cell
            out["cell_probability"] = round(float(self.cell_probability or 0.0), 6)
        return out


PRELIMINARY, CONFIRMED, REJECTED = "preliminary", "confirmed", "rejected"  # QuakeML evaluationStatus


@dataclass(frozen=True)
class PickUpdate:
    """A step of a pick's life on the preliminary feed: ``preliminary`` (a partial stack crossed the
    threshold), ``confirmed`` (the final pick; ``supersedes`` names the preliminary ids it replaces when the
    peak moved to another id) or ``rejected`` (a preliminary pick no final pick overlaps)."""

    status: str
    pick: Pick
    supersedes: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return self.pick.id

    def as_dict(self) -> dict:
        """The pick's dict with ``status``, ``evaluation_mode`` (automatic) and ``supersedes``."""
        return {
            **self.pick.as_dict(),
            "status": self.status,
            "evaluation_mode": "automatic",
            "supersedes": list(self.supersedes),
        }


def iso(t: UTCDateTime) -> str:
    """UTC ISO 8601 with microseconds and a Z."""
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def centis(t: UTCDateTime) -> int:
    """round(t * 100) in exact integer arithmetic (halves up): the 10 ms bucket ids are built from."""
    return (t.ns + 5_000_000) // 10_000_000


@dataclass(frozen=True)
class PickContext:
    """Who picked where: instrument, model and the sample clock; turns triggers into picks and detections.

    ``time_of(i)`` gives the epoch seconds of sample index ``i`` (in the index space the triggers use).
    """

    trace_id: str
    model: str
    model_sha256: str
    time_of: Callable[[int], float]

    def pick(self, t: Triggered) -> Pick:
        """The pick of a phase trigger: its peak, the peak's probability and the trigger's on and off times."""
        return Pick(
            trace_id=self.trace_id,
            phase=t.label,
            peak_time=UTCDateTime(self.time_of(t.peak)),
            probability=float(t.value),
            start_time=UTCDateTime(self.time_of(t.on)),
            end_time=UTCDateTime(self.time_of(t.off)),
            model=self.model,
            model_sha256=self.model_sha256,
        )

    def detection(
        self, on: int, off: int, value: float, cell: int | None = None, cell_probability: float | None = None
    ) -> Detection:
        """A detection from sample ``on`` to sample ``off`` (inclusive) with its highest event probability."""
        return Detection(
            trace_id=self.trace_id,
            start_time=UTCDateTime(self.time_of(on)),
            end_time=UTCDateTime(self.time_of(off)),
            probability=float(value),
            model=self.model,
            model_sha256=self.model_sha256,
            cell=cell,
            cell_probability=cell_probability,
        )

    def window_detection(self, run: WindowRun, window: int, end: int | None = None) -> Detection:
        """A run of windows of ``window`` samples: from its first window's start to its last window's end
        (clipped to the segment ``end``, exclusive), with the best window's event probability and, when the
        detector has location cells (noise + K outputs, K > 1), its likeliest cell and that cell's probability."""
        last = run.last + window if end is None else min(run.last + window, end)
        cell = cell_probability = None
        if len(run.output) > 2:
            cell = int(np.argmax(run.output[1:]))
            cell_probability = float(run.output[1 + cell])
        return self.detection(run.first, max(last - 1, run.last), run.score, cell, cell_probability)

    def emit(self, triggered: list[Triggered]) -> list[Pick | Detection]:
        """Picks of phase triggers, detections of event triggers."""
        return [self.detection(t.on, t.off, t.value) if t.label == EVENT else self.pick(t) for t in triggered]


def picks_from_probabilities(
    probabilities: np.ndarray,
    time_of: Callable[[int], float],
    labels: list[str],
    thresholds: dict[str, float],
    trace_id: str,
    model: str,
    model_sha256: str = "",
) -> list[Pick]:
    """Picks from (classes, samples) probabilities; ``time_of(i)`` gives epoch seconds of sample i."""
    triggers = TriggerSet(labels, {k: v for k, v in thresholds.items() if k in labels})
    closed = triggers.feed(probabilities, 0) + triggers.close()
    context = PickContext(trace_id, model, model_sha256, time_of)
    return [context.pick(t) for t in sorted(closed, key=lambda t: (labels.index(t.label), t.on))]
