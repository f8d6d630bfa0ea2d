"""The model card: everything needed to run a shipped ONNX model the way it was trained."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

CARD_FILE = "card.json"
Scope = Literal["general", "regional", "station"]
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the installed seispick package
# An absolute POSIX path standing alone (not the "/0.94" of "0.87/0.94", nor a URL's path).
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/(?:[\w.+@%-]+/?)+")


class CardError(ValueError):
    """A model card that cannot be read or does not validate; the message names the file and the fields."""


class HeldOutScores(BaseModel):
    """A picker's F1 on a held-out set: records from stations (and regions) no shipped model was trained on or
    had its settings selected on. ``stations`` ("NET.STA") let the default-model rule check that."""

    model_config = ConfigDict(extra="forbid")

    description: str
    dataset: str = Field(description="Name of the dataset folder the records come from")
    stations: list[str]
    n_records: int = Field(ge=1)
    f1: dict[str, float] = Field(description="F1 by 'P@0.1s', 'P@0.5s', 'S@0.1s', 'S@0.5s'")

    @field_validator("f1")
    @classmethod
    def _check_f1(cls, value: dict[str, float]) -> dict[str, float]:
        missing = {"P@0.1s", "P@0.5s", "S@0.1s", "S@0.5s"} - set(value)
        if missing:
            raise ValueError(f"f1 lacks {sorted(missing)}")
        if any(not 0.0 <= v <= 1.0 for v in value.values()):
            raise ValueError(f"F1 values must lie in [0, 1], got {value}")
        return value


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
    vertical_only_thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="Thresholds for an instrument that recorded no horizontal component (zero-filled), where "
        "they differ from default_thresholds (a network's probabilities are lower without the horizontals)",
    )
    trigger_off_ratios: dict[str, float] = Field(
        default_factory=dict,
        description="Per phase, the fraction of the threshold below which a trigger ends (default 0.5, "
        "SeisBench's threshold / 2); the pick is the maximum between on and off",
    )
    overlap_samples: int = Field(ge=0, description="Default overlap of consecutive windows in samples")
    stacking: Literal["avg", "max"] = "avg"
    licence: str
    citation: str
    provenance: str
    training_data: str = ""
    split: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    location_cells: list[dict[str, float]] | None = None
    scope: Scope = Field(
        default="general",
        description="What the model is for: general, or one region or station (never the default model)",
    )
    held_out: dict[str, HeldOutScores] = Field(
        default_factory=dict, description="F1 on held-out sets, by set name (read by the default-model rule)"
    )
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

    @model_validator(mode="after")
    def _check_labels(self) -> ModelCard:
        if self.task == "picker":
            if "N" not in self.labels or len(self.labels) < 2:
                raise ValueError(f"a picker's labels need the noise class N and a phase, got {self.labels}")
            unknown = set(self.default_thresholds) - set(self.labels) - {"detection"}
            if unknown:
                raise ValueError(f"default_thresholds for {sorted(unknown)}, which are not among the labels")
            unknown = set(self.vertical_only_thresholds) - set(self.labels) - {"N"}
            if unknown or "N" in self.vertical_only_thresholds:
                raise ValueError(
                    f"vertical_only_thresholds for {sorted(unknown or ['N'])}: only phase labels are allowed"
                )
            bad = {k: v for k, v in self.trigger_off_ratios.items() if k not in self.phases or not 0 < v <= 1}
            if bad:
                raise ValueError(f"trigger_off_ratios {bad}: phase labels with ratios in (0, 1] only")
        else:
            if self.vertical_only_thresholds or self.trigger_off_ratios:
                raise ValueError("vertical_only_thresholds and trigger_off_ratios belong to pickers")
            if self.labels[:1] != ["noise"] or len(self.labels) < 2:
                raise ValueError(
                    f"a detector's labels start with 'noise' and name at least one class: {self.labels}"
                )
            cells = len(self.location_cells or [])
            if cells and len(self.labels) != 1 + cells:
                raise ValueError(f"{cells} location cells need {1 + cells} labels, got {len(self.labels)}")
            if self.held_out:
                raise ValueError("held_out pick scores belong to pickers")
        if self.overlap_samples >= self.window_samples:
            raise ValueError(f"overlap_samples {self.overlap_samples} must be below window_samples")
        return self

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
        """Read and validate a card from ``card.json`` or from the model folder holding it; :class:`CardError`
        names the file and what is wrong."""
        path = Path(path)
        if path.is_dir():
            path = path / CARD_FILE
        try:
            return cls.model_validate_json(path.read_text())
        except OSError as exc:
            raise CardError(f"{path}: cannot read the model card ({exc.strerror or exc})") from exc
        except ValidationError as exc:
            raise CardError(f"{path}: invalid model card: {_errors(exc)}") from exc

    def for_display(self) -> ModelCard:
        """This card as shown to people (``seispick models show``, ``GET /v1/models/{name}``): absolute paths in
        its text (the machine it was built on: training data, output folders) become paths relative to the
        package (``seispick/models/...``) or bare file names; the card file keeps them."""
        return type(self).model_validate(_without_absolute_paths(self.model_dump(mode="json")))

    def validated(self) -> ModelCard:
        """This card checked again field by field (``model_copy(update=...)`` does not validate)."""
        try:
            return type(self).model_validate(self.model_dump())
        except ValidationError as exc:
            raise CardError(f"model card {self.name!r} is invalid: {_errors(exc)}") from exc

    def write(self, path: str | Path) -> Path:
        """Validate the card, then write it as pretty JSON into ``path`` (a folder or a file name)."""
        card = self.validated()
        path = Path(path)
        if path.is_dir():
            path = path / CARD_FILE
        path.write_text(json.dumps(card.model_dump(mode="json"), indent=2) + "\n")
        return path


def shown_path(path: str) -> str:
    """An absolute path as shown: relative to the package's parent when inside the package, else its name."""
    inside = Path(path)
    if inside.is_relative_to(PACKAGE_DIR):
        return str(Path(PACKAGE_DIR.name) / inside.relative_to(PACKAGE_DIR))
    return inside.name or path


def _without_absolute_paths(value: Any) -> Any:
    if isinstance(value, str):
        return _ABSOLUTE_PATH.sub(lambda match: shown_path(match.group(0)), value)
    if isinstance(value, dict):
        return {key: _without_absolute_paths(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_absolute_paths(item) for item in value]
    return value


def _errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'card'}: {e['msg']}" for e in exc.errors()[:8])


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
