"""Building shipped-style model folders: the original PhaseNet, and SeisBench checkpoints from a user's disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from seispick.models.card import ModelCard, Normalisation
from seispick.training.export.cards import phasenet_card
from seispick.training.export.convert import load_original_phasenet, load_seisbench_checkpoint
from seispick.training.export.onnx_export import write_licence, write_model_folder
from seispick.training.networks import tf_reference
from seispick.training.networks.phasenet import CITATION, PhaseNet

MIT_NOTE = "MIT licence (PhaseNet, Copyright (c) 2018 Weiqiang Zhu); see LICENSE in this folder."


class ReferenceMismatch(RuntimeError):
    """The converted network disagrees with the independent numpy forward pass of the TF graph."""


def check_against_reference(
    model: torch.nn.Module, weights: dict, windows: np.ndarray, tolerance: float = 1e-4
) -> float:
    """Max |torch - numpy TF reference| of probabilities over raw (n, 3, 3000) E,N,Z windows."""
    worst = 0.0
    for window in windows:
        x = tf_reference.normalise(window.T.astype(np.float64))
        expected = tf_reference.forward(x, weights)
        with torch.no_grad():
            actual = model(torch.from_numpy(x.T[None].astype(np.float32)))[0].numpy().T
        worst = max(worst, float(np.abs(expected - actual).max()))
    if worst > tolerance:
        raise ReferenceMismatch(
            f"converted PhaseNet differs from the TF reference by {worst:.2e} > {tolerance:.0e}"
        )
    return worst


def build_phasenet_original(
    weights_npz: str | Path, folder: str | Path, real_windows: np.ndarray | None = None
) -> ModelCard:
    """Convert the original checkpoint (``weights.npz``) into ``folder`` (ONNX + card), with both checks."""
    weights_npz = Path(weights_npz)
    weights = dict(np.load(weights_npz))
    model = load_original_phasenet(weights_npz)
    rng = np.random.default_rng(42)
    windows = rng.standard_normal((4, 3, 3000))
    if real_windows is not None:
        windows = np.concatenate([windows, real_windows])
    reference_diff = check_against_reference(model, weights, windows)
    card = phasenet_card(
        "phasenet-original",
        version="2019.07.03",
        description=(
            "The original PhaseNet (Zhu & Beroza 2019) with its published weights (TensorFlow checkpoint "
            "190703-214543, global step 340512), converted to ONNX with TF 'same' padding on 3000-sample windows."
        ),
        licence=MIT_NOTE,
        provenance=(
            f"Converted by seispick from {weights_npz.name} (PhaseNet repository model/190703-214543); "
            f"checked against an independent numpy forward pass of the TF graph on {len(windows)} windows."
        ),
        training_data="Northern California Earthquake Data Center picks (PhaseNet paper), 2000-2017",
        metrics={"tf_reference_max_abs_diff": reference_diff},
    )
    check = rng.standard_normal((3, 3, 3000)).astype(np.float32)
    licence = weights_npz.parent / "LICENSE"
    return write_model_folder(model, card, folder, check, licence_file=licence if licence.is_file() else None)


def import_seisbench(
    weights_path: str | Path,
    metadata_path: str | Path | None,
    folder: str | Path,
    name: str,
    tf_padding: bool = False,
) -> ModelCard:
    """Turn a SeisBench PhaseNet checkpoint into a shipped-style model folder (ONNX + card + LICENSE).

    Layout, widths and depth come from the weights (:func:`~seispick.training.export.convert.load_seisbench_checkpoint`);
    component order, phase order (e.g. ``ZNE``, ``PSN``) and normalisation from the JSON's ``model_args``;
    pick thresholds and overlap from its ``default_args``. The probabilities of the ONNX model are checked
    against the torch network within 1e-5.

    ``tf_padding``: run the same weights as the original PhaseNet ran them, on 3000-sample windows with
    TensorFlow "same" padding (:class:`~seispick.training.networks.phasenet.PhaseNet` ``variant="tf"``),
    instead of SeisBench's 3001 samples and its own paddings. For weights trained in TensorFlow (the original
    PhaseNet's): SeisBench's paddings move every layer's features by a sample or two against those the
    weights were trained on, and its picks come about 25-35 ms late (README "Shipped models"). The result
    then departs from SeisBench's ``annotate``/``classify`` (the parity test covers the default only).
    """
    model, metadata = load_seisbench_checkpoint(weights_path, metadata_path)
    window = 3001
    if tf_padding:
        if metadata["layout"] != "phasenet":
            raise ValueError(
                f"{weights_path}: --tf-padding needs today's PhaseNet layout, not {metadata['layout']}"
            )
        tf_model = PhaseNet(
            in_channels=model.in_channels,
            classes=model.classes,
            variant="tf",
            depth=len(model.widths),
            widths=list(model.widths),
        )
        tf_model.load_state_dict(model.state_dict(), strict=True)
        model, window = tf_model.eval(), 3000
    args = metadata["model_args"]
    labels = list(str(args.get("phases") or "NPS"))
    default_args = metadata.get("default_args") or {}
    thresholds = {p: float(default_args.get(f"{p}_threshold", 0.3)) for p in labels if p != "N"}
    thresholds["detection"] = 0.5
    source = Path(weights_path).name
    licence = str(metadata.get("licence") or metadata.get("license") or "")
    card = ModelCard(
        name=name,
        version=str(metadata.get("version", "1")),
        description=metadata.get("docstring", "") or f"SeisBench PhaseNet imported from {source}",
        architecture="phasenet",
        task="picker",
        sampling_rate=float(args.get("sampling_rate", 100)),
        window_samples=window,
        channel_order=str(args.get("component_order", "ZNE")),
        # SeisBench divides by torch's (unbiased) std + 1e-10, or by the peak + 1e-10.
        normalisation=Normalisation(
            demean=True, scale="peak" if args.get("norm") == "peak" else "std", ddof=1, eps=1e-10
        ),
        labels=labels,
        default_thresholds=thresholds,
        overlap_samples=int(default_args.get("overlap", 1500)),
        stacking=str(default_args.get("stacking", "avg")),
        licence=licence or "the checkpoint's own terms (not stated in its JSON); see LICENSE in this folder",
        citation=CITATION,
        provenance=f"Imported by seispick from the SeisBench checkpoint {source} ({metadata['layout']} layout, "
        f"widths {list(model.widths)}, read from a {metadata['weights_format']})"
        + (
            "; run with TensorFlow 'same' padding on 3000-sample windows (--tf-padding), not SeisBench's "
            "3001-sample paddings"
            if tf_padding
            else ""
        ),
        training_data=str(metadata.get("training_data", "")),
    )
    check = np.random.default_rng(7).standard_normal((3, model.in_channels, window)).astype(np.float32)
    card = write_model_folder(model, card, folder, check)
    write_licence(
        folder,
        f"{name}: imported by seispick from the SeisBench checkpoint {source}.\n\n"
        + (f"Licence stated in its metadata: {licence}\n" if licence else "")
        + "The weights keep the terms under which their publisher released them (SeisBench publishes its "
        "pretrained weights with the SeisBench project, https://github.com/seisbench/seisbench); check them "
        "before redistributing this folder.\n",
    )
    return card
