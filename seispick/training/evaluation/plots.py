"""Figures of training and evaluation: learning curves, residual histograms, precision/recall, ROC."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["plot_evaluation", "plot_learning_curve"]

PHASE_COLOURS = {"P": "tab:blue", "S": "tab:red"}


def plot_learning_curve(history: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Train and validation loss per epoch (epoch 0: the starting weights, validation only)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    train = [(h["epoch"], h["train_loss"]) for h in history if h.get("train_loss") is not None]
    val = [(h["epoch"], h["val_loss"]) for h in history if h.get("val_loss") is not None]
    if train:
        ax.plot(*zip(*train), "o-", label="train")
    if val:
        ax.plot(*zip(*val), "s-", label="validation")
        best = min(val, key=lambda e: e[1])
        ax.axvline(best[0], color="grey", ls=":", label=f"best (epoch {best[0]})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title or "learning curve")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_evaluation(report: dict[str, Any], path: str | Path) -> Path:
    """Picker: residual histograms and precision/recall vs threshold per phase. Detector: ROC and scores."""
    if report.get("task") == "detector":
        return _plot_detector(report, path)
    phases = list(report["scores"])
    fig, axes = plt.subplots(2, len(phases), figsize=(5.5 * len(phases), 7), squeeze=False)
    widest = f"{max(report['tolerances']):g}"
    for col, phase in enumerate(phases):
        ax = axes[0, col]
        res = np.asarray(report["residuals"].get(phase, []), dtype=float)
        s = report["scores"][phase][widest]
        if res.size:
            ax.hist(res, bins=np.linspace(-float(widest), float(widest), 41), color=PHASE_COLOURS.get(phase))
        ax.set_title(
            f"{phase} residuals (pred - true), n={res.size}\nmean {_fmt(s['residual_mean'])} s, "
            f"std {_fmt(s['residual_std'])} s"
        )
        ax.set_xlabel("seconds")
        ax = axes[1, col]
        for tol, style in zip(report["threshold_sweep"][phase], ("--", "-")):
            rows = report["threshold_sweep"][phase][tol]
            t = [r["threshold"] for r in rows]
            ax.plot(t, [r["precision"] for r in rows], style, color="tab:green", label=f"precision {tol} s")
            ax.plot(t, [r["recall"] for r in rows], style, color="tab:orange", label=f"recall {tol} s")
        ax.axvline(report["thresholds"].get(phase, 0.3), color="grey", ls=":")
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("pick threshold")
        ax.set_title(
            f"{phase}: F1 "
            + ", ".join(f"{_fmt(v['f1'])} @ {k} s" for k, v in report["scores"][phase].items())
        )
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{report['model']} on {report['n_samples']} samples")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3f}"


def _plot_detector(report: dict[str, Any], path: str | Path) -> Path:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    det = report["detection"]
    if "roc" in report:
        axes[0].plot(report["roc"]["fpr"], report["roc"]["tpr"], "-o", ms=3)
    axes[0].plot([0, 1], [0, 1], ":", color="grey")
    axes[0].set_title(f"ROC (AUC {_fmt(det['auc'])})")
    axes[0].set_xlabel("false-positive rate")
    axes[0].set_ylabel("true-positive rate")
    scores = np.asarray(report["scores"], dtype=float)
    labels = np.asarray(report["labels"], dtype=bool)
    bins = np.linspace(0, 1, 21)
    axes[1].hist([scores[labels], scores[~labels]], bins=bins, label=["events", "noise"], stacked=False)
    axes[1].axvline(report["threshold"], color="grey", ls=":")
    axes[1].set_title(f"precision {_fmt(det['precision'])}, recall {_fmt(det['recall'])}")
    axes[1].set_xlabel("event probability")
    axes[1].legend()
    cells = report["cells"]
    if cells["n_cells"]:
        axes[2].imshow(np.asarray(cells["confusion"]), cmap="Blues")
        for (i, j), v in np.ndenumerate(np.asarray(cells["confusion"])):
            axes[2].text(j, i, str(v), ha="center", va="center")
        axes[2].set_xlabel("predicted cell")
        axes[2].set_ylabel("true cell")
    axes[2].set_title(f"cell accuracy {_fmt(cells['accuracy'])} (n={cells['n_located']})")
    fig.suptitle(f"{report['model']}: {report['n_events']} events, {report['n_noise']} noise samples")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
