"""Reproducible (seeded) builds of the shipped models from the shared data, as the `seispick` commands build them.

    python -m seispick.training.recipes all --data /work/shared/data --models models --runs runs

Each recipe calls the training functions with the settings its `seispick finetune` / `seispick train` command
(recorded in the model card's provenance) passes them, then scores the new model and the original PhaseNet on held-out test splits (`seispick evaluate`'s
code), writes the comparison into the card and a LICENSE next to the ONNX file.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from seispick.models.card import HeldOutScores, ModelCard
from seispick.models.registry import DEFAULT_MODEL, choose_default
from seispick.training.data.inputs import load_split
from seispick.training.data.synthetic_waveforms import synthetic_samples
from seispick.training.evaluation.evaluate import evaluate, write_report
from seispick.training.export.builders import build_phasenet_original
from seispick.training.export.cards import convnetquake_card, summarize_report
from seispick.training.export.licences import MIT_TEXT, NCEDC_NOTE, STEAD_NOTE
from seispick.training.fitting.checkpoint import read_meta
from seispick.training.fitting.config import FINETUNE_DEFAULTS, RunConfig, TrainConfig
from seispick.training.fitting.crossval import cross_validate
from seispick.training.fitting.train import FinetuneOptions, export_checkpoint, finetune_phasenet
from seispick.training.fitting.train_detector import (
    CELLS_MODEL,
    DetectorOptions,
    cells_for,
    detector_test_samples,
    train_convnetquake,
)

__all__ = [
    "RECIPES",
    "build_convnetquake",
    "build_phasenet",
    "describe_convnetquake",
    "describe_phasenet",
    "main",
]

PHASENET_NAME = "phasenet-ta109c"
DETECTOR_NAME = "convnetquake-ta109c"
STEAD = "stead_ta109c"
NCEDC = "ncedc_phasenet"
SEED = 0

# Fine-tuning of the original PhaseNet on the TA.109C training split (by event time), with windows of the NCEDC
# training stations (by station) replayed so that it keeps picking other stations; NCEDC test stations stay unseen.
# Chosen by 5-fold blocked cross-validation in time over the TA.109C training and validation events
# (seispick.training.fitting.crossval; the test events were not used): half the windows aligned with a record end
# (the STEAD records' tapered starts gave the original false P picks) and S targets blended half-and-half with
# the original's S output (distillation), which kept S timing where plain fine-tuning lost S picks at 0.1 s.
PHASENET_SETTINGS: dict[str, Any] = {
    "lr": 1e-3,
    "epochs": 25,
    "patience": 8,
    "windows_per_sample": 8,
    "edge_probability": 0.5,
    "freeze_batchnorm": True,
    "replay_fraction": 0.5,
    "distill_weight": 0.5,
    "distill_phases": "S",
    "seed": SEED,
    # the settings of that build where `seispick finetune`'s defaults have changed since
    "warmup_epochs": 0,
    "select_on": "loss",
    "s_label_sigma": 10.0,
    "class_weights": (1.0, 1.0, 1.0),
    "s_window_probability": 0.4,
    "calibrate_thresholds": False,
}
CV_FOLDS = 5
# `seispick finetune` and `seispick train` split every folder 0.7 : 0.15 : 0.15 (--val-fraction, --test-fraction)
FRACTIONS = (1.0 - 0.15 - 0.15, 0.15, 0.15)


def cli_options(settings: dict[str, Any]) -> list[str]:
    """`seispick train` / `finetune` options for TrainConfig fields."""
    args = []
    for key, value in settings.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else flag.replace("--", "--no-", 1))
        elif isinstance(value, tuple):
            args += [flag, ",".join(f"{v:g}" for v in value)]
        else:
            args += [flag, str(value)]
    return args


def finetune_args(settings: dict[str, Any]) -> list[str]:
    """`seispick finetune` options for TrainConfig fields (validation draws as many windows as training)."""
    return ["--base", "phasenet-original", "--split-by", "auto", *cli_options(settings)]


def finetune_config(settings: dict[str, Any]) -> TrainConfig:
    """The TrainConfig `seispick finetune` makes of ``finetune_args(settings)``: its defaults under the settings;
    a given --windows-per-sample replaces the epoch-size rule, validation drawing as many windows."""
    return TrainConfig(**{**FINETUNE_DEFAULTS, **cv_config(settings), "epoch_windows": None})


def cv_config(settings: dict[str, Any]) -> dict[str, Any]:
    """TrainConfig fields of the same run, for cross-validation."""
    return {**settings, "val_windows_per_sample": settings["windows_per_sample"]}


# ConvNetQuake on NCEDC (by station) + TA.109C (by time) + synthetics; 3 location cells from TA.109C epicentres.
DETECTOR_CELLS = 3
DETECTOR_SYNTHETIC = 100
DETECTOR_SETTINGS: dict[str, Any] = dict(
    lr=1e-3, epochs=40, patience=10, batch_size=32, windows_per_sample=4, seed=SEED
)
DETECTOR_ARGS = [
    "--architecture", "convnetquake", "--synthetic", str(DETECTOR_SYNTHETIC), *cli_options(DETECTOR_SETTINGS)
]  # fmt: skip


def detector_config() -> TrainConfig:
    """The TrainConfig `seispick train` makes of :data:`DETECTOR_ARGS` (validation draws as many windows)."""
    return TrainConfig(**DETECTOR_SETTINGS, val_windows_per_sample=DETECTOR_SETTINGS["windows_per_sample"])


def phasenet_licence() -> str:
    """LICENSE of the fine-tuned PhaseNet: MIT for weights (original and fine-tuning), STEAD attribution."""
    return (
        f"{PHASENET_NAME}: PhaseNet fine-tuned by seispick.\n\nMIT License\n\n"
        "Copyright (c) 2018 Weiqiang Zhu (PhaseNet architecture and original weights)\n"
        "Copyright (c) 2026 the seispick authors (fine-tuned weights)\n\n"
        f"{MIT_TEXT}\n{STEAD_NOTE}\n"
    )


def detector_licence() -> str:
    """LICENSE of the ConvNetQuake detector: MIT, with STEAD and NCEDC/PhaseNet attribution."""
    return (
        f"{DETECTOR_NAME}: ConvNetQuake (Perol et al. 2018) trained by seispick.\n\nMIT License\n\n"
        "Copyright (c) 2026 the seispick authors\n\n"
        f"{MIT_TEXT}\n{STEAD_NOTE}\n\n{NCEDC_NOTE}\n"
    )


def _command(args: list[str]) -> str:
    """The `seispick` command line that builds the same model, as the card's provenance records it."""
    return "seispick " + " ".join(args)


def _score(model: str | Path, samples, path: Path) -> dict[str, Any]:
    report = evaluate(model, samples)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_report(report, path.with_suffix(".json"), path.with_suffix(".png"))
    return report


def _mean_f1(summary: dict[str, Any]) -> float:
    values = [v for phase in ("P", "S") for k, v in summary[phase].items() if k.startswith("f1@")]
    return sum(values) / len(values)


def _fmt(summary: dict[str, Any], phase: str) -> str:
    s = summary[phase]
    return f"{phase} F1 {s['f1@0.1s']:.2f}/{s['f1@0.5s']:.2f}"


def build_phasenet(data: Path, models: Path, runs: Path) -> ModelCard:
    """Fine-tune the original PhaseNet on TA.109C as `seispick finetune` does with the recorded options, then
    describe it."""
    out, model_dir = runs / PHASENET_NAME, models / PHASENET_NAME
    args = ["finetune", str(data / STEAD), "--replay", str(data / NCEDC), "--out", str(out),
            "--model-out", str(model_dir), "--name", PHASENET_NAME, "-q", *finetune_args(PHASENET_SETTINGS)]  # fmt: skip
    split = load_split([data / STEAD], "auto", FRACTIONS, SEED)
    replay = load_split([data / NCEDC], "auto", FRACTIONS, SEED)
    run = RunConfig(
        out, finetune_config(PHASENET_SETTINGS), model_dir, datasets=[str(data / STEAD)],
        command=_command(args), progress=False,
    )  # fmt: skip
    options = FinetuneOptions(name=PHASENET_NAME, card_changes={"training_data": str(data / STEAD)})
    finetune_phasenet(split, "phasenet-original", run, options, replay=replay)
    return describe_phasenet(data, models, runs)


def _worse(new: dict[str, Any], old: dict[str, Any], name: str) -> list[str]:
    return [
        f"{phase} F1 within {tol} s on {name} ({old[phase][f'f1@{tol}s']:.2f} -> {new[phase][f'f1@{tol}s']:.2f})"
        for phase in ("P", "S")
        for tol in ("0.1", "0.5")
        if new[phase][f"f1@{tol}s"] < old[phase][f"f1@{tol}s"] - 1e-9
    ]


# Held-out sets of the default-model rule (seispick.models.registry.choose_default): test parts of the seeded
# splits, named with their stations so that the rule can leave out a set some model trained on.
HELD_OUT_SETS: dict[str, tuple[str, str, str]] = {
    "ncedc_test_stations": (
        NCEDC,
        "station",
        "NCEDC test stations: the test part of the station split (seed 0) of PhaseNet's NCEDC set, stations no "
        "seispick model trained on or had settings chosen on (they share northern California with the original's "
        "own training data, which favours it)",
    ),
    "ta109c_test_events": (
        STEAD,
        "time",
        "TA.109C test events: the last 8 events of the STEAD TA.109C set (split by time)",
    ),
}


def held_out_scores(model: str | Path, data: Path) -> dict[str, HeldOutScores]:
    """P and S F1 of ``model`` on every set of :data:`HELD_OUT_SETS` (through `seispick evaluate`'s code)."""
    out = {}
    for key, (folder, method, text) in HELD_OUT_SETS.items():
        test = load_split([data / folder], method, seed=SEED).test
        summary = summarize_report(evaluate(model, test))
        out[key] = HeldOutScores(
            description=text,
            dataset=folder,
            stations=sorted({s.station for s in test}),
            n_records=len(test),
            f1={f"{ph}@{t}s": round(summary[ph][f"f1@{t}s"], 4) for ph in ("P", "S") for t in ("0.1", "0.5")},
        )
    return out


def _held_out_text(held: dict[str, HeldOutScores]) -> str:
    return "; ".join(
        f"{h.description.split(':')[0]} ({h.n_records} records): P F1 {h.f1['P@0.1s']:.2f}/{h.f1['P@0.5s']:.2f}, "
        f"S F1 {h.f1['S@0.1s']:.2f}/{h.f1['S@0.5s']:.2f} at 0.1/0.5 s"
        for h in held.values()
    )


def default_verdict(models: Path) -> str:
    """What the default-model rule picks from the cards in ``models``, and why; warns when the registry differs."""
    cards = [
        ModelCard.read(folder) for folder in sorted(models.iterdir()) if (folder / "card.json").is_file()
    ]
    choice = choose_default(cards)
    text = (
        f"default by seispick.models.registry.choose_default: {choice.name} ({choice.reason}; held-out sets used: "
        f"{', '.join(choice.sets) or 'none'}; left out because a model trained on their stations: "
        f"{', '.join(choice.excluded_sets) or 'none'})"
    )
    if choice.name != DEFAULT_MODEL:
        text += f" -- set seispick.models.registry.DEFAULT_MODEL to {choice.name!r}"
    return text


def describe_original(data: Path, models: Path, runs: Path) -> ModelCard:
    """Score the original PhaseNet on the held-out sets and write them into its card (the reference model)."""
    folder = models / "phasenet-original"
    card = ModelCard.read(folder)
    held = held_out_scores(folder, data)
    base = card.description.split(" Held-out figures")[0]
    description = (
        f"{base} Held-out figures (seispick.training.recipes): {_held_out_text(held)}. It is the reference of the "
        "default-model rule (seispick.models.registry.choose_default): the default unless a general model beats "
        "it on P and S F1 on every held-out set that no model was trained on."
    )
    card = card.model_copy(update={"held_out": held, "scope": "general", "description": description})
    card.write(folder)
    return card


def _cross_validation(data: Path) -> dict[str, Any]:
    """Pooled held-out scores of the recipe and of the original over blocked time folds of TA.109C train+val."""
    results = cross_validate(
        data / STEAD, {PHASENET_NAME: cv_config(PHASENET_SETTINGS)}, CV_FOLDS, replay=[data / NCEDC]
    )
    n_events = len({p.trace_id for p in results[0].truth})
    return {"folds": CV_FOLDS, "n_events": n_events, **{r.name: r.scores() for r in results}}


def _cv_text(cv: dict[str, Any]) -> str:
    def f1(name: str, key: str) -> str:
        return f"{cv[name][key]['f1']:.2f}"

    pairs = ", ".join(
        f"{key.replace('@', ' F1 at ')} {f1('phasenet-original', key)} -> {f1(PHASENET_NAME, key)}"
        for key in ("P@0.1s", "P@0.5s", "S@0.1s", "S@0.5s")
    )
    return (
        f"In {cv['folds']}-fold blocked cross-validation in time over the {cv['n_events']} TA.109C training and "
        f"validation events (each fold fine-tuned with the same settings on the other events; "
        f"seispick.training.fitting.crossval), original -> fine-tuned: {pairs}."
    )


def describe_phasenet(data: Path, models: Path, runs: Path, cross_validation: bool = True) -> ModelCard:
    """Score the fine-tuned and the original PhaseNet on the held-out test splits (and, with
    ``cross_validation``, over time folds of TA.109C); write the description, verdict and LICENSE."""
    out, model_dir = runs / PHASENET_NAME, models / PHASENET_NAME
    card = ModelCard.read(model_dir)
    ncedc = load_split([data / NCEDC], "station", seed=SEED)
    stead = load_split([data / STEAD], "time", seed=SEED)
    new_nc = summarize_report(_score(model_dir, ncedc.test, out / "evaluation_ncedc_test"))
    old_nc = summarize_report(_score("phasenet-original", ncedc.test, out / "evaluation_ncedc_test_base"))
    held_out = stead.test + ncedc.test
    new_all = summarize_report(_score(model_dir, held_out, out / "evaluation_all_test"))
    old_all = summarize_report(_score("phasenet-original", held_out, out / "evaluation_all_test_base"))
    new_ta, old_ta = card.metrics["test"], card.metrics["base_test"]
    cv = _cross_validation(data) if cross_validation else card.metrics.get("cross_validation_ta109c")
    worse = _worse(new_ta, old_ta, "the TA.109C test split") + _worse(
        new_nc, old_nc, "the NCEDC test stations"
    )
    held = held_out_scores(model_dir, data)
    description = (
        "Station-specific (scope 'station'): PhaseNet fine-tuned for station TA.109C; by the default-model rule "
        "(seispick.models.registry.choose_default) a station or regional model is never the default, use it for "
        "TA.109C and stations like it. Fine-tuned from the original weights on the TA.109C (STEAD) training split "
        "(split by event time), with windows of the NCEDC training stations mixed in, half of the windows aligned "
        "with a record end, and S targets blended with the original's own S output (distillation). On the "
        "TA.109C test split (the events after the training and validation periods) it scores "
        f"{_fmt(new_ta, 'P')}, {_fmt(new_ta, 'S')} at 0.1/0.5 s, the original {_fmt(old_ta, 'P')}, "
        f"{_fmt(old_ta, 'S')}: the original's false P picks on the tapered starts of the STEAD records are gone. "
        + (_cv_text(cv) + " " if cv else "")
        + f"Held-out figures: {_held_out_text(held)}."
        + (" It is worse than the original on " + "; ".join(worse) + "." if worse else "")
    )
    metrics = {
        **card.metrics,
        "ncedc_test": new_nc,
        "base_ncedc_test": {"model": "phasenet-original", **old_nc},
        "all_test": new_all,
        "base_all_test": {"model": "phasenet-original", **old_all},
    }
    if cv:
        metrics["cross_validation_ta109c"] = cv
    provenance = card.provenance
    if (out / "config.json").is_file():  # rebuilt now: the command this run recorded
        provenance = (
            f"{read_meta(out).card.provenance} Built by `python -m seispick.training.recipes phasenet "
            f"--data {data}`; NCEDC comparison on the station split `load_split([ncedc], 'station', seed={SEED})`; "
            "settings chosen by `python -m seispick.training.fitting.crossval` on the TA.109C training and validation "
            "events."
        )
    card = card.model_copy(
        update={
            "description": description,
            "version": "2026.2",
            "metrics": metrics,
            "scope": "station",
            "held_out": held,
            "licence": "MIT (weights: PhaseNet (c) 2018 Weiqiang Zhu and seispick); training data STEAD, CC BY 4.0. "
            "See LICENSE in this folder.",
            "training_data": "STEAD (Mousavi et al. 2019, CC BY 4.0): 50 recordings of station TA.109C (2006-2007, "
            "M1.35-4.3, 19-110 km), as in the EQTransformer repository's test data, training split only; replayed: "
            "the training stations of PhaseNet's NCEDC set (split by station, seed 0), half as many windows.",
            "provenance": provenance,
        }
    )
    card.write(model_dir)
    (model_dir / "LICENSE").write_text(phasenet_licence())
    return card


CELL_CV_FOLDS = 5
NO_CELLS_RUN = f"{DETECTOR_NAME}-without-cells"


def cell_cross_validation(data: Path, folds: int = CELL_CV_FOLDS, work: Path | None = None) -> dict[str, Any]:
    """Do ConvNetQuake's location cells beat always answering the most frequent training cell?

    Blocked time folds over the TA.109C training and validation events (the test events stay unseen): each fold
    makes its cells from its training epicentres, trains the recipe's detector (NCEDC training stations for
    detection, synthetics) and names the cells of its held-out block; correct answers are pooled over the folds,
    next to the majority cell of each fold's training events.
    """
    import tempfile

    from seispick.training.data.folds import time_folds
    from seispick.training.data.inputs import DataSplit
    from seispick.training.evaluation.evaluate import nearest_cells

    stead = load_split([data / STEAD], "time", seed=SEED)
    ncedc = load_split([data / NCEDC], "station", seed=SEED)
    config = detector_config()
    samples = list(synthetic_samples(200, seed=SEED, noise_fraction=0.5))
    correct = majority = total = 0
    per_fold = []
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        for i, fold in enumerate(time_folds(stead.train + stead.val, folds)):
            centroids = cells_for(fold.train, 3, seed=SEED)
            card = convnetquake_card(f"cells-fold-{i}", [tuple(c) for c in centroids], overlap=500)
            split = DataSplit(train=fold.train + ncedc.train, val=fold.val + ncedc.val, test=fold.test)
            synthetics = DetectorOptions(
                synthetic_events=[s for s in samples if not s.is_noise],
                synthetic_noise=[s for s in samples if s.is_noise],
            )
            run = train_convnetquake(
                split, card, centroids, RunConfig(Path(tmp) / str(i), config, progress=False), synthetics
            )
            cells = run.test_report["cells"]
            cell_list = [{"latitude": c[0], "longitude": c[1]} for c in centroids]
            train_cells = list(nearest_cells(*_latlon(fold.train), cell_list))
            test_cells = list(nearest_cells(*_latlon(fold.test), cell_list))
            common = max(set(train_cells), key=train_cells.count)
            n = cells["n_located"]
            fold_correct = int(round(cells["accuracy"] * n)) if n else 0
            fold_majority = int(sum(c == common for c in test_cells))
            correct, majority, total = correct + fold_correct, majority + fold_majority, total + n
            per_fold.append({"fold": i, "n_located": n, "correct": fold_correct, "majority": fold_majority})
            print(
                f"cell fold {i + 1}/{folds}: {fold_correct}/{n} correct, majority {fold_majority}", flush=True
            )
    accuracy = correct / total if total else float("nan")
    baseline = majority / total if total else float("nan")
    return {
        "folds": folds,
        "n_events": total,
        "accuracy": accuracy,
        "majority_baseline": baseline,
        "supported": bool(total and accuracy > baseline),
        "per_fold": per_fold,
    }


def _latlon(samples) -> tuple[list[float], list[float]]:
    return [s.source["source_latitude"] for s in samples], [s.source["source_longitude"] for s in samples]


def build_convnetquake(data: Path, models: Path, runs: Path) -> ModelCard:
    """Cross-validate the location cells; train ConvNetQuake with cells (the recorded `seispick train` command)
    into the run folder, and ship it when the cells beat the majority cell in cross-validation, else train and
    ship the same detector without cells (`--cells 0`). Then describe it."""
    cv = cell_cross_validation(data, work=runs)
    with_cells = runs / DETECTOR_NAME / CELLS_MODEL
    _train_detector(data, runs / DETECTOR_NAME, with_cells, DETECTOR_CELLS, check_cells=False)
    if cv["supported"]:  # `seispick export`
        export_checkpoint(runs / DETECTOR_NAME, models / DETECTOR_NAME)
    else:
        _train_detector(data, runs / NO_CELLS_RUN, models / DETECTOR_NAME, 0, check_cells=True)
    card = ModelCard.read(models / DETECTOR_NAME)
    card.model_copy(update={"metrics": {**card.metrics, "cell_cross_validation": cv}}).write(
        models / DETECTOR_NAME
    )
    return describe_convnetquake(data, models, runs)


def _train_detector(data: Path, out: Path, model_dir: Path, cells: int, check_cells: bool) -> None:
    """Train the recipe's ConvNetQuake as `seispick train` does with :data:`DETECTOR_ARGS` and ``--cells``."""
    folders = [data / NCEDC, data / STEAD]
    args = ["train", *map(str, folders), "--out", str(out), "--model-out", str(model_dir), "--name", DETECTOR_NAME,
            "-q", *DETECTOR_ARGS, "--cells", str(cells), "--check-cells" if check_cells else "--keep-cells"]  # fmt: skip
    split = load_split(folders, "auto", FRACTIONS, SEED)
    centroids = cells_for(split.train, cells, seed=SEED) if cells else np.zeros((0, 2))
    command = _command(args)
    card = convnetquake_card(
        DETECTOR_NAME, [tuple(c) for c in centroids], overlap=500,
        provenance=f"Trained by seispick: {command}", training_data=", ".join(map(str, folders)),
    )  # fmt: skip
    samples = list(synthetic_samples(2 * DETECTOR_SYNTHETIC, seed=SEED, noise_fraction=0.5))
    options = DetectorOptions(
        synthetic_events=[s for s in samples if not s.is_noise],
        synthetic_noise=[s for s in samples if s.is_noise],
        check_cells=check_cells,
    )
    run = RunConfig(
        out, detector_config(), model_dir, datasets=[str(d) for d in folders], command=command, progress=False
    )
    train_convnetquake(split, card, centroids, run, options)


def describe_convnetquake(data: Path, models: Path, runs: Path) -> ModelCard:
    """Score detection on the TA.109C and NCEDC test splits, and the location cells (of the shipped model, or of
    the model with cells kept in the run folder when the cells were dropped) against the majority baseline on the
    TA.109C test events; write description and LICENSE."""
    out, model_dir = runs / DETECTOR_NAME, models / DETECTOR_NAME
    card = ModelCard.read(model_dir)
    cells_dir = model_dir if card.location_cells else out / CELLS_MODEL
    built_by = out if card.location_cells else runs / NO_CELLS_RUN
    cells_card = ModelCard.read(cells_dir)
    stead = load_split([data / STEAD], "time", seed=SEED)
    ta = _score(model_dir, stead.test, out / "evaluation_ta109c_test")
    ncedc = load_split([data / NCEDC], "station", seed=SEED)
    nc = _score(
        model_dir, detector_test_samples(ncedc.test, card.window_samples), out / "evaluation_ncedc_test"
    )
    cells = _score(cells_dir, stead.test, out / "evaluation_ta109c_test_cells")["cells"]
    majority = _majority_baseline(cells_card, stead)
    test = card.metrics["test"]
    k = len(cells_card.location_cells or [])
    lead = 0.5
    cv = card.metrics.get("cell_cross_validation")
    cv_text = (
        f"In {cv['folds']}-fold blocked cross-validation in time over the {cv['n_events']} TA.109C training and "
        f"validation events, cells were right for {cv['accuracy']:.2f} of the held-out events against "
        f"{cv['majority_baseline']:.2f} for the most frequent training cell"
        if cv
        else "the cells did not beat the most frequent training cell"
    )
    cell_text = (
        f"On the {cells['n_located']} TA.109C test events the {k} cells score accuracy {cells['accuracy']:.2f} "
        f"(balanced {cells['balanced_accuracy']:.2f}), where always answering the most frequent training cell "
        f"scores {majority:.2f}."
    )
    if card.location_cells:
        cell_text = (
            f"{cv_text[0].upper()}{cv_text[1:]}. {cell_text} Cells only mean something for station TA.109C."
        )
    else:
        cell_text = (
            f"Location cells ({k}, k-means on the located TA.109C training epicentres) were tried and left out: "
            f"{cv_text[0].lower()}{cv_text[1:]}. With cells, {cell_text[0].lower()}{cell_text[1:]} The data cannot "
            "support cells, so "
            "this detector outputs noise and event only."
        )
    description = (
        "ConvNetQuake (Perol et al. 2018): 8 convolutions (32 channels, kernel 3, stride 2) and a dense layer on "
        f"10 s windows at 100 Hz. Trained on event windows (P {lead:g}-"
        f"{lead + card.stride_samples / card.sampling_rate:g} s into the window) of the NCEDC training stations, "
        "the TA.109C training events and synthetic events, and on noise windows cut before P and synthetic noise; "
        "detection threshold chosen on the validation split. Test split (NCEDC test stations + TA.109C test "
        f"events, noise cut before P): detection precision {test['precision']:.2f}, recall {test['recall']:.2f}, "
        f"ROC AUC {test['auc']:.3f}. {cell_text}"
    )
    metrics = {
        **card.metrics,
        "ta109c_test": summarize_report(ta),
        "ncedc_test": summarize_report(nc),
        "cells_ta109c_test": {
            "model": "shipped" if card.location_cells else f"{CELLS_MODEL} (dropped)",
            "n_cells": k,
            "n_located": cells["n_located"],
            "accuracy": cells["accuracy"],
            "balanced_accuracy": cells["balanced_accuracy"],
            "majority_baseline": majority,
        },
    }
    metrics.pop("cell_majority_baseline_ta109c_test", None)
    card = card.model_copy(
        update={
            "description": description,
            "version": "2026.3",
            "metrics": metrics,
            "scope": "regional",
            "licence": "MIT (seispick); training data STEAD (CC BY 4.0) and PhaseNet's NCEDC set (MIT). "
            "See LICENSE in this folder.",
            "training_data": "PhaseNet's NCEDC recordings (154, split by station) and STEAD TA.109C (50, split by "
            "event time), train parts only, plus 100 synthetic events and 100 synthetic noise records.",
            "provenance": f"{read_meta(built_by).card.provenance} Built by `python -m seispick.training.recipes "
            f"convnetquake --data {data}`.",
        }
    )
    card.write(model_dir)
    (model_dir / "LICENSE").write_text(detector_licence())
    return card


def _majority_baseline(card: ModelCard, stead) -> float:
    """Cell accuracy on the TA.109C test events of always answering the most frequent training cell."""
    from seispick.training.evaluation.evaluate import nearest_cells

    cells = card.location_cells or []

    def labels(samples):
        lat = [s.source["source_latitude"] for s in samples]
        lon = [s.source["source_longitude"] for s in samples]
        return list(nearest_cells(lat, lon, cells))

    train = labels(stead.train)
    common = max(set(train), key=train.count)
    test = labels(stead.test)
    return sum(c == common for c in test) / len(test)


def build_original(data: Path, models: Path, runs: Path) -> ModelCard:
    """Convert the original weights as `seispick models convert-original --check-data` does (checked on 16 real
    NCEDC windows), then add its held-out figures."""
    files = sorted((data / NCEDC / "waveform_train").glob("*.npz"))[:16]
    windows = np.array([np.load(f)["data"][1200:4200].T for f in files]) if files else None
    build_phasenet_original(data / "phasenet_original" / "weights.npz", models / "phasenet-original", windows)
    return describe_original(data, models, runs)


RECIPES: dict[str, Callable[[Path, Path, Path], ModelCard]] = {
    "original": build_original,
    "phasenet": build_phasenet,
    "convnetquake": build_convnetquake,
}
DESCRIBE: dict[str, Callable[[Path, Path, Path], ModelCard]] = {
    "original": describe_original,
    "phasenet": lambda data, models, runs: describe_phasenet(data, models, runs, cross_validation=False),
    "convnetquake": describe_convnetquake,
}


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: build one recipe or all of them."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("recipe", choices=[*RECIPES, "all"])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    parser.add_argument("--models", type=Path, default=Path(__file__).resolve().parents[2] / "models")
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument(
        "--describe-only", action="store_true", help="Only re-score existing models and rewrite their cards."
    )
    args = parser.parse_args(argv)
    names = list(RECIPES) if args.recipe == "all" else [args.recipe]
    for name in names:
        card = (DESCRIBE if args.describe_only else RECIPES)[name](args.data, args.models, args.runs)
        print(
            json.dumps(
                {"model": card.name, "description": card.description, "test": card.metrics.get("test")}
            )
        )
    print(default_verdict(args.models))


if __name__ == "__main__":
    main()
