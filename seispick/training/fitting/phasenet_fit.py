"""One PhaseNet training run on lists of samples: windows, loss, frozen parts and the shared training loop.

Used by :func:`~seispick.training.fitting.train.train_phasenet` and by the k-fold selection of fine-tuning
(:mod:`~seispick.training.fitting.fold_selection`), so both train exactly the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from seispick.models.card import ModelCard
from seispick.training.data.picking_data import PickingWindows
from seispick.training.data.samples import WaveformSample
from seispick.training.fitting.config import TrainConfig
from seispick.training.fitting.distill import distillation_loss, frozen_teacher
from seispick.training.fitting.loop import FitResult, LossFn, ScoreFn, fit
from seispick.training.networks.phasenet import PhaseNet

__all__ = ["encoder_modules", "fit_phasenet", "make_loss", "picking_loss", "weighted_picking_loss"]


def weighted_picking_loss(class_weights: Sequence[float] = (1.0, 1.0, 1.0)) -> LossFn:
    """Cross-entropy of the softmax output against the soft N/P/S labels, the noise, P and S terms weighted by
    ``class_weights``, averaged over samples."""
    w = torch.tensor(list(class_weights), dtype=torch.float32).view(1, -1, 1)

    def loss(model: nn.Module, batch) -> torch.Tensor:
        x, y = batch
        return -(w * y * F.log_softmax(model(x, logits=True), dim=1)).sum(dim=1).mean()

    return loss


picking_loss = weighted_picking_loss()


def make_loss(model: nn.Module, config: TrainConfig) -> LossFn:
    """The training loss of ``config``: class-weighted cross-entropy, distilled from a frozen copy of ``model``
    when ``distill_weight`` > 0."""
    if config.distill_weight > 0:
        return distillation_loss(
            frozen_teacher(model), config.distill_weight, config.distill_phases, config.class_weights
        )
    return weighted_picking_loss(config.class_weights)


def encoder_modules(model: PhaseNet) -> list[nn.Module]:
    """The encoder that ``freeze_encoder`` keeps fixed: input convolution and batch norm, and the down branch."""
    return [model.inc, model.in_bn, model.down_branch]


def fit_phasenet(
    model: PhaseNet,
    train: Sequence[WaveformSample],
    val: Sequence[WaveformSample],
    config: TrainConfig,
    card: ModelCard,
    out_dir: str | Path | None = None,
    progress: bool = False,
    extra: Sequence[WaveformSample] = (),
    score_fn: ScoreFn | None = None,
) -> FitResult:
    """Train ``model`` in place on windows of ``train`` (plus ``config.replay_fraction`` as many from ``extra``),
    validating on windows of ``val`` and, with ``score_fn``, selecting on its score."""
    args = dict(
        window=card.window_samples, channel_order=card.channel_order, normalisation=card.normalisation
    )
    labels = dict(
        label_sigma=config.label_sigma,
        s_label_sigma=config.s_label_sigma,
        s_window_probability=config.s_window_probability,
    )
    per_sample = config.windows_for(len(train))
    train_data = PickingWindows(
        train,
        **args,
        **labels,
        windows_per_sample=per_sample,
        seed=config.seed,
        augment=config.augment,
        edge_probability=config.edge_probability,
        extra=extra,
        extra_windows=round(config.replay_fraction * len(train) * per_sample) if extra else 0,
    )
    val_data = PickingWindows(
        val,
        **args,
        **labels,
        windows_per_sample=config.val_windows_per_sample,
        seed=config.seed + 1,
        edge_probability=config.edge_probability,
    )
    frozen = encoder_modules(model) if config.freeze_encoder else []
    batchnorms = (
        [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)] if config.freeze_batchnorm else []
    )
    return fit(
        model, make_loss(model, config), train_data, val_data, config, out_dir, frozen, progress, card.name,
        batchnorms, score_fn,
    )  # fmt: skip
