"""Export to ONNX with a parity check, and writing of the model folder (ONNX + card)."""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from seispick.models.card import ModelCard, sha256_file
from seispick.training.export.licences import LICENCE_FILE, default_licence

__all__ = ["OPSET", "ParityError", "export_onnx", "onnx_parity", "write_licence", "write_model_folder"]

OPSET = 17


class ParityError(RuntimeError):
    """The exported ONNX model does not reproduce the PyTorch model."""


def export_onnx(
    model: torch.nn.Module, path: str | Path, input_shape: tuple[int, ...], opset: int = OPSET
) -> Path:
    """Export ``model`` (eval mode) with a dynamic batch axis; input "waveforms", output "probabilities"."""
    path = Path(path)
    model = model.eval()
    example = torch.zeros((2, *input_shape[1:]), dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings: shapes are static per window length by design
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=["waveforms"],
            output_names=["probabilities"],
            dynamic_axes={"waveforms": {0: "batch"}, "probabilities": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    return path


def onnx_parity(model: torch.nn.Module, onnx_path: str | Path, inputs: np.ndarray) -> float:
    """Max |torch - onnxruntime| over ``inputs`` (batch, channels, samples)."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(inputs.astype(np.float32))).numpy()
    actual = session.run(None, {"waveforms": inputs.astype(np.float32)})[0]
    return float(np.abs(expected - actual).max())


def write_model_folder(
    model: torch.nn.Module,
    card: ModelCard,
    folder: str | Path,
    check_inputs: np.ndarray,
    tolerance: float = 1e-5,
    licence_file: str | Path | None = None,
    licence_text: str | None = None,
) -> ModelCard:
    """Export ``model`` into ``folder`` with its card (sha256 and parity filled in) and a LICENSE (copied from
    ``licence_file``, else ``licence_text``, else :func:`~seispick.training.export.licences.default_licence`); raise
    if parity fails. The folder is written only when the parity check passes.
    """
    folder = Path(folder)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(model, Path(tmp) / card.onnx_file, check_inputs.shape)
        diff = onnx_parity(model, onnx_path, check_inputs)
        if diff > tolerance:
            raise ParityError(
                f"ONNX export of {card.name} differs from torch by {diff:.2e} > {tolerance:.0e}"
            )
        card = card.model_copy(
            update={
                "onnx_sha256": sha256_file(onnx_path),
                "metrics": {**card.metrics, "onnx_vs_torch_max_abs_diff": diff},
            }
        )
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(onnx_path, folder / card.onnx_file)
    card.write(folder)
    if licence_file:
        shutil.copyfile(licence_file, folder / LICENCE_FILE)
    else:
        write_licence(folder, licence_text or default_licence(card))
    return card


def write_licence(folder: str | Path, text: str) -> Path:
    """Write ``text`` as the model folder's LICENSE."""
    path = Path(folder) / LICENCE_FILE
    path.write_text(text if text.endswith("\n") else text + "\n")
    return path
