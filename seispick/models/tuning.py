"""A copy of a model with other P/S thresholds: ``seispick models tune``.

The copy is a model folder of its own (card + the same ONNX file, copied and checked against the card's sha256,
+ LICENSE), so the registry, ``seispick pick --model NEW`` and the service (its ``model_dirs``, by default the
user model folder) find it like any model. The card records where the thresholds come from: the calibration
(catalogue, waveforms, blocks, held-out F1 of the card's and of the chosen thresholds) or a hand setting.

Since the thresholds were chosen on one catalogue's stations, a general model's copy is ``regional`` (never the
default model), its ``held_out`` figures (measured at the source's thresholds) move to
``metrics['source_held_out']``, and the calibration stations are written into its split so the default-model
rule treats them as seen.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from seispick.models.card import CARD_FILE, CardError, ModelCard, sha256_file

PHASES = ("P", "S")


class TuneError(ValueError):
    """A tuning request that cannot be carried out; the message says why."""


def calibration_for(calibration: dict[str, Any], model: str, sha256: str) -> dict[str, Any]:
    """The record of ``model`` in a calibration file written by ``seispick evaluate --calibrate``; its
    ``model_sha256`` must be ``sha256`` (thresholds chosen for other weights do not carry over)."""
    models = calibration.get("models") or {}
    if model not in models:
        known = ", ".join(models) or "none"
        raise TuneError(f"the calibration holds no model {model!r} (it has: {known})")
    record = models[model]
    if sha256 and record.get("model_sha256") and record["model_sha256"] != sha256:
        raise TuneError(
            f"the calibration of {model} was made with ONNX sha256 {record['model_sha256'][:12]}..., "
            f"the model now has {sha256[:12]}..."
        )
    if "calibration" not in record:
        raise TuneError(f"the calibration file holds scores of {model} but no threshold calibration")
    return record


def read_calibration(path: str | Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise TuneError(f"{path}: cannot read the calibration file ({exc})") from exc
    if not isinstance(data, dict) or data.get("kind") != "seispick-catalog-calibration":
        raise TuneError(f"{path}: not a calibration file of `seispick evaluate --calibrate`")
    return data


def tuned_card(
    card: ModelCard,
    name: str,
    thresholds: dict[str, float],
    record: dict[str, Any],
    vertical_only: dict[str, float] | None = None,
    off_ratios: dict[str, float] | None = None,
) -> ModelCard:
    """``card`` under ``name`` with ``thresholds`` (P and/or S), ``vertical_only`` thresholds (for instruments
    without horizontals, when calibrated apart) and ``record`` (how they were chosen) in its metrics as
    ``threshold_tuning``; ``off_ratios``: the triggers' off ratios per phase."""
    unknown = set(thresholds) - set(card.phases)
    if unknown:
        raise TuneError(f"model {card.name} has no phase {sorted(unknown)}")
    if card.task != "picker":
        raise TuneError(f"model {card.name} is a {card.task}: only a picker's P/S thresholds can be tuned")
    before = {k: card.default_thresholds.get(k) for k in thresholds}
    changes = ", ".join(f"{k} {before[k]:g} -> {v:g}" for k, v in thresholds.items())
    source = record.get("source", "set by hand")
    metrics = dict(card.metrics)
    metrics["threshold_tuning"] = {
        "source_model": card.name,
        "source_version": card.version,
        "source_thresholds": before,
        "thresholds": dict(thresholds),
        **record,
    }
    if card.held_out:
        metrics["source_held_out"] = {k: v.model_dump(mode="json") for k, v in card.held_out.items()}
    split = dict(card.split)
    stations = record.get("stations") or []
    if stations:
        split["threshold_calibration"] = {"val": {"stations": sorted(stations)}}
    try:
        return card.model_copy(
            update={
                "name": name,
                "description": (
                    f"{card.name} with thresholds {changes} ({source}). "
                    + (
                        "Scope regional: the thresholds were chosen on one catalogue's stations. "
                        if stations and card.scope == "general"
                        else ""
                    )
                    + card.description
                ),
                "default_thresholds": {**card.default_thresholds, **thresholds},
                "vertical_only_thresholds": {**card.vertical_only_thresholds, **(vertical_only or {})},
                "trigger_off_ratios": {
                    k: v
                    for k, v in {**card.trigger_off_ratios, **(off_ratios or {})}.items()
                    if v != 0.5  # SeisBench's, the default
                },
                "provenance": f"{card.provenance} Thresholds tuned by seispick models tune ({source}).",
                "metrics": metrics,
                "split": split,
                "held_out": {},
                "scope": "regional" if stations and card.scope == "general" else card.scope,
            }
        ).validated()
    except CardError as exc:
        raise TuneError(str(exc)) from exc


def write_tuned(source_folder: Path, card: ModelCard, out: Path, force: bool = False) -> Path:
    """Write the model folder ``out``: ``card`` and a copy of the source's ONNX file (its sha256 checked
    against the card) and LICENSE."""
    source_onnx = source_folder / card.onnx_file
    if not source_onnx.is_file():
        raise TuneError(f"{source_onnx}: the source model's ONNX file is missing")
    digest = sha256_file(source_onnx)
    if card.onnx_sha256 and digest != card.onnx_sha256:
        raise TuneError(f"{source_onnx}: sha256 does not match the card")
    card = card.model_copy(update={"onnx_sha256": digest})
    if out.exists() and any(out.iterdir()) and not force:
        raise TuneError(f"{out} exists and is not empty (--force to replace it)")
    if out.resolve() == source_folder.resolve():
        raise TuneError(f"{out} is the source model's folder")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source_onnx, out / card.onnx_file)
    if sha256_file(out / card.onnx_file) != card.onnx_sha256:
        raise TuneError(f"{out / card.onnx_file}: the copy's sha256 differs from the card's")
    for extra in ("LICENSE",):
        if (source_folder / extra).is_file():
            shutil.copyfile(source_folder / extra, out / extra)
    card.write(out / CARD_FILE)
    return out
