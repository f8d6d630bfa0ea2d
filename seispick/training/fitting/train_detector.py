"""Training ConvNetQuake: location cells by k-means, event and noise windows, export with a detector card.

Cells come from the epicentres of the training events only (validation and test events are assigned to the
nearest cell), so no test location shapes the cells. Events without an epicentre train detection only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seispick.models.card import ModelCard
from seispick.training.data.detection_data import UNKNOWN_CELL, DetectionWindows, EventExample
from seispick.training.data.detector_samples import coordinates, detector_noise, detector_test_samples
from seispick.training.data.inputs import DataSplit, check_for_model
from seispick.training.data.samples import WaveformSample
from seispick.training.data.validation import DatasetError
from seispick.training.evaluation.evaluate import evaluate, write_report
from seispick.training.evaluation.scores import detection_scores
from seispick.training.export.cards import summarize_report
from seispick.training.export.onnx_export import write_model_folder
from seispick.training.fitting.checkpoint import CheckpointMeta, write_meta
from seispick.training.fitting.config import RunConfig
from seispick.training.fitting.loop import FitResult, fit
from seispick.training.networks.convnetquake import ConvNetQuake, assign_cells, location_cells

__all__ = [
    "DetectorOptions",
    "DetectorRun",
    "balance_cells",
    "best_threshold",
    "cells_for",
    "detection_loss",
    "detector_test_samples",
    "train_convnetquake",
]


@dataclass
class DetectorRun:
    """Where a ConvNetQuake run wrote its checkpoint and model, its cells and test report."""

    checkpoint_dir: Path
    model_dir: Path
    card: ModelCard
    fit: FitResult
    centroids: np.ndarray
    test_report: dict[str, Any] | None = None
    counts: dict[str, Any] = field(default_factory=dict)


def detection_loss(model: nn.Module, batch) -> torch.Tensor:
    """Cross-entropy over noise + cells; for events of unknown cell, -log P(any cell) = -log(1 - P(noise))."""
    x, target = batch
    logp = F.log_softmax(model(x), dim=1)
    known = target >= 0
    losses = torch.empty(len(target), dtype=logp.dtype)
    if known.any():
        losses[known] = -logp[known].gather(1, target[known, None])[:, 0]
    if (~known).any():
        losses[~known] = -torch.logsumexp(logp[~known, 1:], dim=1)
    return losses.mean()


def cells_for(train: Sequence[WaveformSample], k: int, seed: int = 0) -> np.ndarray:
    """(k, 2) cell centroids (latitude, longitude) by k-means over the located training events."""
    points = [c for c in (coordinates(s) for s in train if not s.is_noise) if c is not None]
    if len(points) < k:
        raise DatasetError(
            f"{k} location cells need at least {k} training events with source coordinates, found {len(points)}"
        )
    lat, lon = np.array(points).T
    try:
        _, centroids = location_cells(lat, lon, k, seed=seed)
    except ValueError as exc:
        raise DatasetError(f"cannot make {k} location cells from {len(points)} epicentres: {exc}") from exc
    return centroids


def _examples(samples: Sequence[WaveformSample], centroids: np.ndarray) -> list[EventExample]:
    """Event examples with their class (cell + 1); without cells every event is class 1 ("event")."""
    out = []
    for s in samples:
        if s.is_noise:
            continue
        if not len(centroids):
            out.append(EventExample(s, 1))
            continue
        where = coordinates(s)
        cell = UNKNOWN_CELL if where is None else int(assign_cells([where[0]], [where[1]], centroids)[0])
        out.append(EventExample(s, UNKNOWN_CELL if cell == UNKNOWN_CELL else cell + 1))
    return out


def balance_cells(examples: Sequence[EventExample], max_repeat: int = 8) -> list[EventExample]:
    """Repeat the located events of small cells (up to ``max_repeat`` times) so that every cell is seen about as
    often as the largest one; events of unknown cell are kept once."""
    counts: dict[int, int] = {}
    for e in examples:
        if e.target > 0:
            counts[e.target] = counts.get(e.target, 0) + 1
    if not counts:
        return list(examples)
    largest = max(counts.values())
    out = []
    for e in examples:
        repeat = min(max_repeat, round(largest / counts[e.target])) if e.target > 0 else 1
        out += [e] * max(1, repeat)
    return out


def best_threshold(
    scores: Sequence[float],
    labels: Sequence[bool],
    candidates: Sequence[float] = tuple(np.arange(0.3, 0.96, 0.05)),
) -> tuple[float, float]:
    """The candidate threshold with the highest F1 (the higher threshold on ties), and that F1."""
    best = (0.5, -1.0)
    for t in candidates:
        f1 = detection_scores(scores, labels, float(t)).f1
        if f1 >= best[1]:
            best = (round(float(t), 2), f1)
    return best


CELLS_MODEL = "model_with_cells"


def cell_verdict(
    model_dir: Path, split: DataSplit, centroids: np.ndarray, min_located: int = 5
) -> dict[str, Any]:
    """Whether the exported model's cells beat the majority baseline on the located validation events.

    The baseline always answers the cell holding most located training events. Fewer than ``min_located``
    located validation events cannot show that cells work, so they count as not supported.
    """
    train_cells = [int(assign_cells([c[0]], [c[1]], centroids)[0]) for c in _located(split.train)]
    val_cells = [int(assign_cells([c[0]], [c[1]], centroids)[0]) for c in _located(split.val)]
    common = max(set(train_cells), key=train_cells.count) if train_cells else 0
    baseline = sum(c == common for c in val_cells) / len(val_cells) if val_cells else float("nan")
    report = evaluate(model_dir, [s for s in split.val if not s.is_noise])
    accuracy = report["cells"]["accuracy"]
    n_located = report["cells"]["n_located"]
    supported = n_located >= min_located and accuracy == accuracy and accuracy > baseline
    reason = (
        f"cell accuracy {accuracy:.2f} on {n_located} located validation events against {baseline:.2f} for always "
        f"answering the most frequent training cell"
        if n_located
        else "no located validation events"
    )
    if n_located < min_located:
        reason += f"; fewer than {min_located} located validation events cannot show that cells work"
    return {
        "supported": bool(supported),
        "validation_accuracy": accuracy if accuracy == accuracy else None,
        "validation_majority_baseline": baseline if baseline == baseline else None,
        "n_located_validation": n_located,
        "n_cells_tried": len(centroids),
        "reason": reason,
    }


def _located(samples: Sequence[WaveformSample]) -> list[tuple[float, float]]:
    return [c for c in (coordinates(s) for s in samples if not s.is_noise) if c is not None]


def without_cells(card: ModelCard, verdict: dict[str, Any]) -> ModelCard:
    """The detector card without location cells: labels noise and event, and why the cells were dropped."""
    note = (
        f" Location cells were tried ({verdict['n_cells_tried']}) and dropped: {verdict['reason']}; the data cannot "
        "support cells, so this detector outputs only noise and event."
    )
    return card.model_copy(
        update={"labels": ["noise", "event"], "location_cells": None, "description": card.description + note}
    )


def _calibrate_threshold(
    model_dir: Path, card: ModelCard, val: Sequence[WaveformSample]
) -> tuple[ModelCard, dict[str, Any]]:
    report = evaluate(model_dir, detector_test_samples(val, card.window_samples))
    if not 0 < report["n_events"] < report["n_samples"]:
        return card, {"note": "validation split lacks events or noise; threshold kept"}
    threshold, f1 = best_threshold(report["scores"], report["labels"])
    thresholds = {**card.default_thresholds, "detection": threshold}
    return card.model_copy(update={"default_thresholds": thresholds}), {
        "detection_threshold": threshold,
        "f1": f1,
        "n_events": report["n_events"],
        "n_noise": report["n_noise"],
    }


@dataclass
class DetectorOptions:
    """What a ConvNetQuake run adds to its :class:`~seispick.training.fitting.config.RunConfig`.

    ``synthetic_events`` and ``synthetic_noise`` join the training data only; ``noise_ratio`` noise windows per
    event window. With ``balance``, located events of small cells are repeated (:func:`balance_cells`); with
    ``calibrate`` the card's detection threshold is the one with the best F1 on the validation split
    (:func:`best_threshold`). With ``check_cells`` the cells must earn their place (:func:`cell_verdict`).
    """

    synthetic_events: Sequence[WaveformSample] = ()
    synthetic_noise: Sequence[WaveformSample] = ()
    noise_ratio: float = 1.0
    balance: bool = True
    calibrate: bool = True
    check_cells: bool = False


def train_convnetquake(
    split: DataSplit,
    card: ModelCard,
    centroids: np.ndarray,
    run: RunConfig,
    options: DetectorOptions | None = None,
) -> DetectorRun:
    """Train a ConvNetQuake with ``len(centroids)`` cells on ``split`` (+ synthetics in training only) as ``run``
    says; with no centroids (shape (0, 2)) a detector without cells (classes noise and event).

    ``options`` (:class:`DetectorOptions`): with ``check_cells``, when the cells' accuracy on the located
    validation events does not beat always answering the most frequent training cell (:func:`cell_verdict`), the
    model is exported without cells (noise and event; the cell outputs summed) and its card says why; the model
    with cells is kept in ``<out_dir>/model_with_cells``. Test metrics come from running the exported ONNX model
    through ``seispick.picking.detect`` over the test events and the noise cut before their P.
    """
    options = options or DetectorOptions()
    out, config = run.out_dir, run.train
    synthetic_events, synthetic_noise = options.synthetic_events, options.synthetic_noise
    noise_ratio = options.noise_ratio
    window = card.window_samples
    check_for_model(split.part("all"), card.sampling_rate, min_samples=window)
    # P lands 0.5 s to one stride + 0.5 s into an event window: on the card's window grid every event has a
    # window like that.
    lead = int(round(0.5 * card.sampling_rate))
    p_range = (lead, min(window - lead, lead + card.stride_samples))
    located = _examples(split.train, centroids)
    train_events = (balance_cells(located) if options.balance else located) + [
        EventExample(s, UNKNOWN_CELL) for s in synthetic_events
    ]
    val_events = _examples(split.val, centroids)
    args = dict(window=window, channel_order=card.channel_order, normalisation=card.normalisation)
    train_data = DetectionWindows(
        train_events,
        detector_noise(split.train, window, synthetic_noise),
        **args,
        windows_per_event=config.windows_per_sample,
        noise_ratio=noise_ratio,
        p_range=p_range,
        seed=config.seed,
        augment=config.augment,
    )
    val_data = DetectionWindows(
        val_events,
        detector_noise(split.val, window),
        **args,
        windows_per_event=config.val_windows_per_sample,
        noise_ratio=noise_ratio,
        p_range=p_range,
        seed=config.seed + 1,
    )
    n_cells = max(1, len(centroids))  # no cells: one event class
    model = ConvNetQuake(n_cells=n_cells, in_channels=len(card.channel_order), n_samples=window)
    result = fit(
        model, detection_loss, train_data, val_data, config, out, progress=run.progress, description=card.name
    )
    counts = {
        "train_windows_per_epoch": {"events": train_data.n_event_items, "noise": train_data.n_noise_items},
        "train_events": {
            "located": sum(e.target > 0 for e in located),
            "located_after_balancing": sum(e.target > 0 for e in train_events),
            "unknown_cell": sum(e.target == UNKNOWN_CELL for e in train_events),
            "synthetic": len(synthetic_events),
        },
        "train_noise_records": len(train_data.noise),
    }
    card = card.model_copy(update={"split": split.description})
    meta = CheckpointMeta(
        architecture="convnetquake",
        model_args={"n_cells": n_cells, "in_channels": len(card.channel_order), "n_samples": window},
        card=card,
        train=config.to_dict(),
        fit=result.to_dict(),
        datasets=run.datasets,
        command=run.command,
    )
    write_meta(out, meta)
    if run.licence_text:
        (out / "LICENSE").write_text(run.licence_text)
    model_dir = run.model_folder
    licence_text = run.licence_text
    check = np.stack([val_data[i][0].numpy() for i in range(min(6, len(val_data)))]).astype(np.float32)
    card = write_model_folder(
        model.probability_model().eval(), card, model_dir, check, licence_text=licence_text
    )
    if options.check_cells and len(centroids) > 1:
        verdict = cell_verdict(model_dir, split, centroids)
        counts["cells"] = verdict
        if not verdict["supported"]:  # the cell model stays in the checkpoint folder for inspection
            write_model_folder(model.probability_model().eval(), card, out / CELLS_MODEL, check)
            card = without_cells(card, verdict)
            merged = model.probability_model(merge_cells=True).eval()
            card = write_model_folder(merged, card, model_dir, check, licence_text=licence_text)
            meta.card = card
            write_meta(out, meta)
    if options.calibrate:
        card, calibration = _calibrate_threshold(model_dir, card, split.val)
        card.write(model_dir)
        counts["validation"] = calibration
    report = None
    if split.test:
        report = evaluate(model_dir, detector_test_samples(split.test, window))
        write_report(report, out / "evaluation_test.json", out / "evaluation_test.png")
    metrics = {
        **card.metrics,
        "training": {k: v for k, v in result.to_dict().items() if k != "seconds"},
        **counts,
    }
    if report:
        metrics["test"] = summarize_report(report)
    card = card.model_copy(update={"metrics": metrics})
    card.write(model_dir)
    meta.card = card.model_copy(update={"onnx_sha256": ""})
    write_meta(out, meta)
    return DetectorRun(out, model_dir, card, result, centroids, report, counts)
