"""Training hyper-parameters, stored with every checkpoint so that a run can be repeated."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

__all__ = ["TrainConfig"]

Schedule = Literal["cosine", "plateau", "constant"]


@dataclass
class TrainConfig:
    """Optimiser, schedule, early stopping and data-loading settings of one training run.

    Adam with decoupled weight decay (AdamW). ``schedule``: cosine decay from ``lr`` to ``lr * min_lr_factor``
    over ``epochs``, halving on a validation plateau, or constant. Training stops when the validation loss has
    not improved by ``min_delta`` for ``patience`` epochs; the best epoch's weights are kept (epoch 0 is the
    starting point, so fine-tuning never ends worse on validation than its base).
    Each epoch draws ``windows_per_sample`` random windows from every training sample; validation windows are
    drawn once, with a fixed seed, ``val_windows_per_sample`` per sample. ``edge_probability`` of the windows
    are aligned with a record's start or end, as the runtime aligns its first and last windows.
    ``freeze_encoder`` fixes the PhaseNet encoder; ``freeze_batchnorm`` keeps every batch-norm layer's running
    statistics (useful when fine-tuning on one station, whose small batches would shift them).
    ``anchor_weight`` adds ``anchor_weight * sum((w - w_start)**2)`` over the trained weights to the loss (L2-SP,
    Li et al. 2018: fine-tuning pulled towards the base instead of towards zero). ``replay_fraction`` adds that
    many windows (as a fraction of the own training windows) from replayed data, e.g. other stations, per epoch.
    ``distill_weight`` blends the targets of the phases in ``distill_phases`` with the starting network's own
    probabilities (:mod:`~seispick.training.distill`), so that fine-tuning keeps what the base did well.
    """

    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    schedule: Schedule = "cosine"
    min_lr_factor: float = 0.01
    patience: int = 6
    min_delta: float = 1e-4
    seed: int = 0
    windows_per_sample: int = 4
    val_windows_per_sample: int = 4
    freeze_encoder: bool = False
    freeze_batchnorm: bool = False
    edge_probability: float = 0.1
    anchor_weight: float = 0.0
    replay_fraction: float = 0.0
    distill_weight: float = 0.0
    distill_phases: str = "PS"
    label_sigma: float = 10.0
    augment: bool = True
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.windows_per_sample < 1:
            raise ValueError("epochs, batch_size and windows_per_sample must be at least 1")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError(
                f"lr must be positive and weight_decay non-negative, got {self.lr}, {self.weight_decay}"
            )
        if self.anchor_weight < 0 or self.replay_fraction < 0:
            raise ValueError("anchor_weight and replay_fraction must be non-negative")
        if not 0.0 <= self.distill_weight <= 1.0:
            raise ValueError(f"distill_weight must lie in [0, 1], got {self.distill_weight}")
        if not self.distill_phases or set(self.distill_phases) - {"P", "S"}:
            raise ValueError(f"distill_phases must be made of P and S, got {self.distill_phases!r}")
        if self.schedule not in ("cosine", "plateau", "constant"):
            raise ValueError(f"unknown schedule {self.schedule!r}; use cosine, plateau or constant")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a dict, ignoring keys this version does not know."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})
