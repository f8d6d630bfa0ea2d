"""K-fold selection of fine-tuning on a user's own data (``seispick finetune --select-folds K``).

A validation split of a few dozen records chooses the epoch and the thresholds by a few picks. Here the
training and validation records are cut into K blocks (by station, or by time for one station,
:func:`~seispick.training.data.folds.held_out_blocks`); fold k fine-tunes on the other blocks for the full number of
epochs and, after every epoch (epoch 0 = the base), picks block k through the runtime at a grid of thresholds.
The picks of all folds are pooled per epoch and threshold; per epoch the thresholds are those of best pooled
mean F1 within 0.1 s and 0.5 s (as :func:`~seispick.training.fitting.selection.calibrate_thresholds` chooses them), and
the epoch with the best pooled F1 within 0.1 s (mean of P and S) at its thresholds is chosen. The model is then fine-tuned on all training and
validation records for that many epochs (none when the base itself was best).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from seispick.models.card import ModelCard
from seispick.training.data.folds import held_out_blocks
from seispick.training.data.samples import WaveformSample
from seispick.training.evaluation.evaluate import sweep_picks
from seispick.training.evaluation.scores import Pick, evaluate_picks
from seispick.training.fitting.config import TrainConfig
from seispick.training.fitting.phasenet_fit import fit_phasenet
from seispick.training.fitting.selection import (
    CALIBRATION_TOLERANCES,
    SELECTION_TOLERANCE,
    THRESHOLD_GRID,
    torch_runtime,
)

__all__ = ["FoldChoice", "select_by_folds"]


@dataclass
class FoldChoice:
    """The chosen epoch count and thresholds, with the pooled F1 of every epoch (at its best thresholds)."""

    epochs: int
    thresholds: dict[str, float]
    score: float
    folds: int
    by: str
    per_epoch: list[dict[str, float]] = field(default_factory=list)

    def final_config(self, config: TrainConfig) -> TrainConfig:
        """The config of the final run on all training and validation data: exactly ``epochs`` epochs, kept."""
        return dataclasses.replace(
            config, epochs=max(1, self.epochs), select_on="last", calibrate_thresholds=False, patience=10**6
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _Recorder:
    """A fit ``score_fn`` that keeps each epoch's picks of a held-out block at every threshold of a grid."""

    def __init__(self, samples: Sequence[WaveformSample], card: ModelCard, grid: Sequence[float], tag: str):
        self.samples, self.card, self.grid, self.tag = list(samples), card, list(grid), tag
        self.picks: list[dict[float, list[Pick]]] = []
        self.truth: list[Pick] = []

    def __call__(self, model: nn.Module) -> dict[str, Any]:
        by_threshold, truth = sweep_picks(torch_runtime(model, self.card), self.samples, self.grid)
        self.picks.append({t: [self._tagged(p) for p in picks] for t, picks in by_threshold.items()})
        self.truth = [self._tagged(p) for p in truth]
        return {}

    def _tagged(self, pick: Pick) -> Pick:
        return Pick(f"{self.tag}/{pick.trace_id}", pick.phase, pick.time)


def select_by_folds(
    samples: Sequence[WaveformSample],
    new_model: Callable[[], nn.Module],
    card: ModelCard,
    config: TrainConfig,
    folds: int,
    by: str,
    seed: int = 0,
    grid: Sequence[float] = THRESHOLD_GRID,
    progress: Callable[[str], None] | None = None,
) -> FoldChoice:
    """Choose epochs and thresholds by K-fold cross-validation over ``samples`` (see the module docstring).

    ``new_model()`` gives a fresh copy of the base network for each fold.
    """
    if folds < 3:
        raise ValueError(f"k-fold selection needs at least 3 folds, got {folds}")
    blocks = held_out_blocks(samples, folds, by, seed)
    fixed = dataclasses.replace(config, select_on="last", calibrate_thresholds=False, patience=10**6)
    recorders = []
    for k, block in enumerate(blocks):
        held = {id(s) for s in block}
        train = [s for s in samples if id(s) not in held]
        recorder = _Recorder(block, card, grid, str(k))
        fit_phasenet(new_model(), train, block, fixed, card, score_fn=recorder)
        recorders.append(recorder)
        if progress:
            progress(f"selection fold {k + 1}/{folds} done")
    truth = [p for r in recorders for p in r.truth]
    per_epoch = []
    for epoch in range(min(len(r.picks) for r in recorders)):
        row: dict[str, float] = {"epoch": epoch}
        for phase in ("P", "S"):
            scores = {}
            for t in grid:
                predicted = [p for r in recorders for p in r.picks[epoch][t] if p.phase == phase]
                scores[t] = [s.f1 for s in evaluate_picks(predicted, truth, CALIBRATION_TOLERANCES, (phase,))]
            # thresholds as calibrate_thresholds chooses them, the epoch on F1 within 0.1 s at those thresholds
            best = max(grid, key=lambda t: (sum(scores[t]) / len(scores[t]), -abs(t - 0.3)))
            row[f"threshold_{phase}"] = best
            row[f"f1_{phase}"] = scores[best][CALIBRATION_TOLERANCES.index(SELECTION_TOLERANCE)]
        per_epoch.append(row)
    scores = [(e["f1_P"] + e["f1_S"]) / 2 for e in per_epoch]
    chosen = max(range(len(scores)), key=lambda e: (scores[e], -e))  # ties: fewer epochs
    row = per_epoch[chosen]
    return FoldChoice(
        epochs=chosen,
        thresholds={"P": row["threshold_P"], "S": row["threshold_S"]},
        score=scores[chosen],
        folds=folds,
        by=by,
        per_epoch=per_epoch,
    )
