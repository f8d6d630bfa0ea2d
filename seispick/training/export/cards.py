"""Model cards of trained models: templates, test-split metric summaries, licence texts."""

from __future__ import annotations

from typing import Any

from seispick.models.card import ModelCard, Normalisation
from seispick.training.networks.convnetquake import CITATION as CNQ_CITATION
from seispick.training.networks.convnetquake import SAMPLING_RATE as CNQ_RATE
from seispick.training.networks.convnetquake import WINDOW_SAMPLES as CNQ_WINDOW
from seispick.training.networks.phasenet import CITATION as PHASENET_CITATION

__all__ = [
    "MIT_SEISPICK",
    "convnetquake_card",
    "phasenet_card",
    "summarize_report",
]

MIT_SEISPICK = "MIT licence (seispick); see LICENSE in this folder for the training data's terms."


def phasenet_card(name: str, template: ModelCard | None = None, **changes: Any) -> ModelCard:
    """Card of a trained PhaseNet: ``template``'s runtime settings (window, channels, normalisation,
    thresholds) when fine-tuned, the original PhaseNet's otherwise, with ``changes`` applied."""
    base = template or ModelCard(
        name=name,
        version="1",
        architecture="phasenet",
        task="picker",
        sampling_rate=100.0,
        window_samples=3000,
        channel_order="ENZ",
        normalisation=Normalisation(demean=True, scale="std", ddof=0, eps=1e-10),
        labels=["N", "P", "S"],
        default_thresholds={"P": 0.3, "S": 0.3, "detection": 0.5},
        overlap_samples=1500,
        stacking="avg",
        licence=MIT_SEISPICK,
        citation=PHASENET_CITATION,
        provenance="",
    )
    fresh = {"name": name, "onnx_sha256": "", "metrics": {}, "split": {}, "description": "", "provenance": ""}
    return base.model_copy(update={**fresh, **changes})


def convnetquake_card(
    name: str,
    centroids: list[tuple[float, float]],
    threshold: float = 0.5,
    overlap: int = CNQ_WINDOW // 2,
    **changes: Any,
) -> ModelCard:
    """Card of a trained ConvNetQuake with K location cells (labels noise, cell_0..cell_K-1); without centroids a
    detector without cells (labels noise, event)."""
    card = ModelCard(
        name=name,
        version="1",
        architecture="convnetquake",
        task="detector",
        sampling_rate=CNQ_RATE,
        window_samples=CNQ_WINDOW,
        channel_order="ENZ",
        normalisation=Normalisation(demean=True, scale="std", ddof=0, eps=1e-10),
        labels=["noise"] + ([f"cell_{k}" for k in range(len(centroids))] if len(centroids) else ["event"]),
        default_thresholds={"detection": threshold},
        overlap_samples=overlap,
        stacking="max",
        licence=MIT_SEISPICK,
        citation=CNQ_CITATION,
        provenance="",
        location_cells=[{"latitude": float(lat), "longitude": float(lon)} for lat, lon in centroids] or None,
    )
    return card.model_copy(update=changes)


def summarize_report(report: dict[str, Any]) -> dict[str, Any]:
    """The figures of an evaluation report worth a place in a model card."""
    if report.get("task") == "detector":
        det = report["detection"]
        cells = report["cells"]
        keep = ("threshold", "n_pos", "n_neg", "precision", "recall", "f1", "auc")
        return {
            "n_samples": report["n_samples"],
            **{k: det[k] for k in keep},
            "cell_accuracy": cells["accuracy"],
            "n_located": cells["n_located"],
        }
    out: dict[str, Any] = {"n_samples": report["n_samples"], "thresholds": report["thresholds"]}
    for phase, by_tol in report["scores"].items():
        entry: dict[str, Any] = {"n_labels": report["n_labels"][phase]}
        for tol, s in by_tol.items():
            entry[f"precision@{tol}s"] = s["precision"]
            entry[f"recall@{tol}s"] = s["recall"]
            entry[f"f1@{tol}s"] = s["f1"]
        widest = by_tol[max(by_tol, key=float)]
        entry.update(
            residual_mean_s=widest["residual_mean"],
            residual_std_s=widest["residual_std"],
            residual_mae_s=widest["residual_mae"],
        )
        out[phase] = entry
    return out
