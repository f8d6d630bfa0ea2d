"""The model card: everything needed to run a shipped ONNX model the way it was trained."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

CARD_FILE = "card.json"


class Normalisation(BaseModel):
    """Per-window, per-channel normalisation applied before the network.

    ``x = (x - mean) / (scale + eps)`` with scale the standard deviation (``ddof`` as numpy) or the peak
    amplitude. SeisBench's PhaseNet uses torch's unbiased std (ddof=1); the original PhaseNet numpy's (ddof=0).
    """

    model_config = ConfigDict(extra="forbid")

    demean: bool = True
    scale: Literal["std", "peak", "none"] = "std"
    ddof: int = Field(default=0, ge=0, le=1)
    eps: float = Field(default=1e-10, ge=0)


class ModelCard(BaseModel):
    """Metadata shipped next to every ONNX model (``card.json``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    version: str
    description: str = ""
    architecture: Literal["phasenet", "convnetquake"]
    task: Literal["picker", "detector"]
    sampling_rate: float = Field(gt=0)
    window_samples: int = Field(gt=0)
    channel_order: str = Field(description="Component letters in input order, e.g. 'ENZ' or 'ZNE'")
    normalisation: Normalisation = Normalisation()
    labels: list[str] = Field(description="Output classes in order; pickers use N, P, S")
    default_thresholds: dict[str, float]
    overlap_samples: int = Field(ge=0, description="Default overlap of consecutive windows in samples")
    stacking: Literal["avg", "max"] = "avg"
    licence: str
    citation: str
    provenance: str
    training_data: str = ""
    split: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    location_cells: list[dict[str, float]] | None = None
    onnx_file: str = "model.onnx"
    onnx_sha256: str = ""
    input_name: str = "waveforms"
    output_name: str = "probabilities"

    @field_validator("channel_order")
    @classmethod
    def _check_channel_order(cls, value: str) -> str:
        if not value or len(set(value)) != len(value) or not value.isalnum():
            raise ValueError(f"channel_order must be distinct component letters, got {value!r}")
        return value.upper()

    @property
    def stride_samples(self) -> int:
        """Distance between consecutive window starts on the absolute time grid."""
        return self.window_samples - self.overlap_samples

    @property
    def phases(self) -> list[str]:
        """Phase labels a picker outputs (every label except noise)."""
        return [label for label in self.labels if label != "N"]

    @classmethod
    def read(cls, path: str | Path) -> ModelCard:
        """Read a card from ``card.json`` or from the model folder holding it."""
        path = Path(path)
        if path.is_dir():
            path = path / CARD_FILE
        return cls.model_validate_json(path.read_text())

    def write(self, path: str | Path) -> Path:
        """Write the card as pretty JSON into ``path`` (a folder or a file name)."""
        path = Path(path)
        if path.is_dir():
            path = path / CARD_FILE
        path.write_text(json.dumps(self.model_dump(mode="json"), indent=2) + "\n")
        return path


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
