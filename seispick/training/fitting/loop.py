"""The training loop shared by PhaseNet and ConvNetQuake: AdamW, LR schedule, early stopping, checkpoints."""

from __future__ import annotations

import copy
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from seispick.training.fitting.config import TrainConfig

__all__ = [
    "CHECKPOINT_FILE",
    "CURVE_FILE",
    "HISTORY_FILE",
    "FitResult",
    "LossFn",
    "ScoreFn",
    "evaluate_loss",
    "fit",
]

CHECKPOINT_FILE = "model.pt"
HISTORY_FILE = "history.json"
CURVE_FILE = "learning_curve.png"

LossFn = Callable[[nn.Module, Sequence[torch.Tensor]], torch.Tensor]
ScoreFn = Callable[[nn.Module], dict[str, Any]]


@dataclass
class FitResult:
    """What a run did: per-epoch history (epoch 0 = the starting weights), the best epoch, its loss and, when
    checkpoints were selected on a validation score, that score."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = float("inf")
    stopped_early: bool = False
    seconds: float = 0.0
    selected_on: str = "loss"
    best_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "best_epoch": self.best_epoch,
            "best_val_loss": self.best_val_loss,
            "stopped_early": self.stopped_early,
            "seconds": round(self.seconds, 1),
            "epochs_run": max((h["epoch"] for h in self.history), default=0),
            "selected_on": self.selected_on,
        }
        if self.best_score is not None:
            out["best_score"] = self.best_score
        return out


def _set_frozen_mode(frozen: Sequence[nn.Module]) -> None:
    for module in frozen:
        module.eval()  # frozen batch-norm layers keep their running statistics


def evaluate_loss(model: nn.Module, loss_fn: LossFn, loader: DataLoader) -> float:
    """Mean loss over a loader in eval mode (weighted by batch size)."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in loader:
            n = int(batch[0].shape[0])
            total += float(loss_fn(model, batch)) * n
            count += n
    return total / max(count, 1)


def _scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig):
    if config.schedule == "cosine":
        decay = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer,
            T_max=max(1, config.epochs - config.warmup_epochs),
            eta_min=config.lr * config.min_lr_factor,
        )
        if not config.warmup_epochs:
            return decay
        warmup = torch.optim.lr_scheduler.LinearLR(
            optimizer, start_factor=1.0 / (config.warmup_epochs + 1), total_iters=config.warmup_epochs
        )
        return torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, decay], [config.warmup_epochs])
    if config.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=0.5, patience=max(1, config.patience // 2)
        )
    return None


def _improved(result: FitResult, val_loss: float, score: float | None, min_delta: float) -> bool:
    """Better than the best so far: a higher score (ties: lower loss), or without a score a lower loss."""
    if score is None or result.best_score is None:
        return val_loss < result.best_val_loss - min_delta
    if abs(score - result.best_score) > 1e-9:
        return score > result.best_score
    return val_loss < result.best_val_loss - min_delta


def fit(
    model: nn.Module,
    loss_fn: LossFn,
    train_data: Dataset,
    val_data: Dataset,
    config: TrainConfig,
    out_dir: str | Path | None = None,
    frozen: Sequence[nn.Module] = (),
    progress: bool = True,
    description: str = "",
    eval_modules: Sequence[nn.Module] = (),
    score_fn: ScoreFn | None = None,
) -> FitResult:
    """Train ``model`` in place; at the end it holds the weights of the best validation epoch.

    Seeded (torch and the batch order) and single-process data loading, so a run on CPU is reproducible.
    ``frozen`` modules get no gradient and stay in eval mode; ``eval_modules`` only stay in eval mode (batch norm
    with fixed running statistics but trainable scale and shift). With ``out_dir``, the best weights go to
    ``model.pt`` and the history to ``history.json`` and ``learning_curve.png`` after every epoch.
    Datasets with ``set_epoch`` draw new windows each epoch (the validation set keeps its own).
    With ``score_fn`` (returns a dict with ``"score"``, higher is better, e.g. validation pick F1) checkpoints are
    selected and stopped on that score, ties broken by the lower validation loss; its entries go into the history.
    """
    from seispick.training.evaluation.plots import plot_learning_curve

    started = time.monotonic()
    torch.manual_seed(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    for module in frozen:
        for param in module.parameters():
            param.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: every parameter is frozen")
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = _scheduler(optimizer, config)
    anchor = [p.detach().clone() for p in params] if config.anchor_weight else []
    order = torch.Generator().manual_seed(config.seed)
    train_loader = DataLoader(
        train_data, batch_size=config.batch_size, shuffle=True, generator=order, num_workers=0
    )
    val_loader = DataLoader(val_data, batch_size=config.batch_size, shuffle=False, num_workers=0)
    out = Path(out_dir) if out_dir else None
    if out:
        out.mkdir(parents=True, exist_ok=True)

    result = FitResult(selected_on="last" if config.select_on == "last" else "score" if score_fn else "loss")
    val_loss = evaluate_loss(model, loss_fn, val_loader)
    scores = score_fn(model) if score_fn else {}
    result.history.append({"epoch": 0, "train_loss": None, "val_loss": val_loss, "lr": config.lr, **scores})
    result.best_val_loss, best_state = val_loss, copy.deepcopy(model.state_dict())
    result.best_score = scores.get("score")
    if out:
        torch.save(best_state, out / CHECKPOINT_FILE)
    waited = 0
    for epoch in range(1, config.epochs + 1):
        if hasattr(train_data, "set_epoch"):
            train_data.set_epoch(epoch)
        model.train()
        _set_frozen_mode([*frozen, *eval_modules])
        lr = optimizer.param_groups[0]["lr"]
        running, seen = 0.0, 0
        bar = tqdm(
            train_loader,
            desc=f"{description + ' ' if description else ''}epoch {epoch}/{config.epochs}",
            disable=not progress,
            file=sys.stderr,
            leave=False,
        )
        for batch in bar:
            loss = loss_fn(model, batch)
            optimizer.zero_grad(set_to_none=True)
            if anchor:
                drift = sum(((p - p0) ** 2).sum() for p, p0 in zip(params, anchor))
                (loss + config.anchor_weight * drift).backward()
            else:
                loss.backward()
            optimizer.step()
            n = int(batch[0].shape[0])
            running, seen = running + float(loss.detach()) * n, seen + n
            bar.set_postfix(train=f"{running / seen:.4f}", val=f"{val_loss:.4f}", lr=f"{lr:.1e}")
        bar.close()
        train_loss = running / max(seen, 1)
        val_loss = evaluate_loss(model, loss_fn, val_loader)
        scores = score_fn(model) if score_fn else {}
        result.history.append(
            {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "lr": lr, **scores}
        )
        improved = config.select_on == "last" or _improved(
            result, val_loss, scores.get("score"), config.min_delta
        )
        if improved:
            result.best_epoch, result.best_val_loss = epoch, val_loss
            result.best_score = scores.get("score")
            best_state = copy.deepcopy(model.state_dict())
            waited = 0
            if out:
                torch.save(best_state, out / CHECKPOINT_FILE)
        else:
            waited += 1
        if progress:
            mark = " *" if improved else ""
            extra = "".join(f"  {k} {v:.3f}" for k, v in scores.items() if k != "score")
            tqdm.write(
                f"epoch {epoch}: train {train_loss:.4f}  val {val_loss:.4f}{extra}  lr {lr:.1e}{mark}",
                file=sys.stderr,
            )
        if out:
            (out / HISTORY_FILE).write_text(json.dumps(result.history, indent=1) + "\n")
            plot_learning_curve(result.history, out / CURVE_FILE, description)
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(val_loss if score_fn is None else -scores["score"])
        elif scheduler is not None:
            scheduler.step()
        if waited >= config.patience:
            result.stopped_early = True
            break
    model.load_state_dict(best_state)
    model.eval()
    result.seconds = time.monotonic() - started
    if out:
        (out / HISTORY_FILE).write_text(json.dumps(result.history, indent=1) + "\n")
        plot_learning_curve(result.history, out / CURVE_FILE, description)
    return result
