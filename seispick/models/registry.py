"""Where models live: the folders shipped inside this package plus user model folders."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from seispick.models.card import CARD_FILE, CardError, ModelCard
from seispick.models.inference import Backend, ModelLoadError, OnnxModel, load_model_dir

SHIPPED_DIR = Path(__file__).resolve().parent
# What choose_default() picks from the shipped cards' held-out figures (a test keeps the two equal).
DEFAULT_MODEL = "phasenet-original"
REFERENCE_MODEL = "phasenet-original"
F1_KEYS = ("P@0.1s", "P@0.5s", "S@0.1s", "S@0.5s")


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
                card = _read_card(folder)
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
            return ModelEntry(card=_read_card(path), folder=path, shipped=False)
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


def _read_card(folder: Path) -> ModelCard:
    try:
        return ModelCard.read(folder)
    except CardError as exc:
        raise ModelLoadError(str(exc)) from exc


@dataclass(frozen=True)
class DefaultChoice:
    """The default model and why: the held-out sets used, and the sets left out because a model had trained on
    (or was selected on) their stations."""

    name: str
    reason: str
    sets: tuple[str, ...] = ()
    excluded_sets: tuple[str, ...] = ()


def _seen_stations(card: ModelCard) -> dict[str, set[str]]:
    """Stations per dataset a model was trained or validated on, from its card's split."""
    seen: dict[str, set[str]] = {}

    def add(name: str, parts: dict) -> None:
        for part in ("train", "val"):
            stations = (parts.get(part) or {}).get("stations") if isinstance(parts.get(part), dict) else None
            seen.setdefault(name, set()).update(stations or [])

    for name, parts in card.split.items():
        if not isinstance(parts, dict):
            continue
        if name.startswith("replay"):
            for replayed, train in parts.items():
                seen.setdefault(replayed, set()).update((train or {}).get("stations") or [])
        else:
            add(name, parts)
    return seen


def choose_default(cards: list[ModelCard], reference: str = REFERENCE_MODEL) -> DefaultChoice:
    """The default-model rule.

    Held-out sets are the reference's ``held_out`` sets whose stations no picker among ``cards`` was trained or
    validated on (by the cards' splits). A candidate must be a ``general`` picker (never a regional or station
    model) with figures on every such set, and beat the reference everywhere: P and S F1 within 0.1 s and 0.5 s
    at least the reference's on every set, and better on the mean. Of those, the best mean F1 wins; when none
    qualifies (or no set is left) the reference is the default.
    """
    by_name = {c.name: c for c in cards}
    if reference not in by_name:
        raise ValueError(f"the reference model {reference!r} is not among the cards")
    pickers = [c for c in cards if c.task == "picker"]
    seen = [_seen_stations(c) for c in pickers]
    sets, excluded = [], []
    for key, held in by_name[reference].held_out.items():
        clean = all(not (set(held.stations) & s.get(held.dataset, set())) for s in seen)
        (sets if clean else excluded).append(key)
    if not sets:
        return DefaultChoice(
            reference, "no clean held-out set: the reference stays the default", (), tuple(excluded)
        )

    def mean(card: ModelCard) -> float:
        return sum(card.held_out[k].f1[f] for k in sets for f in F1_KEYS) / (len(sets) * len(F1_KEYS))

    ref = by_name[reference]
    winners = [
        c
        for c in pickers
        if c.name != reference
        and c.scope == "general"
        and all(k in c.held_out for k in sets)
        and all(c.held_out[k].f1[f] >= ref.held_out[k].f1[f] for k in sets for f in F1_KEYS)
        and mean(c) > mean(ref)
    ]
    if not winners:
        return DefaultChoice(
            reference,
            f"no general model beats {reference} on P and S F1 on every held-out set ({', '.join(sets)})",
            tuple(sets),
            tuple(excluded),
        )
    best = max(winners, key=mean)
    return DefaultChoice(
        best.name,
        f"best mean F1 {mean(best):.3f} (reference {mean(ref):.3f}) and at least the reference's everywhere",
        tuple(sets),
        tuple(excluded),
    )


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


__all__ = [
    "DEFAULT_MODEL",
    "DefaultChoice",
    "ModelEntry",
    "ModelLoadError",
    "ModelRegistry",
    "UnknownModelError",
    "choose_default",
    "shipped_cards",
]


def shipped_cards() -> list[ModelCard]:
    """The cards of the models shipped in this package."""
    return [_read_card(folder) for folder in _model_folders(SHIPPED_DIR)]
