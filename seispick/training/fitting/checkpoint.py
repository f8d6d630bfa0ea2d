"""Training checkpoint folders (weights + config JSON) and the starting points of fine-tuning."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from seispick.models.card import ModelCard
from seispick.models.registry import ModelRegistry, UnknownModelError
from seispick.training.export.convert import load_original_phasenet
from seispick.training.fitting.loop import CHECKPOINT_FILE
from seispick.training.networks.convnetquake import ConvNetQuake
from seispick.training.networks.phasenet import PhaseNet

__all__ = [
    "CONFIG_FILE",
    "CheckpointError",
    "CheckpointMeta",
    "build_model",
    "load_base",
    "load_checkpoint",
    "original_weights_path",
    "read_meta",
    "write_meta",
]

CONFIG_FILE = "config.json"
ORIGINAL = "phasenet-original"
_REPO = Path(__file__).resolve().parents[2]  # seispick/, as before the move (not the repository root)
ORIGINAL_WEIGHTS = (
    Path("/work/shared/data/phasenet_original/weights.npz"),
    _REPO / "tests" / "data" / "phasenet_original" / "weights.npz",
)


class CheckpointError(ValueError):
    """A checkpoint folder or fine-tuning base cannot be used; the message says why."""


class CheckpointMeta(BaseModel):
    """``config.json`` of a checkpoint folder: how to rebuild the network and the card of its ONNX export."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["seispick-checkpoint/1"] = "seispick-checkpoint/1"
    architecture: Literal["phasenet", "convnetquake"]
    model_args: dict[str, Any] = Field(default_factory=dict)
    card: ModelCard
    train: dict[str, Any] = Field(default_factory=dict)
    fit: dict[str, Any] = Field(default_factory=dict)
    base: str | None = None
    datasets: list[str] = Field(default_factory=list)
    command: str = ""


def write_meta(folder: str | Path, meta: CheckpointMeta) -> Path:
    """Write ``config.json`` into ``folder``."""
    path = Path(folder) / CONFIG_FILE
    path.write_text(meta.model_dump_json(indent=2) + "\n")
    return path


def read_meta(folder: str | Path) -> CheckpointMeta:
    """Read ``config.json`` of a checkpoint folder."""
    folder = Path(folder)
    path = folder / CONFIG_FILE
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: checkpoint folder does not exist")
    if not path.is_file():
        raise CheckpointError(f"{folder}: no {CONFIG_FILE}, so this is not a seispick training checkpoint")
    try:
        return CheckpointMeta.model_validate_json(path.read_text())
    except ValidationError as exc:
        raise CheckpointError(
            f"{path}: not a valid checkpoint config ({exc.error_count()} error(s): {exc})"
        ) from exc


def build_model(architecture: str, model_args: dict[str, Any]) -> nn.Module:
    """A fresh network of ``architecture`` with ``model_args``."""
    if architecture == "phasenet":
        return PhaseNet(**model_args)
    if architecture == "convnetquake":
        return ConvNetQuake(**model_args)
    raise CheckpointError(f"unknown architecture {architecture!r}")


def load_checkpoint(folder: str | Path) -> tuple[nn.Module, CheckpointMeta]:
    """The network of a checkpoint folder (best weights, eval mode) and its config."""
    folder = Path(folder)
    meta = read_meta(folder)
    weights = folder / CHECKPOINT_FILE
    if not weights.is_file():
        raise CheckpointError(f"{folder}: {CHECKPOINT_FILE} is missing")
    model = build_model(meta.architecture, meta.model_args)
    try:
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    except (RuntimeError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{weights}: does not fit a {meta.architecture} with {meta.model_args} ({exc})"
        ) from exc
    return model.eval(), meta


def original_weights_path() -> Path:
    """The original PhaseNet's ``weights.npz``: ``$SEISPICK_ORIGINAL_WEIGHTS``, the shared data, or the test copy."""
    env = os.environ.get("SEISPICK_ORIGINAL_WEIGHTS")
    candidates = ([Path(env)] if env else []) + list(ORIGINAL_WEIGHTS)
    for path in candidates:
        if path.is_file():
            return path
    raise CheckpointError(
        "the original PhaseNet weights (weights.npz) were not found; set SEISPICK_ORIGINAL_WEIGHTS or pass "
        "--base /path/to/weights.npz"
    )


def _original_card() -> ModelCard:
    return ModelRegistry().get(ORIGINAL).card


def load_base(base: str | Path) -> tuple[nn.Module, ModelCard, str]:
    """The network to fine-tune, the card it was exported with, and a description of where it came from.

    ``base``: ``phasenet-original`` (the published checkpoint), a ``weights.npz`` of the original TF
    checkpoint, or a checkpoint folder written by seispick training. A shipped ONNX model cannot give its
    weights back; its card's provenance names the checkpoint to use instead.
    """
    text = str(base)
    path = Path(text)
    if text == ORIGINAL:
        weights = original_weights_path()
        return load_original_phasenet(weights), _original_card(), f"{ORIGINAL} ({weights.name})"
    if path.is_file() and path.suffix == ".npz":
        try:
            model = load_original_phasenet(path)
        except (KeyError, ValueError, OSError) as exc:
            raise CheckpointError(f"{path}: not a weights.npz of the original PhaseNet ({exc})") from exc
        return model, _original_card(), f"original PhaseNet weights {path.name}"
    if path.is_dir() and (path / CONFIG_FILE).is_file():
        model, meta = load_checkpoint(path)
        return model, meta.card, f"checkpoint {path.name} ({meta.card.name})"
    try:
        entry = ModelRegistry().get(text)
    except UnknownModelError:
        raise CheckpointError(
            f"unknown base {text!r}: use phasenet-original, a weights.npz of the original PhaseNet, or a "
            "checkpoint folder written by 'seispick train'/'finetune'"
        ) from None
    raise CheckpointError(
        f"{entry.card.name} is an ONNX model, which cannot give torch weights back; fine-tune from its training "
        f"checkpoint folder instead (provenance: {entry.card.provenance})"
    )
