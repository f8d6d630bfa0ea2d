"""Run settings: the hyper-parameters (:class:`TrainConfig`, stored with every checkpoint so that a run can be
repeated) and one run's outputs and records (:class:`RunConfig`). No torch here: the CLI reads the defaults."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

__all__ = ["FINETUNE_DEFAULTS", "RunConfig", "TrainConfig"]

Schedule = Literal["cosine", "plateau", "constant"]
Selection = Literal["loss", "f1", "last"]


def _field(default: Any, help: str | None = None, **bounds: Any) -> Any:
    """A field with the text and bounds its command-line option shows (``seispick.cli.training_options``):
    ``min``, ``max``, ``min_open`` of a range, or the ``choices`` offered."""
    return field(default=default, metadata={"help": help, **bounds})


@dataclass
class TrainConfig:
    """Optimiser, schedule, early stopping and data-loading settings of one training run.

    Adam with decoupled weight decay (AdamW). ``schedule``: cosine decay from ``lr`` to ``lr * min_lr_factor``
    over ``epochs``, halving on a validation plateau, or constant. Training stops when the validation loss has
    not improved by ``min_delta`` for ``patience`` epochs; the best epoch's weights are kept (epoch 0 is the
    starting point, so fine-tuning never ends worse on validation than its base).
    Each epoch draws ``windows_per_sample`` random windows from every training sample (with ``epoch_windows``,
    as many per sample as make about that many windows per epoch, see :meth:`windows_for`); validation windows
    are drawn once, with a fixed seed, ``val_windows_per_sample`` per sample. ``edge_probability`` of the windows
    are aligned with a record's start or end, as the runtime aligns its first and last windows.
    ``freeze_encoder`` fixes the PhaseNet encoder; ``freeze_batchnorm`` keeps every batch-norm layer's running
    statistics (useful when fine-tuning on one station, whose small batches would shift them).
    ``anchor_weight`` adds ``anchor_weight * sum((w - w_start)**2)`` over the trained weights to the loss (L2-SP,
    Li et al. 2018: fine-tuning pulled towards the base instead of towards zero). ``replay_fraction`` adds that
    many windows (as a fraction of the own training windows) from replayed data, e.g. other stations, per epoch.
    ``distill_weight`` blends the targets of the phases in ``distill_phases`` with the starting network's own
    probabilities (:mod:`~seispick.training.fitting.distill`), so that fine-tuning keeps what the base did well.

    ``select_on``: ``"loss"`` keeps the epoch of lowest validation loss; ``"f1"`` the epoch of best validation pick
    F1 (mean of P and S within 0.1 s, the picks made by the runtime over whole validation records), ties broken
    by the lower validation loss, and early stopping counts epochs without such an improvement; ``"last"`` keeps
    the last epoch (a number of epochs chosen beforehand, e.g. by k-fold selection).
    S-aware settings: ``s_label_sigma`` (samples; default ``label_sigma``) widens the S target, ``class_weights``
    (noise, P, S) weigh the cross-entropy terms, ``s_window_probability`` is the share of windows placed around S
    rather than P (when a record has both). ``warmup_epochs`` ramp the learning rate up linearly first.
    ``calibrate_thresholds``: after training, the P and S pick thresholds are set to those with the best
    validation F1 (mean of 0.1 s and 0.5 s; from a coarse grid; the card's thresholds are kept unless one does
    better).

    Field metadata (``help``, ``min``, ``max``, ``choices``) describe the command-line options of each field.
    """

    epochs: int = _field(30, min=1)
    batch_size: int = _field(16, min=1)
    lr: float = _field(1e-3, "Learning rate.", min=0, min_open=True)
    weight_decay: float = _field(1e-4, min=0)
    schedule: Schedule = "cosine"
    min_lr_factor: float = 0.01
    patience: int = _field(6, "Early-stopping patience (epochs).", min=1)
    min_delta: float = 1e-4
    seed: int = 0
    windows_per_sample: int = _field(4, "Random windows per sample and epoch.", min=1)
    val_windows_per_sample: int = 4
    epoch_windows: int | None = _field(
        None,
        "Windows per epoch (windows per sample = this / samples, 1-32) unless --windows-per-sample.",
        min=1,
    )
    freeze_encoder: bool = _field(False, "Keep the encoder weights fixed.")
    freeze_batchnorm: bool = _field(False, "Keep batch-norm running statistics fixed.")
    edge_probability: float = _field(
        0.1, "Share of windows aligned with a record's start or end.", min=0, max=1
    )
    anchor_weight: float = _field(
        0.0, "L2-SP: penalise the squared distance of the weights from the base's.", min=0
    )
    replay_fraction: float = _field(
        0.0, "Replayed windows per epoch as a fraction of the own training windows.", min=0
    )
    distill_weight: float = _field(
        0.0,
        "Blend the targets of --distill-phases with the base's own probabilities (learning without forgetting).",
        min=0,
        max=1,
    )
    distill_phases: str = _field("PS", "Phases whose targets --distill-weight blends with the base's output.",
                                 choices=("P", "S", "PS"))  # fmt: skip
    label_sigma: float = _field(
        10.0, "Std of the Gaussian P (and S) target, in samples.", min=0, min_open=True
    )
    augment: bool = True
    threads: int | None = None
    select_on: Selection = _field(
        "loss",
        "Keep the epoch of best validation pick F1 (P and S within 0.1 s) or of lowest validation loss.",
        choices=("f1", "loss"),
    )
    s_label_sigma: float | None = _field(
        None, "Std of the S target in samples (default --label-sigma).", min=0, min_open=True
    )
    class_weights: tuple[float, float, float] = _field(
        (1.0, 1.0, 1.0), "Loss weights of noise, P and S, comma-separated."
    )
    s_window_probability: float = _field(
        0.4, "Share of training windows placed around S rather than P.", min=0, max=1
    )
    warmup_epochs: int = _field(0, "Epochs of linear learning-rate warm-up before the cosine decay.", min=0)
    calibrate_thresholds: bool = _field(
        False,
        "Set P and S pick thresholds to those of best validation F1 (mean of 0.1 s and 0.5 s) in the card.",
    )

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.windows_per_sample < 1:
            raise ValueError("epochs, batch_size and windows_per_sample must be at least 1")
        if self.epoch_windows is not None and self.epoch_windows < 1:
            raise ValueError(f"epoch_windows must be at least 1, got {self.epoch_windows}")
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
        if self.select_on not in ("loss", "f1", "last"):
            raise ValueError(f"unknown select_on {self.select_on!r}; use loss, f1 or last")
        self.class_weights = tuple(float(w) for w in self.class_weights)  # type: ignore[assignment]
        if len(self.class_weights) != 3 or min(self.class_weights) <= 0:
            raise ValueError(
                f"class_weights must be three positive numbers (N, P, S), got {self.class_weights}"
            )
        if not 0.0 <= self.s_window_probability <= 1.0:
            raise ValueError(f"s_window_probability must lie in [0, 1], got {self.s_window_probability}")
        if self.label_sigma <= 0 or (self.s_label_sigma is not None and self.s_label_sigma <= 0):
            raise ValueError("label_sigma and s_label_sigma must be positive")
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be non-negative, got {self.warmup_epochs}")

    def windows_for(self, n_train: int) -> int:
        """Windows per training sample and epoch for ``n_train`` samples: ``windows_per_sample``, or with
        ``epoch_windows`` about ``epoch_windows / n_train`` (at least 1, at most 32), so that 50 and 500 records
        get epochs of similar length and the schedule fits both."""
        if not self.epoch_windows:
            return self.windows_per_sample
        return max(1, min(32, round(self.epoch_windows / max(n_train, 1))))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        out = asdict(self)
        out["class_weights"] = list(self.class_weights)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a dict, ignoring keys this version does not know."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


# `seispick finetune`'s defaults (the CLI options default to these; cross-validation with --defaults uses them).
FINETUNE_DEFAULTS: dict[str, Any] = {
    "lr": 3e-4,
    "epochs": 20,
    "patience": 6,
    "warmup_epochs": 1,
    "epoch_windows": 800,
    "val_windows_per_sample": 2,
    "freeze_batchnorm": True,
    "edge_probability": 0.3,
    "select_on": "f1",
    "s_window_probability": 0.5,
    "distill_weight": 0.5,
    "distill_phases": "S",
    "calibrate_thresholds": True,
}


@dataclass
class RunConfig:
    """One training run: its hyper-parameters, where it writes, and what it records.

    ``out_dir`` is the checkpoint folder, ``model_dir`` the ONNX model folder (default ``<out_dir>/model``);
    ``licence_text`` becomes the LICENSE of both (default: seispick's MIT note in the model folder only);
    ``datasets`` and ``command`` are recorded in the checkpoint; ``progress`` shows a progress bar.
    """

    out_dir: Path
    train: TrainConfig = field(default_factory=TrainConfig)
    model_dir: Path | None = None
    licence_text: str | None = None
    datasets: list[str] = field(default_factory=list)
    command: str = ""
    progress: bool = True

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        self.model_dir = Path(self.model_dir) if self.model_dir else None
        self.datasets = list(self.datasets or [])

    @property
    def model_folder(self) -> Path:
        """Where the ONNX model folder goes: ``model_dir`` or ``<out_dir>/model``."""
        return self.model_dir or self.out_dir / "model"
