"""Choosing checkpoints and pick thresholds by pick F1 on validation records, through the runtime's own code.

A torch network is wrapped as a :class:`~seispick.models.inference.OnnxModel` whose runner calls torch, so the
validation picks come from ``seispick.picking.annotate`` exactly as ``seispick evaluate`` makes them from the
exported ONNX model: whole records, windows on the absolute grid, stacking and the trigger.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from seispick.models.card import ModelCard
from seispick.models.inference import OnnxModel
from seispick.training.data.samples import WaveformSample
from seispick.training.evaluation.evaluate import predict_picks, sweep_picks
from seispick.training.evaluation.scores import Pick, evaluate_picks

__all__ = [
    "THRESHOLD_GRID",
    "PickF1",
    "calibrate_thresholds",
    "pick_f1",
    "torch_runtime",
    "validation_scorer",
]

SELECTION_TOLERANCE = 0.1
THRESHOLD_GRID = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
CALIBRATION_TOLERANCES = (0.1, 0.5)


def torch_runtime(model: nn.Module, card: ModelCard, batch: int = 64) -> OnnxModel:
    """``model`` (eval mode, no gradients) behind the runtime's model interface, for ``card``'s windows."""

    def run(windows: np.ndarray) -> np.ndarray:
        model.eval()
        with torch.no_grad():
            parts = [
                model(torch.from_numpy(np.ascontiguousarray(windows[i : i + batch]))).numpy()
                for i in range(0, len(windows), batch)
            ]
        return np.concatenate(parts) if parts else np.zeros((0, len(card.labels), card.window_samples))

    return OnnxModel(card=card, path=Path("<torch>"), runners=[run], backend="torch", device="cpu")


@dataclass
class PickF1:
    """F1 of P and S picks within the selection tolerance (0.1 s) and their mean, the selection score."""

    p: float
    s: float

    @property
    def score(self) -> float:
        return (self.p + self.s) / 2.0

    def to_dict(self) -> dict[str, float]:
        return {"val_f1_P": self.p, "val_f1_S": self.s, "score": self.score}


def _f1(predicted: list[Pick], truth: list[Pick], tolerance: float = SELECTION_TOLERANCE) -> dict[str, float]:
    return {s.phase: s.f1 for s in evaluate_picks(predicted, truth, [tolerance], ("P", "S"))}


def pick_f1(
    model: OnnxModel, samples: Sequence[WaveformSample], thresholds: dict[str, float] | None = None
) -> PickF1:
    """P and S pick F1 within 0.1 s of ``model`` on ``samples`` (whole records through the runtime)."""
    predicted, truth = predict_picks(model, samples, thresholds)
    f1 = _f1(predicted, truth)
    return PickF1(f1["P"], f1["S"])


def validation_scorer(samples: Sequence[WaveformSample], card: ModelCard):
    """``score(model) -> dict`` for :func:`~seispick.training.fitting.loop.fit`: validation pick F1 of the torch model."""
    samples = list(samples)

    def score(model: nn.Module) -> dict[str, Any]:
        return pick_f1(torch_runtime(model, card), samples).to_dict()

    return score


def calibrate_thresholds(
    model: OnnxModel, samples: Sequence[WaveformSample], grid: Sequence[float] = THRESHOLD_GRID
) -> dict[str, Any]:
    """Per phase, the threshold of ``grid`` with the best mean F1 within 0.1 s and 0.5 s on ``samples``; the
    card's own threshold wins ties (a change must earn its place). A threshold trades false picks against
    missed ones, which the 0.5 s tolerance sees without the timing noise of the 0.1 s one: on a few dozen
    validation records that halves the chance of a threshold chosen by one pick's timing. Returns the thresholds
    and that mean F1 before and after."""
    card = model.card
    current = {p: card.default_thresholds.get(p, 0.5) for p in ("P", "S")}
    candidates = sorted({*grid, *current.values()})
    by_threshold, truth = sweep_picks(model, samples, candidates)
    out: dict[str, Any] = {
        "criterion": "mean F1 within 0.1 s and 0.5 s",
        "thresholds": {},
        "f1_before": {},
        "f1_after": {},
    }
    for phase in ("P", "S"):
        scores = {}
        for t in candidates:
            picks = [p for p in by_threshold[t] if p.phase == phase]
            f1 = [s.f1 for s in evaluate_picks(picks, truth, CALIBRATION_TOLERANCES, (phase,))]
            scores[t] = sum(f1) / len(f1)
        best = max(candidates, key=lambda t: (scores[t], t == current[phase]))
        out["thresholds"][phase] = best
        out["f1_before"][phase] = scores[current[phase]]
        out["f1_after"][phase] = scores[best]
    return out
