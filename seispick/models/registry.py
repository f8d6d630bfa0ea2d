"""Where models live: the folders shipped inside this package plus user model folders."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .card import CARD_FILE, ModelCard
from .runtime import Backend, ModelLoadError, OnnxModel, load_model_dir

SHIPPED_DIR = Path(__file__).resolve().parent
# The shipped model with the best held-out F1 (see its card's "description" for the comparison).
DEFAULT_MODEL = "phasenet-ta109c"


class UnknownModelError(KeyError):
    """No model of that name in the registry."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


@dataclass(frozen=True)
class ModelEntry:
    """A model folder and its card."""

    card: ModelCard
    folder: Path
    shipped: bool


class ModelRegistry:
    """Lists models found in the shipped folder and in ``extra_dirs`` (later folders win on name clashes)."""

    def __init__(self, extra_dirs: list[str | Path] | None = None) -> None:
        dirs = [SHIPPED_DIR] + [Path(d) for d in (_env_dirs() if extra_dirs is None else extra_dirs)]
        self._entries: dict[str, ModelEntry] = {}
        for base in dirs:
            for folder in _model_folders(base):
                card = ModelCard.read(folder)
                self._entries[card.name] = ModelEntry(card=card, folder=folder, shipped=base == SHIPPED_DIR)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[ModelEntry]:
        return [self._entries[name] for name in self.names()]

    def get(self, name: str | None = None) -> ModelEntry:
        """The entry for ``name`` (default model when None). A path to a model folder also works."""
        name = name or DEFAULT_MODEL
        if name in self._entries:
            return self._entries[name]
        path = Path(name)
        if (path / CARD_FILE).is_file():
            return ModelEntry(card=ModelCard.read(path), folder=path, shipped=False)
        known = ", ".join(self.names()) or "none"
        raise UnknownModelError(f"unknown model {name!r}; known models: {known}")

    def load(
        self,
        name: str | None = None,
        threads: int | None = None,
        prefer_gpu: bool = True,
        backend: Backend = "onnxruntime",
    ) -> OnnxModel:
        """Load the named model for inference on ``backend`` (onnxruntime, the reference, or openvino)."""
        return load_model_dir(self.get(name).folder, threads=threads, prefer_gpu=prefer_gpu, backend=backend)


def _model_folders(base: Path) -> list[Path]:
    if (base / CARD_FILE).is_file():
        return [base]
    if not base.is_dir():
        return []
    return sorted(p for p in base.iterdir() if (p / CARD_FILE).is_file())


def user_model_dir() -> Path:
    """Where ``seispick models import-seisbench`` and training put models by default."""
    return Path(os.environ.get("SEISPICK_USER_MODEL_DIR", Path.home() / ".seispick" / "models"))


def _env_dirs() -> list[Path]:
    value = os.environ.get("SEISPICK_MODEL_DIRS", "")
    return [user_model_dir()] + [Path(p) for p in value.split(os.pathsep) if p]


__all__ = ["DEFAULT_MODEL", "ModelEntry", "ModelLoadError", "ModelRegistry", "UnknownModelError"]
