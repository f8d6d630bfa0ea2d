"""Distillation from the base model while fine-tuning ("learning without forgetting", Li & Hoiem 2016).

The fine-tuned network is trained towards a blend of the labels and the frozen base network's own output,
``(1 - weight) * label + weight * base`` for the distilled phases, so that what the base already does well
(e.g. S onsets) is kept while the labels teach what it does badly (e.g. false P picks on tapered record starts).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from seispick.training.data.labels import CLASSES

__all__ = ["blend_targets", "distillation_loss", "frozen_teacher"]


def frozen_teacher(model: nn.Module) -> nn.Module:
    """A frozen copy of ``model`` in eval mode: the base whose outputs are distilled."""
    teacher = copy.deepcopy(model).eval()
    for param in teacher.parameters():
        param.requires_grad_(False)
    return teacher


def blend_targets(
    labels: torch.Tensor, teacher_probs: torch.Tensor, weight: float, phases: Sequence[str]
) -> torch.Tensor:
    """(batch, 3, n) targets: the rows of ``phases`` blended with the teacher's, noise = 1 - the phase rows.

    ``weight`` 0 gives the labels, 1 the teacher's probabilities for those phases.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"distillation weight must lie in [0, 1], got {weight}")
    unknown = set(phases) - set(CLASSES[1:])
    if unknown:
        raise ValueError(f"unknown phases {sorted(unknown)}: distil P and/or S")
    out = labels.clone()
    for phase in phases:
        row = CLASSES.index(phase)
        out[:, row] = (1.0 - weight) * labels[:, row] + weight * teacher_probs[:, row]
    out[:, 1:] /= out[:, 1:].sum(dim=1, keepdim=True).clamp(min=1.0)  # P + S over 1: both scaled down
    out[:, 0] = (1.0 - out[:, 1:].sum(dim=1)).clamp(min=0.0)
    return out


def distillation_loss(
    teacher: nn.Module,
    weight: float,
    phases: Sequence[str],
    class_weights: Sequence[float] = (1.0, 1.0, 1.0),
) -> Callable[[nn.Module, tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
    """Cross-entropy against labels blended with ``teacher``'s probabilities (see :func:`blend_targets`), each
    class's term weighted by ``class_weights`` (N, P, S)."""
    w = torch.tensor(list(class_weights), dtype=torch.float32).view(1, -1, 1)

    def loss(model: nn.Module, batch) -> torch.Tensor:
        x, y = batch
        with torch.no_grad():
            target = blend_targets(y, F.softmax(teacher(x, logits=True), dim=1), weight, phases)
        return -(w * target * F.log_softmax(model(x, logits=True), dim=1)).sum(dim=1).mean()

    return loss
