"""Training and fine-tuning PhaseNet, from validated data to an ONNX model folder with card and test metrics.

    split = load_split(["/data/my_network"])                        # validated, split by station or time
    settings = RunConfig("runs/mine", TrainConfig(lr=1e-4, freeze_encoder=True))  # checkpoint folder, settings
    run = finetune_phasenet(split, "phasenet-original", settings)
    run.model_dir                                                    # ONNX + card.json + LICENSE + plots

The checkpoint folder holds ``model.pt`` (best state_dict), ``config.json`` (:class:`CheckpointMeta`),
``history.json`` and ``learning_curve.png``; the model folder (default ``<out>/model``) the exported ONNX with
its card, whose metrics come from running the ONNX model over the test split through the models/ runtime.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from seispick.models.card import ModelCard
from seispick.training.data.inputs import DataSplit, check_for_model
from seispick.training.data.picking_data import PickingWindows
from seispick.training.data.validation import DatasetError, validate_dataset
from seispick.training.evaluation.evaluate import evaluate, write_report
from seispick.training.export.cards import phasenet_card, summarize_report
from seispick.training.export.licences import LICENCE_FILE
from seispick.training.export.onnx_export import write_model_folder
from seispick.training.fitting.checkpoint import CheckpointMeta, load_base, load_checkpoint, write_meta
from seispick.training.fitting.config import RunConfig
from seispick.training.fitting.fold_selection import select_by_folds
from seispick.training.fitting.loop import FitResult
from seispick.training.fitting.phasenet_fit import encoder_modules, fit_phasenet, picking_loss
from seispick.training.fitting.selection import calibrate_thresholds, torch_runtime, validation_scorer
from seispick.training.networks.phasenet import PhaseNet

__all__ = [
    "FinetuneOptions",
    "RunResult",
    "encoder_modules",
    "export_checkpoint",
    "finetune_phasenet",
    "picking_loss",
    "train_phasenet",
]


@dataclass
class RunResult:
    """Where a run wrote its checkpoint and its model, and what it measured."""

    checkpoint_dir: Path
    model_dir: Path
    card: ModelCard
    fit: FitResult
    test_report: dict[str, Any] | None = None
    base_test_report: dict[str, Any] | None = None


def _check_split(split: DataSplit, card: ModelCard) -> None:
    problems = []
    for name in ("train", "val", "test"):
        problems += (
            validate_dataset(split.part(name), n_channels=len(card.channel_order)) if split.part(name) else []
        )
    if problems:
        raise DatasetError(
            f"{len(problems)} problem(s) in dataset:\n  " + "\n  ".join(problems[:20]), problems
        )
    for name in ("train", "val"):
        if not split.part(name):
            raise DatasetError(f"the {name} split is empty: give more samples (or stations/events) to split")
    check_for_model(split.part("all"), card.sampling_rate)


def _check_windows(model: nn.Module, split: DataSplit, card: ModelCard, seed: int) -> np.ndarray:
    """Inputs for the ONNX parity check: real validation windows (normalised) and random ones."""
    data = PickingWindows(
        split.val[:4], card.window_samples, card.channel_order, card.normalisation, seed=seed
    )
    real = np.stack([data[i][0].numpy() for i in range(len(data))])
    noise = np.random.default_rng(seed).standard_normal((2, *real.shape[1:])).astype(np.float32)
    return np.concatenate([real, noise]).astype(np.float32)


def _evaluate_into(model: str | Path, out_dir: Path, split: DataSplit, name: str) -> dict[str, Any] | None:
    """Evaluate ``model`` on the test split, writing ``<name>.json`` and ``<name>.png`` into ``out_dir``."""
    if not split.test:
        return None
    report = evaluate(model, split.test)
    write_report(report, out_dir / f"{name}.json", out_dir / f"{name}.png")
    return report


def train_phasenet(
    split: DataSplit,
    card: ModelCard,
    run: RunConfig,
    model: PhaseNet | None = None,
    base: str | None = None,
    base_model: str | None = None,
    replay: DataSplit | None = None,
) -> RunResult:
    """Train ``model`` (a fresh PhaseNet when None) on ``split`` as ``run`` says; export, evaluate and card it.

    ``replay``: further data (e.g. other stations) whose train part adds ``run.train.replay_fraction`` times the
    own training windows per epoch; its validation and test parts are not used.

    ``card`` gives the runtime settings the model is trained for (window, channel order, normalisation) and
    the card texts; its split and metrics are filled in here. ``base`` (what fine-tuning started from) is
    recorded in the checkpoint; ``base_model`` (a model name or folder) is evaluated on the same test split for
    comparison and recorded in the card.
    """
    out, config = run.out_dir, run.train
    _check_split(split, card)
    extra = replay.train if replay and config.replay_fraction > 0 else []
    if extra:
        check_for_model(extra, card.sampling_rate)
    variant = "tf" if card.window_samples == 3000 else "seisbench"
    model = model if model is not None else PhaseNet(variant=variant)
    if model.window_samples != card.window_samples:
        raise ValueError(f"model takes {model.window_samples} samples, card says {card.window_samples}")
    score_fn = validation_scorer(split.val, card) if config.select_on == "f1" else None
    result = fit_phasenet(model, split.train, split.val, config, card, out, run.progress, extra, score_fn)
    calibration = None
    if config.calibrate_thresholds:
        calibration = calibrate_thresholds(torch_runtime(model, card), split.val)
        card = card.model_copy(
            update={"default_thresholds": {**card.default_thresholds, **calibration["thresholds"]}}
        )

    description = dict(split.description)
    if extra:
        description["replay (train part only)"] = {name: d["train"] for name, d in replay.description.items()}
    card = card.model_copy(update={"split": description})
    meta = CheckpointMeta(
        architecture="phasenet",
        model_args={"variant": model.variant},
        card=card,
        train=config.to_dict(),
        fit=result.to_dict(),
        base=base,
        datasets=run.datasets,
        command=run.command,
    )
    write_meta(out, meta)
    if run.licence_text:
        (out / LICENCE_FILE).write_text(run.licence_text)
    model_dir = run.model_folder
    card = _export(model, card, model_dir, _check_windows(model, split, card, config.seed), run.licence_text)

    report = _evaluate_into(model_dir, out, split, "evaluation_test")
    base_report = _evaluate_into(base_model, out, split, "evaluation_test_base") if base_model else None
    metrics = dict(card.metrics)
    metrics["training"] = {k: v for k, v in result.to_dict().items() if k != "seconds"}
    if calibration:
        metrics["threshold_calibration"] = {"on": "validation split", **calibration}
    if report:
        metrics["test"] = summarize_report(report)
    if base_report:
        metrics["base_test"] = {"model": base_report["model"], **summarize_report(base_report)}
    card = card.model_copy(update={"metrics": metrics})
    card.write(model_dir)
    meta.card = card.model_copy(update={"onnx_sha256": ""})
    write_meta(out, meta)
    return RunResult(out, model_dir, card, result, report, base_report)


def _export(
    model: nn.Module, card: ModelCard, model_dir: Path, check: np.ndarray, licence_text: str | None
) -> ModelCard:
    return write_model_folder(model.eval(), card, model_dir, check, licence_text=licence_text)


@dataclass
class FinetuneOptions:
    """What fine-tuning adds to a run: the card's name and changes, the base's test score, k-fold selection.

    With ``score_base`` the base is evaluated on the same test split when it is a runnable model
    (``phasenet-original``, or ``base_model`` given by name or folder). With ``select_folds`` K >= 3 the epoch
    count and the P/S thresholds are chosen by K-fold cross-validation over the training and validation records
    (:func:`~seispick.training.fitting.fold_selection.select_by_folds`, folds by station, or by time when
    ``split_by`` is time or the data come from one station), and the model is then fine-tuned on all of them for
    that many epochs.
    """

    name: str = "phasenet-finetuned"
    card_changes: dict[str, Any] = field(default_factory=dict)
    score_base: bool = True
    base_model: str | None = None
    select_folds: int = 0
    split_by: str = "auto"


def finetune_phasenet(
    split: DataSplit,
    base: str | Path,
    run: RunConfig,
    options: FinetuneOptions | None = None,
    replay: DataSplit | None = None,
) -> RunResult:
    """Fine-tune a PhaseNet from ``base`` (see :func:`~seispick.training.fitting.checkpoint.load_base`) on
    ``split`` as ``run`` and ``options`` (:class:`FinetuneOptions`) say; ``replay`` as in :func:`train_phasenet`.

    The runtime settings (window, channels, normalisation, thresholds) are the base's.
    """
    options = options or FinetuneOptions()
    model, base_card, origin = load_base(base)
    command = run.command
    card = phasenet_card(
        options.name,
        template=base_card,
        version="1",
        description=f"PhaseNet fine-tuned from {origin}.",
        provenance=f"Fine-tuned by seispick from {origin}" + (f": {command}" if command else "."),
        **options.card_changes,
    )
    base_model = options.base_model
    if base_model is None and str(base) == "phasenet-original":
        base_model = "phasenet-original"
    if not options.score_base:
        base_model = None
    config = run.train
    if options.select_folds:
        pool = split.train + split.val
        by = (
            options.split_by
            if options.split_by in ("station", "time")
            else "time"
            if len({s.station for s in pool}) == 1
            else "station"
        )
        say = (lambda text: print(text, flush=True)) if run.progress else None
        choice = select_by_folds(
            pool,
            lambda: load_base(base)[0],
            card,
            config,
            options.select_folds,
            by,
            config.seed,
            progress=say,
        )
        thresholds = {**card.default_thresholds, **choice.thresholds}
        metrics = {**card.metrics, "fold_selection": choice.to_dict()}
        card = card.model_copy(update={"default_thresholds": thresholds, "metrics": metrics})
        config = choice.final_config(config)
        if choice.epochs == 0:  # the base beat every fine-tuned epoch: keep its weights (epoch 0 of one)
            config = dataclasses.replace(config, select_on="loss", min_delta=float("inf"))
        split = DataSplit(train=pool, val=split.val, test=split.test, description=split.description)
    run = dataclasses.replace(run, train=config)
    return train_phasenet(split, card, run, model=model, base=str(base), base_model=base_model, replay=replay)


def export_checkpoint(
    checkpoint_dir: str | Path, model_dir: str | Path, name: str | None = None, seed: int = 0
) -> ModelCard:
    """Export a checkpoint folder to an ONNX model folder with its card; parity with torch is checked."""
    checkpoint_dir = Path(checkpoint_dir)
    model, meta = load_checkpoint(checkpoint_dir)
    card = meta.card if name is None else meta.card.model_copy(update={"name": name})
    rng = np.random.default_rng(seed)
    check = rng.standard_normal((4, len(card.channel_order), card.window_samples)).astype(np.float32)
    if meta.architecture == "convnetquake":  # a detector whose cells were dropped outputs noise and event
        net = model.probability_model(merge_cells=len(card.labels) == 2 and model.n_cells > 1)
    else:
        net = model
    licence = checkpoint_dir / LICENCE_FILE
    card = write_model_folder(
        net, card, model_dir, check, licence_file=licence if licence.is_file() else None
    )
    return card


def history_of(checkpoint_dir: str | Path) -> list[dict[str, Any]]:
    """The per-epoch history of a checkpoint folder."""
    return json.loads((Path(checkpoint_dir) / "history.json").read_text())
