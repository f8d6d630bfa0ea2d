"""``seispick train``, ``finetune``, ``evaluate`` and ``export``: the training workflow on the command line.

torch and the training package are imported inside the commands, so that an install without the training extra
still starts (and says what is missing when one of these commands runs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from seispick.cli.catalog_eval import catalog_options, evaluate_catalog, picks_option, waveforms_option
from seispick.cli.lazy import training_module
from seispick.cli.training_options import (
    FINETUNE_FIELDS,
    TRAIN_DEFAULTS,
    TRAIN_FIELDS,
    config_option,
    config_options,
    data_options,
    option,
    run_options,
)
from seispick.training.fitting.config import FINETUNE_DEFAULTS, RunConfig, TrainConfig

SPLIT_PARTS = ["test", "val", "train", "all"]


GIVEN = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT, ParameterSource.PROMPT)


def _given(ctx: click.Context, name: str) -> bool:
    """Whether the user gave option ``name`` (click's ParameterSource, not a comparison with the default)."""
    return ctx.get_parameter_source(name) in GIVEN


def _command_line(ctx: click.Context) -> str:
    """The command as it could be typed again: its arguments and the options the user gave, nothing else."""
    words = ["seispick", *ctx.command_path.split()[1:]]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if isinstance(param, click.Argument):
            words += [str(v) for v in (value if isinstance(value, tuple | list) else [value])]
            continue
        if not _given(ctx, param.name):
            continue
        flag = max(param.opts, key=len)
        if getattr(param, "is_flag", False):
            if getattr(param, "secondary_opts", None) and not value:
                flag = max(param.secondary_opts, key=len)
            elif not value:
                continue
            words.append(flag)
        else:
            for v in value if getattr(param, "multiple", False) else [value]:
                words += [flag, ",".join(f"{x:g}" for x in v) if isinstance(v, tuple) else str(v)]
    return " ".join(words)


def _fractions(val_fraction: float, test_fraction: float) -> tuple[float, float, float]:
    train = 1.0 - val_fraction - test_fraction
    if train <= 0:
        raise click.BadParameter(
            "validation and test fractions leave nothing to train on", param_hint="--val-fraction"
        )
    return (train, val_fraction, test_fraction)


def _load_split(data: tuple[Path, ...], split_by: str, fractions, seed: int, allow_noise: bool = False):
    inputs = training_module("data.inputs")
    validation = training_module("data.validation")
    if not data:
        raise click.UsageError("give at least one dataset folder")
    try:
        return inputs.load_split(list(data), split_by, fractions, seed, allow_noise=allow_noise)
    except validation.DatasetError as exc:
        raise click.ClickException(f"cannot use the data: {exc}") from exc


def _config(ctx: click.Context, kw: dict[str, Any], defaults: dict[str, Any], **fixed: Any) -> TrainConfig:
    """The TrainConfig of ``defaults`` with every option of ``kw`` that names one of its fields; a given
    ``--windows-per-sample`` replaces the ``--epoch-windows`` rule."""
    values = {**TRAIN_DEFAULTS, **defaults}
    values.update({k: v for k, v in kw.items() if k in values and v is not None})
    values["augment"] = not kw["no_augment"]
    if _given(ctx, "windows_per_sample") or "val_windows_per_sample" not in defaults:
        # a fixed number of windows per sample, validation drawing as many
        values["val_windows_per_sample"] = values["windows_per_sample"]
    if _given(ctx, "windows_per_sample"):
        values["epoch_windows"] = None
    try:
        return TrainConfig(**{**values, **fixed})
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


def _run_config(
    ctx: click.Context, data: tuple[Path, ...], config: TrainConfig, kw: dict[str, Any]
) -> RunConfig:
    """The run of a train or finetune command: its settings, folders, licence and the command as typed."""
    return RunConfig(
        kw["out"],
        config,
        model_dir=kw["model_out"],
        licence_text=kw["licence"],
        datasets=[str(d) for d in data],
        command=_command_line(ctx),
        progress=not kw["quiet"],
    )


def _report_run(run, quiet: bool) -> None:
    click.echo(
        f"checkpoint: {run.checkpoint_dir}  (learning curve: {run.checkpoint_dir / 'learning_curve.png'})"
    )
    click.echo(f"model:      {run.model_dir}  (use it with: seispick pick --model {run.model_dir} FILES)")
    report = getattr(run, "test_report", None)
    base = getattr(run, "base_test_report", None)
    if report and base and report.get("task") == "picker":
        click.echo(_comparison_table(base, report))
    elif report:
        click.echo(_format_summary(report))
    else:
        click.echo("test split: empty (nothing held out to score on)")


def _comparison_table(base: dict[str, Any], new: dict[str, Any]) -> str:
    """Base vs fine-tuned model on the same test split: precision, recall and F1 per phase and tolerance."""
    lines = [
        f"test split ({new['n_samples']} samples): {base['model']} (base) vs {new['model']} (fine-tuned)",
        "phase  tol    n   base P   base R  base F1   new P    new R   new F1   change",
    ]
    for phase, by_tol in new["scores"].items():
        for tol, s in by_tol.items():
            b = base["scores"].get(phase, {}).get(tol)
            if b is None:
                continue
            lines.append(
                f"{phase:5s} {float(tol):4.1f}s {s['n_true']:4d}  {b['precision']:7.3f}  {b['recall']:7.3f}  "
                f"{b['f1']:7.3f}  {s['precision']:7.3f}  {s['recall']:7.3f}  {s['f1']:7.3f}  {s['f1'] - b['f1']:+7.3f}"
            )
    thresholds = ", ".join(f"{k} {v:g}" for k, v in new["thresholds"].items())
    base_thresholds = ", ".join(f"{k} {v:g}" for k, v in base["thresholds"].items())
    lines.append(f"thresholds: base {base_thresholds}; fine-tuned {thresholds}")
    return "\n".join(lines)


def _run_training(action, **kwargs):
    validation = training_module("data.validation")
    checkpoint = training_module("fitting.checkpoint")
    export = training_module("export.onnx_export")
    try:
        return action(**kwargs)
    except (validation.DatasetError, checkpoint.CheckpointError, export.ParityError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc


@click.command()
@click.argument("data", nargs=-1, type=click.Path(path_type=Path))
@data_options
@run_options(config_options(TRAIN_FIELDS))
@option("--architecture", type=click.Choice(["phasenet", "convnetquake"]), default="phasenet", help=None)
@config_option("lr")
@option("--cells", type=click.IntRange(0), default=3)
@option("--check-cells/--keep-cells", default=True)
@option("--synthetic", type=click.IntRange(0), default=0)
@option("--overlap", type=click.IntRange(0, 999), default=500)
@click.pass_context
def train(ctx: click.Context, data: tuple[Path, ...], **kw: Any) -> None:
    """Train a model from scratch on dataset folders DATA (PhaseNet npz, STEAD, SeisBench or miniSEED + picks).

    The data are validated first (problems are listed with their files), split per folder, trained with early
    stopping, exported to ONNX with a parity check, and evaluated on the test split through the runtime.
    """
    fractions = _fractions(kw["val_fraction"], kw["test_fraction"])
    split = _load_split(data, kw["split_by"], fractions, kw["seed"])
    config = _config(ctx, kw, {})
    name = kw["name"] or kw["out"].name
    cards = training_module("export.cards")
    synthetic = training_module("data.synthetic_waveforms")
    settings = _run_config(ctx, data, config, kw)
    changes = {
        "provenance": f"Trained by seispick: {settings.command}",
        "training_data": ", ".join(map(str, data)),
    }
    if kw["licence"]:
        changes["licence"] = kw["licence"]
    if kw["architecture"] == "convnetquake":
        import numpy as np

        detector = training_module("fitting.train_detector")
        centroids = (
            _run_training(detector.cells_for, train=split.train, k=kw["cells"], seed=kw["seed"])
            if kw["cells"]
            else np.zeros((0, 2))
        )
        card = cards.convnetquake_card(name, [tuple(c) for c in centroids], overlap=kw["overlap"], **changes)
        samples = list(synthetic.synthetic_samples(2 * kw["synthetic"], seed=kw["seed"], noise_fraction=0.5))
        options = detector.DetectorOptions(
            synthetic_events=[s for s in samples if not s.is_noise],
            synthetic_noise=[s for s in samples if s.is_noise],
            check_cells=kw["check_cells"],
        )
        run = _run_training(
            detector.train_convnetquake,
            split=split,
            card=card,
            centroids=centroids,
            run=settings,
            options=options,
        )
    else:
        train_mod = training_module("fitting.train")
        split.train += list(synthetic.synthetic_samples(kw["synthetic"], seed=kw["seed"]))
        card = cards.phasenet_card(name, description="PhaseNet trained by seispick.", **changes)
        run = _run_training(train_mod.train_phasenet, split=split, card=card, run=settings)
    _report_run(run, kw["quiet"])


@click.command()
@click.argument("data", nargs=-1, type=click.Path(path_type=Path))
@option("--base", default="phasenet-original")
@data_options
@run_options(config_options(TRAIN_FIELDS, FINETUNE_DEFAULTS))
@config_option("lr", FINETUNE_DEFAULTS, help="Learning rate (lower than for training).")
@config_options(FINETUNE_FIELDS, FINETUNE_DEFAULTS)
@option("--replay", multiple=True, type=click.Path(path_type=Path), show_default=None)
@config_option("replay_fraction", default=0.5)
@option("--select-folds", type=click.IntRange(0), default=0)
@option("--description", default=None, show_default=None)
@click.option(
    "--catalog",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="QuakeML (or SeisComP XML) catalogue whose analyst picks label windows cut from --waveforms "
    "(instead of, or besides, DATA folders); split by time unless --split-by is given.",
)
@waveforms_option
@picks_option
@click.pass_context
def finetune(ctx: click.Context, data: tuple[Path, ...], base: str, **kw: Any) -> None:
    """Fine-tune PhaseNet from --base on dataset folders DATA; ends with base vs fine-tuned on the test split.

    With --catalog EVENTS.xml --waveforms DIR: windows cut around the analyst picks of a QuakeML catalogue from
    the continuous waveforms they were picked on (one per station and event), split by time.

    The defaults are meant for 50-500 labelled records: about 800 windows per epoch, a warm-up epoch and cosine
    decay, the epoch of best validation pick F1 (P and S within 0.1 s) kept, half the windows placed around S,
    S targets blended with the base's own S output (--distill-weight 0.5 --distill-phases S), and P/S thresholds
    calibrated on the validation split. Wider S targets (--s-label-sigma) and an S loss weight
    (--class-weights) are there to try; in cross-validation they lowered S F1 within 0.1 s (see the README).
    """
    fractions = _fractions(kw["val_fraction"], kw["test_fraction"])
    if kw["catalog"] is None and (kw["waveforms"] or _given(ctx, "pick_modes")):
        raise click.UsageError("--waveforms and --picks go with --catalog")
    if kw["catalog"] is not None:
        split = _load_split(data, kw["split_by"], fractions, kw["seed"]) if data else None
        split = _add_catalog(split, ctx, kw, fractions)
        data = (*data, kw["catalog"])
    else:
        split = _load_split(data, kw["split_by"], fractions, kw["seed"])
    replay = _load_split(kw["replay"], kw["split_by"], fractions, kw["seed"]) if kw["replay"] else None
    config = _config(ctx, kw, FINETUNE_DEFAULTS, replay_fraction=kw["replay_fraction"] if replay else 0.0)
    if kw["select_folds"] and kw["select_folds"] < 3:
        raise click.BadParameter("use at least 3 folds (or 0 for none)", param_hint="--select-folds")
    train_mod = training_module("fitting.train")
    changes: dict[str, Any] = {"training_data": ", ".join(map(str, data))}
    if kw["description"]:
        changes["description"] = kw["description"]
    if kw["licence"]:
        changes["licence"] = kw["licence"]
    options = train_mod.FinetuneOptions(
        name=kw["name"] or kw["out"].name,
        card_changes=changes,
        select_folds=kw["select_folds"],
        split_by=kw["split_by"],
    )
    run = _run_training(
        train_mod.finetune_phasenet,
        split=split,
        base=base,
        run=_run_config(ctx, data, config, kw),
        options=options,
        replay=replay,
    )
    _report_run(run, kw["quiet"])


def _add_catalog(split, ctx: click.Context, kw: dict[str, Any], fractions):
    """``split`` (None: an empty one) with the windows of ``--catalog`` on ``--waveforms`` added, split by
    time unless ``--split-by`` was given."""
    if not kw["waveforms"]:
        raise click.UsageError("--catalog needs --waveforms (the continuous data the analysts picked)")
    windows = training_module("data.catalog_windows")
    inputs = training_module("data.inputs")
    validation = training_module("data.validation")
    manual = {"auto": None, "manual": True, "all": False}[kw["pick_modes"]]
    method = kw["split_by"] if _given(ctx, "split_by") else "time"
    try:
        found = windows.catalog_samples(kw["catalog"], kw["waveforms"], manual)
        part = inputs.split_samples(found.samples, method, fractions, kw["seed"])
    except validation.DatasetError as exc:
        raise click.ClickException(f"cannot use the catalogue: {exc}") from exc
    except ValueError as exc:
        raise click.ClickException(
            f"{kw['catalog']}: cannot split {len(found.samples)} window(s): {exc}"
        ) from exc
    if not kw["quiet"]:
        for note in found.notes:
            click.echo(f"note: {note}", err=True)
        click.echo(
            f"{kw['catalog']}: {len(found.samples)} windows from {found.n_picks} picks of {found.n_events} "
            f"events (split by {method}: {len(part.train)} train, {len(part.val)} validation, "
            f"{len(part.test)} test)",
            err=True,
        )
    split = split if split is not None else inputs.DataSplit()
    split.add(kw["catalog"].name, part)
    return split


def _format_summary(report: dict[str, Any]) -> str:
    if report.get("task") == "detector":
        d, c = report["detection"], report["cells"]
        return (
            f"{report['model']}: {report['n_events']} events, {report['n_noise']} noise samples, threshold "
            f"{report['threshold']:g}\n  precision {d['precision']:.3f}  recall {d['recall']:.3f}  F1 {d['f1']:.3f}  "
            f"ROC AUC {_num(d['auc'])}\n  location-cell accuracy {_num(c['accuracy'])} over {c['n_located']} located events"
        )
    lines = [f"{report['model']} on {report['n_samples']} samples"]
    lines.append("phase  tol    n  precision  recall     F1   res.mean  res.std  res.MAE")
    for phase, by_tol in report["scores"].items():
        for tol, s in by_tol.items():
            lines.append(
                f"{phase:5s} {float(tol):4.1f}s {s['n_true']:4d}  {s['precision']:9.3f}  {s['recall']:6.3f}  {s['f1']:5.3f}  "
                f"{_num(s['residual_mean']):>8s}  {_num(s['residual_std']):>7s}  {_num(s['residual_mae']):>7s}"
            )
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.3f}"


@click.command()
@option(
    "--model",
    "-m",
    "model",
    multiple=True,
    show_default=None,
    help="Model name or model folder (default: the shipped default); with --catalog, repeat to compare models.",
)
@option("--data", "-d", "data", multiple=True, type=click.Path(path_type=Path), show_default=None)
@catalog_options
@option("--split", "part", type=click.Choice(SPLIT_PARTS), default="test")
@data_options
@click.option("--p-threshold", type=click.FloatRange(0, 1), default=None)
@click.option("--s-threshold", type=click.FloatRange(0, 1), default=None)
@option("--detection-threshold", type=click.FloatRange(0, 1), default=None, show_default=None)
@option("--pre-p-noise/--no-pre-p-noise", default=True)
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    default=None,
    help="Report to write (JSON; CSV with --catalog).",
)
@click.option("--plot", type=click.Path(path_type=Path), default=None, help="Report PNG to write.")
@click.pass_context
def evaluate(
    ctx: click.Context, model: tuple[str, ...], data: tuple[Path, ...], part: str, **kw: Any
) -> None:
    """Score a model on labelled data through the same runtime as `seispick pick`.

    Pickers: precision, recall and F1 of P and S picks within 0.1 s and 0.5 s of the labels, and the residuals.
    Detectors: precision, recall, ROC AUC and location-cell accuracy.

    With --catalog EVENTS.xml --waveforms DIR: the analyst picks of a QuakeML catalogue against each model's
    picks on the continuous waveforms (per phase and station; --calibrate chooses thresholds). No torch needed.
    """
    if kw["catalog"]:
        return evaluate_catalog(model, {**kw, "data": data}, _command_line(ctx))
    if not data:
        raise click.UsageError("give --data (labelled dataset folders) or --catalog with --waveforms")
    if len(model) > 1:
        raise click.UsageError("one --model on labelled data (several are compared with --catalog)")
    model = model[0] if model else None
    from seispick.models.inference import ModelLoadError
    from seispick.models.registry import ModelRegistry, UnknownModelError

    try:
        loaded = ModelRegistry().load(model, prefer_gpu=False)
    except (UnknownModelError, ModelLoadError) as exc:
        raise click.ClickException(str(exc)) from exc
    fractions = _fractions(kw["val_fraction"], kw["test_fraction"])
    split = _load_split(data, kw["split_by"], fractions, kw["seed"], allow_noise=True)
    samples = split.part(part)
    if not samples:
        raise click.ClickException(f"the {part} split of {', '.join(map(str, data))} is empty")
    evaluation = training_module("evaluation.evaluate")
    thresholds = {
        k: v
        for k, v in {
            "P": kw["p_threshold"],
            "S": kw["s_threshold"],
            "detection": kw["detection_threshold"],
        }.items()
        if v is not None
    }
    if loaded.card.task == "detector" and kw["pre_p_noise"]:
        samples = training_module("data.detector_samples").detector_test_samples(
            samples, loaded.card.window_samples
        )
    try:
        report = evaluation.evaluate(loaded, samples, thresholds=thresholds)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    report["data"] = {
        "folders": [str(d) for d in data],
        "split": part,
        "split_description": split.description,
    }
    click.echo(_format_summary(report))
    if kw["out"]:
        evaluation.write_report(report, kw["out"], None)
        click.echo(f"wrote {kw['out']}", err=True)
    if kw["plot"]:
        training_module("evaluation.plots").plot_evaluation(report, kw["plot"])
        click.echo(f"wrote {kw['plot']}", err=True)


@click.command("export")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option(
    "--out", "-o", type=click.Path(path_type=Path), required=True, help="ONNX model folder to write."
)
@click.option("--name", default=None, help="Model name (default: the checkpoint's card name).")
def export(checkpoint: Path, out: Path, name: str | None) -> None:
    """Export a training CHECKPOINT folder to an ONNX model folder (card + ONNX parity check against torch)."""
    train_mod = training_module("fitting.train")
    card = _run_training(train_mod.export_checkpoint, checkpoint_dir=checkpoint, model_dir=out, name=name)
    diff = card.metrics.get("onnx_vs_torch_max_abs_diff", float("nan"))
    click.echo(f"wrote {out} (model {card.name}, sha256 {card.onnx_sha256[:12]}, ONNX vs torch {diff:.1e})")
