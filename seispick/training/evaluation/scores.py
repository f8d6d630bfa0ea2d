"""Evaluation of pickers and detectors on pick lists and scores; pure numpy."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = [
    "Pick",
    "PickScores",
    "DetectionScores",
    "match_picks",
    "evaluate_picks",
    "roc_curve",
    "roc_auc",
    "detection_scores",
]

EPS = 1e-9  # residuals within tolerance + EPS count, so 0.1 s is not lost to float rounding


@dataclass(frozen=True)
class Pick:
    """A pick on a trace: ``time`` in seconds (any common reference; UTCDateTime differences work as well)."""

    trace_id: str
    phase: str
    time: float


def _finite(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


@dataclass
class PickScores:
    """Scores for one phase at one tolerance; residuals are predicted - true, in seconds, over matched picks."""

    phase: str
    tolerance: float
    n_true: int
    n_pred: int
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    residual_mean: float
    residual_std: float
    residual_mae: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (NaN becomes None)."""
        return {k: _finite(v) if isinstance(v, float) else v for k, v in asdict(self).items()}


def match_picks(
    predicted: Iterable[Pick], labelled: Iterable[Pick], tolerance: float, phase: str
) -> tuple[list[tuple[Pick, Pick]], list[Pick], list[Pick]]:
    """Match picks of ``phase`` per trace within ``tolerance`` seconds.

    Candidate pairs are taken greedily by smallest |residual|; each label and each prediction is used at most
    once, so a second prediction near the same label is a false positive. Returns (matched (pred, true) pairs,
    unmatched predictions, unmatched labels).
    """
    preds = [p for p in predicted if p.phase == phase]
    trues = [p for p in labelled if p.phase == phase]
    by_trace: dict[str, list[int]] = {}
    for j, t in enumerate(trues):
        by_trace.setdefault(t.trace_id, []).append(j)
    pairs = []
    for i, p in enumerate(preds):
        for j in by_trace.get(p.trace_id, []):
            residual = float(p.time - trues[j].time)
            if abs(residual) <= tolerance + EPS:
                pairs.append((abs(residual), i, j))
    pairs.sort()
    used_p, used_t, matched = set(), set(), []
    for _, i, j in pairs:
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
            matched.append((preds[i], trues[j]))
    unmatched_pred = [p for i, p in enumerate(preds) if i not in used_p]
    unmatched_true = [t for j, t in enumerate(trues) if j not in used_t]
    return matched, unmatched_pred, unmatched_true


def _ratio(a: int, b: int) -> float:
    return a / b if b else 0.0


def evaluate_picks(
    predicted: Sequence[Pick],
    labelled: Sequence[Pick],
    tolerances: Sequence[float] = (0.1, 0.5),
    phases: Sequence[str] = ("P", "S"),
) -> list[PickScores]:
    """Precision, recall, F1 and residual statistics for every phase and tolerance.

    Precision (recall) is 0 when there are no predictions (labels); residual statistics are NaN without matches.
    """
    out = []
    for phase in phases:
        for tol in tolerances:
            matched, fp, fn = match_picks(predicted, labelled, tol, phase)
            tp = len(matched)
            precision, recall = _ratio(tp, tp + len(fp)), _ratio(tp, tp + len(fn))
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            res = np.array([float(p.time - t.time) for p, t in matched])
            mean, std, mae = (res.mean(), res.std(), np.abs(res).mean()) if res.size else (math.nan,) * 3
            out.append(
                PickScores(
                    phase=phase,
                    tolerance=float(tol),
                    n_true=tp + len(fn),
                    n_pred=tp + len(fp),
                    tp=tp,
                    fp=len(fp),
                    fn=len(fn),
                    precision=precision,
                    recall=recall,
                    f1=f1,
                    residual_mean=float(mean),
                    residual_std=float(std),
                    residual_mae=float(mae),
                )
            )
    return out


def _check_binary(
    scores: np.ndarray, labels: np.ndarray, both_classes: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    if scores.shape != labels.shape:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} differ in length")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or Inf")
    if both_classes and (labels.all() or not labels.any()):
        raise ValueError("ROC needs both positive and negative labels")
    return scores, labels


def roc_curve(scores: Sequence[float], labels: Sequence[bool]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive rates, true-positive rates and thresholds (decreasing), starting at (0, 0) with +inf."""
    s, y = _check_binary(np.asarray(scores), np.asarray(labels))
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tps = np.cumsum(y)[last_of_tie]
    fps = (last_of_tie + 1) - tps
    tpr = np.r_[0.0, tps / y.sum()]
    fpr = np.r_[0.0, fps / (~y).sum()]
    return fpr, tpr, np.r_[np.inf, s[last_of_tie]]


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve (trapezoids; ties count half), i.e. P(score of positive > score of negative)."""
    fpr, tpr, _ = roc_curve(scores, labels)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


@dataclass
class DetectionScores:
    """Event-detection scores at one threshold, plus the threshold-free ROC AUC."""

    threshold: float
    n_pos: int
    n_neg: int
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    auc: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (NaN becomes None)."""
        return {k: _finite(v) if isinstance(v, float) else v for k, v in asdict(self).items()}


def detection_scores(
    scores: Sequence[float], labels: Sequence[bool], threshold: float = 0.5
) -> DetectionScores:
    """Precision/recall/F1 of ``score >= threshold`` against boolean ``labels`` (event present), and ROC AUC
    (NaN when only one class is present)."""
    s, y = _check_binary(np.asarray(scores), np.asarray(labels), both_classes=False)
    pred = s >= threshold
    tp, fp, fn = int((pred & y).sum()), int((pred & ~y).sum()), int((~pred & y).sum())
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return DetectionScores(
        threshold=float(threshold),
        n_pos=int(y.sum()),
        n_neg=int((~y).sum()),
        tp=tp,
        fp=fp,
        fn=fn,
        precision=precision,
        recall=recall,
        f1=f1,
        auc=roc_auc(s, y) if y.any() and not y.all() else math.nan,
    )
