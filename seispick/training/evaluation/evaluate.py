"""Evaluation of a shipped-style ONNX model on labelled samples, through the same runtime as the CLI and service.

Each sample becomes an ObsPy Stream (:func:`~seispick.training.data.sample_streams.sample_stream`) that runs through
``seispick.picking.annotate.annotate`` (pickers) or ``seispick.picking.detect`` (detectors); the picks and
detections that come out are scored with :mod:`seispick.training.evaluation.scores`. There is no second inference path.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from seispick.models.inference import OnnxModel
from seispick.models.registry import ModelRegistry
from seispick.picking.annotate import annotate
from seispick.picking.detect import run_detector
from seispick.picking.results import picks_from_probabilities
from seispick.training.data.sample_streams import sample_start, sample_stream
from seispick.training.data.samples import WaveformSample
from seispick.training.evaluation.scores import Pick, detection_scores, evaluate_picks, match_picks, roc_curve

__all__ = [
    "TOLERANCES",
    "evaluate",
    "evaluate_detector",
    "evaluate_picker",
    "load_model",
    "nearest_cells",
    "predict_picks",
    "sweep_picks",
    "write_report",
]

TOLERANCES = (0.1, 0.5)
SWEEP = tuple(round(t, 2) for t in np.arange(0.05, 0.951, 0.05))


def load_model(model_name_or_dir: str | Path | OnnxModel) -> OnnxModel:
    """A loaded model: a name from the registry, a model folder, or an already loaded model."""
    if isinstance(model_name_or_dir, OnnxModel):
        return model_name_or_dir
    return ModelRegistry().load(str(model_name_or_dir), prefer_gpu=False)


def evaluate(
    model_name_or_dir: str | Path | OnnxModel,
    samples: Sequence[WaveformSample],
    thresholds: dict[str, float] | None = None,
    tolerances: Sequence[float] = TOLERANCES,
) -> dict[str, Any]:
    """Score a model on labelled samples: pick scores for pickers, detection scores for detectors (JSON-able)."""
    model = load_model(model_name_or_dir)
    if not samples:
        raise ValueError("no samples to evaluate on")
    if model.card.task == "detector":
        threshold = (thresholds or {}).get("detection")
        return evaluate_detector(model, samples, threshold)
    return evaluate_picker(model, samples, thresholds, tolerances)


def _key(i: int, sample: WaveformSample) -> str:
    return f"{i}:{sample.trace_id}"


def _true_picks(samples: Sequence[WaveformSample]) -> list[Pick]:
    return [
        Pick(_key(i, s), phase, index / s.sampling_rate)
        for i, s in enumerate(samples)
        for phase, index in s.picks()
    ]


def _scores_by_phase(predicted: list[Pick], truth: list[Pick], tolerances, phases) -> dict[str, dict]:
    out: dict[str, dict] = {phase: {} for phase in phases}
    for score in evaluate_picks(predicted, truth, tolerances, phases):
        out[score.phase][f"{score.tolerance:g}"] = score.to_dict()
    return out


def predict_picks(
    model: OnnxModel, samples: Sequence[WaveformSample], thresholds: dict[str, float] | None = None
) -> tuple[list[Pick], list[Pick]]:
    """(predicted, labelled) picks of ``model`` on ``samples``, times in seconds from each record's start and
    keyed ``"<index>:<trace id>"``; for pooling the picks of several evaluations (e.g. cross-validation folds)."""
    return _predict(model, samples, thresholds, ())[0], _true_picks(samples)


def sweep_picks(
    model: OnnxModel, samples: Sequence[WaveformSample], thresholds: Sequence[float]
) -> tuple[dict[float, list[Pick]], list[Pick]]:
    """Picks of every phase at each of ``thresholds`` (one annotation run per record), and the labels."""
    return _predict(model, samples, None, thresholds)[1], _true_picks(samples)


def _predict(
    model: OnnxModel,
    samples: Sequence[WaveformSample],
    thresholds: dict[str, float] | None,
    sweep: Sequence[float],
) -> tuple[list[Pick], dict[float, list[Pick]], list[str]]:
    """Picks at ``thresholds`` (None: the card's, also its vertical-only ones), picks at each threshold of
    ``sweep`` (all phases), and the runtime's notes."""
    predicted: list[Pick] = []
    sweep_preds: dict[float, list[Pick]] = {t: [] for t in sweep}
    notes: list[str] = []
    for i, sample in enumerate(samples):
        start = sample_start(sample)
        result = annotate(sample_stream(sample), model, thresholds=thresholds)
        notes += [f"{sample.where()}: {n}" for n in result.notes]
        predicted += [Pick(_key(i, sample), p.phase, p.peak_time - start) for p in result.picks]
        for t in sweep:
            for a in result.annotations:
                picks = picks_from_probabilities(
                    a.probabilities,
                    a.time_of,
                    model.card.labels,
                    dict.fromkeys(model.card.phases, t),
                    "",
                    model.name,
                )
                sweep_preds[t] += [Pick(_key(i, sample), p.phase, p.peak_time - start) for p in picks]
    return predicted, sweep_preds, notes


def evaluate_picker(
    model: OnnxModel,
    samples: Sequence[WaveformSample],
    thresholds: dict[str, float] | None = None,
    tolerances: Sequence[float] = TOLERANCES,
) -> dict[str, Any]:
    """Per-phase precision/recall/F1 and residuals at each tolerance, plus a sweep over pick thresholds."""
    phases = model.card.phases
    used = {**model.card.default_thresholds, **(thresholds or {})}
    truth = _true_picks(samples)
    predicted, sweep_preds, notes = _predict(model, samples, thresholds, SWEEP)
    widest = max(tolerances)
    residuals = {}
    for phase in phases:
        matched, _, _ = match_picks(predicted, truth, widest, phase)
        residuals[phase] = [round(float(p.time - t.time), 4) for p, t in matched]
    sweep = {phase: {f"{tol:g}": [] for tol in tolerances} for phase in phases}
    for t, preds in sweep_preds.items():
        for score in evaluate_picks(preds, truth, tolerances, phases):
            sweep[score.phase][f"{score.tolerance:g}"].append(
                {"threshold": t, "precision": score.precision, "recall": score.recall, "f1": score.f1}
            )
    return {
        "model": model.name,
        "model_sha256": model.sha256,
        "task": "picker",
        "n_samples": len(samples),
        "n_labels": {phase: sum(p.phase == phase for p in truth) for phase in phases},
        "thresholds": {k: used[k] for k in phases if k in used},
        "tolerances": [float(t) for t in tolerances],
        "scores": _scores_by_phase(predicted, truth, tolerances, phases),
        "residuals": residuals,
        "threshold_sweep": sweep,
        "notes": notes,
    }


def nearest_cells(latitudes: Sequence[float], longitudes: Sequence[float], cells: list[dict]) -> np.ndarray:
    """Index of the nearest card cell (``{"latitude", "longitude"}``) to each epicentre, by great-circle distance
    (as ``training.convnetquake.assign_cells``, in numpy so evaluation needs no torch)."""

    def unit(lat, lon):
        lat, lon = np.deg2rad(np.asarray(lat, dtype=float)), np.deg2rad(np.asarray(lon, dtype=float))
        return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)

    centres = unit([c["latitude"] for c in cells], [c["longitude"] for c in cells])
    return np.argmax(unit(latitudes, longitudes) @ centres.T, axis=-1).astype(np.int64)


def _true_cells(model: OnnxModel, samples: Sequence[WaveformSample]) -> list[int | None]:
    cells = model.card.location_cells or []
    out: list[int | None] = []
    for s in samples:
        lat, lon = s.source.get("source_latitude"), s.source.get("source_longitude")
        known = (
            cells and s.p_index is not None and isinstance(lat, float | int) and isinstance(lon, float | int)
        )
        out.append(int(nearest_cells([lat], [lon], cells)[0]) if known else None)
    return out


def evaluate_detector(
    model: OnnxModel, samples: Sequence[WaveformSample], threshold: float | None = None
) -> dict[str, Any]:
    """Detection precision/recall/F1 and ROC AUC over samples, and location-cell accuracy.

    An event sample (one with a P pick) scores the highest event probability among the windows that contain its
    P time; it is detected when that reaches ``threshold``, which is exactly when ``seispick.picking.detect``
    reports a detection covering P (detections are runs of windows at or above the threshold). A noise sample's score is the highest event
    probability of all its windows, and any detection on it is a false positive. The cell of an event is the
    most likely cell of its best window; the true cell is the card's cell nearest to the sample's epicentre.
    """
    threshold = model.card.default_thresholds.get("detection", 0.5) if threshold is None else threshold
    true_cells = _true_cells(model, samples)
    scores, labels, predicted_cells, notes = [], [], [], []
    for sample in samples:
        start = sample_start(sample)
        run = run_detector(sample_stream(sample), model)
        notes += [f"{sample.where()}: {n}" for n in run.notes]
        p_time = None if sample.p_index is None else float(start + sample.p_index / sample.sampling_rate)
        best, best_cell = 0.0, None
        for w in run.windows:
            for j in range(len(w.offsets)):
                t0, t1 = w.window_span(j)
                if p_time is not None and not t0 <= p_time <= t1:
                    continue
                if w.event_probability[j] >= best:
                    best = float(w.event_probability[j])
                    best_cell = (
                        int(np.argmax(w.probabilities[j, 1:])) if w.probabilities.shape[1] > 2 else None
                    )
        scores.append(best)
        labels.append(p_time is not None)
        predicted_cells.append(best_cell)
    det = detection_scores(scores, labels, threshold)
    report: dict[str, Any] = {
        "model": model.name,
        "model_sha256": model.sha256,
        "task": "detector",
        "n_samples": len(samples),
        "n_events": int(sum(labels)),
        "n_noise": int(len(labels) - sum(labels)),
        "threshold": float(threshold),
        "detection": det.to_dict(),
        "scores": [round(s, 6) for s in scores],
        "labels": [bool(x) for x in labels],
        "notes": notes,
    }
    report["cells"] = _cell_scores(true_cells, predicted_cells, scores, threshold, model)
    if 0 < sum(labels) < len(labels):
        fpr, tpr, _ = roc_curve(scores, labels)
        report["roc"] = {"fpr": fpr.round(6).tolist(), "tpr": tpr.round(6).tolist()}
    return report


def _cell_scores(true_cells, predicted_cells, scores, threshold, model: OnnxModel) -> dict[str, Any]:
    k = len(model.card.location_cells or [])
    pairs = [
        (t, p, s) for t, p, s in zip(true_cells, predicted_cells, scores) if t is not None and p is not None
    ]
    confusion = np.zeros((k, k), dtype=int)
    for t, p, _ in pairs:
        confusion[t, p] += 1
    correct = [t == p for t, p, _ in pairs]
    present = [i for i in range(k) if confusion[i].sum()]
    balanced = (
        float(np.mean([confusion[i, i] / confusion[i].sum() for i in present])) if present else math.nan
    )
    detected = [t == p for t, p, s in pairs if s >= threshold]
    return {
        "n_cells": k,
        "n_located": len(pairs),
        "accuracy": float(np.mean(correct)) if correct else math.nan,
        "balanced_accuracy": balanced,
        "n_located_detected": len(detected),
        "accuracy_detected": float(np.mean(detected)) if detected else math.nan,
        "confusion": confusion.tolist(),
    }


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def write_report(report: dict[str, Any], json_path: str | Path, png_path: str | Path | None = None) -> None:
    """Write the report as JSON (NaN as null) and, with ``png_path``, its figure."""
    Path(json_path).write_text(json.dumps(_json_safe(report), indent=2) + "\n")
    if png_path:
        from seispick.training.evaluation.plots import plot_evaluation

        plot_evaluation(report, png_path)
