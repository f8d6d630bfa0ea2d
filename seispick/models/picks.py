"""Picks and detections: the records seispick produces, and their extraction from probability traces."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from obspy import UTCDateTime
from obspy.signal.trigger import trigger_onset


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


def iso(t: UTCDateTime) -> str:
    """UTC ISO 8601 with microseconds and a Z."""
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def centis(t: UTCDateTime) -> int:
    """round(t * 100) in exact integer arithmetic (halves up): the 10 ms bucket ids are built from."""
    return (t.ns + 5_000_000) // 10_000_000


def trigger_intervals(values: np.ndarray, threshold: float) -> np.ndarray:
    """(start, end) sample pairs where ``values`` rise above ``threshold`` until they fall below half of it.

    ObsPy's ``trigger_onset`` with off-threshold threshold/2, as SeisBench's ``picks_from_annotations``.
    """
    values = np.asarray(values)
    if np.isnan(values).any():
        values = np.nan_to_num(values, nan=0.0)
    if values.size == 0 or values.max() < threshold:
        return np.zeros((0, 2), dtype=np.int64)
    return np.asarray(trigger_onset(values, threshold, threshold / 2), dtype=np.int64).reshape(-1, 2)


def picks_from_probabilities(
    probabilities: np.ndarray,
    time_of,
    labels: list[str],
    thresholds: dict[str, float],
    trace_id: str,
    model: str,
    model_sha256: str = "",
) -> list[Pick]:
    """Picks from (classes, samples) probabilities; ``time_of(i)`` gives epoch seconds of sample i."""
    picks = []
    for row, label in enumerate(labels):
        if label == "N" or label not in thresholds:
            continue
        trace = probabilities[row]
        for s0, s1 in trigger_intervals(trace, thresholds[label]):
            peak = s0 + int(np.argmax(trace[s0 : s1 + 1]))
            picks.append(
                Pick(
                    trace_id=trace_id,
                    phase=label,
                    peak_time=UTCDateTime(time_of(peak)),
                    probability=float(trace[peak]),
                    start_time=UTCDateTime(time_of(s0)),
                    end_time=UTCDateTime(time_of(s1)),
                    model=model,
                    model_sha256=model_sha256,
                )
            )
    return picks


def detections_from_probability(
    event_probability: np.ndarray,
    time_of,
    threshold: float,
    trace_id: str,
    model: str,
    model_sha256: str = "",
) -> list[Detection]:
    """Detections where an event probability trace exceeds ``threshold``."""
    return [
        Detection(
            trace_id=trace_id,
            start_time=UTCDateTime(time_of(s0)),
            end_time=UTCDateTime(time_of(s1)),
            probability=float(np.max(event_probability[s0 : s1 + 1])),
            model=model,
            model_sha256=model_sha256,
        )
        for s0, s1 in trigger_intervals(event_probability, threshold)
    ]
