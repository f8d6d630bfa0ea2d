"""``seispick train``, ``finetune``, ``evaluate`` and ``export``: the training workflow on the command line.

torch and the training package are imported inside the commands, so that an install without the training extra
still starts (and says what is missing when one of these commands runs).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .lazy import training_module

SPLIT_PARTS = ["test", "val", "train", "all"]


def _command_line(ctx: click.Context) -> str:
    """The command as it could be typed again: arguments, then the options that differ from their defaults."""
    words = ["seispick", *ctx.command_path.split()[1:]]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if isinstance(param, click.Argument):
            words += [str(v) for v in (value if isinstance(value, tuple | list) else [value])]
            continue
        if value == param.default or value is None or (isinstance(value, tuple) and not value):
            continue
        flag = max(param.opts, key=len)
        if getattr(param, "is_flag", False):
            if getattr(param, "secondary_opts", None) and not value:
                flag = max(param.secondary_opts, key=len)
            words.append(flag)
        else:
            for v in value if isinstance(value, tuple | list) else [value]:
                words += [flag, str(v)]
    return " ".join(words)


def _data_options(func):
    """Options shared by the commands that split dataset folders."""
    options = [
        click.option(
            "--split-by",
            type=click.Choice(["auto", "station", "time"]),
            default="auto",
            show_default=True,
            help="Split each folder by station or by event time; auto: time for one-station data, else station.",
        ),
        click.option("--val-fraction", type=click.FloatRange(0, 0.9), default=0.15, show_default=True),
        click.option("--test-fraction", type=click.FloatRange(0, 0.9), default=0.15, show_default=True),
        click.option(
            "--seed", type=int, default=0, show_default=True, help="Seed of splits, windows and weights."
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _train_options(func):
    """Hyper-parameter options of train and finetune."""
    options = [
        click.option(
            "--out", "-o", type=click.Path(path_type=Path), required=True, help="Checkpoint folder to write."
        ),
        click.option(
            "--model-out",
            type=click.Path(path_type=Path),
            default=None,
            help="ONNX model folder (default OUT/model).",
        ),
        click.option("--name", default=None, help="Model name in the card (default: the --out folder name)."),
        click.option("--epochs", type=click.IntRange(1), default=30, show_default=True),
        click.option("--batch-size", type=click.IntRange(1), default=16, show_default=True),
        click.option("--weight-decay", type=click.FloatRange(0), default=1e-4, show_default=True),
        click.option(
            "--schedule",
            type=click.Choice(["cosine", "plateau", "constant"]),
            default="cosine",
            show_default=True,
        ),
        click.option(
            "--patience",
            type=click.IntRange(1),
            default=6,
            show_default=True,
            help="Early-stopping patience (epochs).",
        ),
        click.option(
            "--windows-per-sample",
            type=click.IntRange(1),
            default=4,
            show_default=True,
            help="Random windows per sample and epoch.",
        ),
        click.option(
            "--edge-probability",
            type=click.FloatRange(0, 1),
            default=0.1,
            show_default=True,
            help="Share of windows aligned with a record's start or end.",
        ),
        click.option("--no-augment", is_flag=True, help="No augmentation (window placement stays random)."),
        click.option(
            "--licence", default=None, help="Licence text for the card (default: seispick MIT note)."
        ),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _fractions(val_fraction: float, test_fraction: float) -> tuple[float, float, float]:
    train = 1.0 - val_fraction - test_fraction
    if train <= 0:
        raise click.BadParameter(
            "validation and test fractions leave nothing to train on", param_hint="--val-fraction"
        )
    return (train, val_fraction, test_fraction)


def _load_split(data: tuple[Path, ...], split_by: str, fractions, seed: int, allow_noise: bool = False):
    inputs = training_module("inputs")
    validation = training_module("validation")
    if not data:
        raise click.UsageError("give at least one dataset folder")
    try:
        return inputs.load_split(list(data), split_by, fractions, seed, allow_noise=allow_noise)
    except validation.DatasetError as exc:
        raise click.ClickException(f"cannot use the data: {exc}") from exc


def _config(kw: dict[str, Any], **fixed: Any):
    config = training_module("config")
    try:
        return config.TrainConfig(
            epochs=kw["epochs"],
            batch_size=kw["batch_size"],
            weight_decay=kw["weight_decay"],
            schedule=kw["schedule"],
            patience=kw["patience"],
            seed=kw["seed"],
            windows_per_sample=kw["windows_per_sample"],
            val_windows_per_sample=kw["windows_per_sample"],
            edge_probability=kw["edge_probability"],
            augment=not kw["no_augment"],
            **fixed,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


def _report_run(run, quiet: bool) -> None:
    test = run.card.metrics.get("test")
    click.echo(
        f"checkpoint: {run.checkpoint_dir}  (learning curve: {run.checkpoint_dir / 'learning_curve.png'})"
    )
    click.echo(f"model:      {run.model_dir}  (use it with: seispick pick --model {run.model_dir} FILES)")
    if test:
        click.echo("test split: " + json.dumps(test))
    base = run.card.metrics.get("base_test")
    if base:
        click.echo(f"base model {base['model']} on the same test split: " + json.dumps(base))


def _run_training(action, **kwargs):
    validation = training_module("validation")
    checkpoint = training_module("checkpoint")
    export = training_module("export")
    try:
        return action(**kwargs)
    except (validation.DatasetError, checkpoint.CheckpointError, export.ParityError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc


@click.command()
@click.argument("data", nargs=-1, type=click.Path(path_type=Path))
@_data_options
@_train_options
@click.option(
    "--architecture", type=click.Choice(["phasenet", "convnetquake"]), default="phasenet", show_default=True
)
@click.option(
    "--lr", type=click.FloatRange(0, min_open=True), default=1e-3, show_default=True, help="Learning rate."
)
@click.option(
    "--cells",
    type=click.IntRange(3),
    default=3,
    show_default=True,
    help="ConvNetQuake location cells (k-means).",
)
@click.option(
    "--synthetic",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Synthetic events (and as many noise records for ConvNetQuake) added to training.",
)
@click.option(
    "--overlap",
    type=click.IntRange(0, 999),
    default=500,
    show_default=True,
    help="ConvNetQuake: overlap of consecutive windows (samples) in the card; event windows put P 0.5 s to "
    "one stride + 0.5 s into the window.",
)
@click.pass_context
def train(ctx: click.Context, data: tuple[Path, ...], **kw: Any) -> None:
    """Train a model from scratch on dataset folders DATA (PhaseNet npz, STEAD, SeisBench or miniSEED + picks).

    The data are validated first (problems are listed with their files), split per folder, trained with early
    stopping, exported to ONNX with a parity check, and evaluated on the test split through the runtime.
    """
    fractions = _fractions(kw["val_fraction"], kw["test_fraction"])
    split = _load_split(data, kw["split_by"], fractions, kw["seed"])
    config = _config(kw, lr=kw["lr"])
    name = kw["name"] or kw["out"].name
    cards = training_module("cards")
    synthetic = training_module("synthetic")
    extra = dict(
        model_dir=kw["model_out"],
        datasets=[str(d) for d in data],
        command=_command_line(ctx),
        progress=not kw["quiet"],
        licence_text=kw["licence"],
    )
    changes = {
        "provenance": f"Trained by seispick: {extra['command']}",
        "training_data": ", ".join(map(str, data)),
    }
    if kw["licence"]:
        changes["licence"] = kw["licence"]
    if kw["architecture"] == "convnetquake":
        detector = training_module("train_detector")
        centroids = _run_training(detector.cells_for, train=split.train, k=kw["cells"], seed=kw["seed"])
        card = cards.convnetquake_card(name, [tuple(c) for c in centroids], overlap=kw["overlap"], **changes)
        samples = list(synthetic.synthetic_samples(2 * kw["synthetic"], seed=kw["seed"], noise_fraction=0.5))
        run = _run_training(
            detector.train_convnetquake,
            split=split,
            out_dir=kw["out"],
            config=config,
            card=card,
            centroids=centroids,
            synthetic_events=[s for s in samples if not s.is_noise],
            synthetic_noise=[s for s in samples if s.is_noise],
            **extra,
        )
    else:
        train_mod = training_module("train")
        split.train += list(synthetic.synthetic_samples(kw["synthetic"], seed=kw["seed"]))
        card = cards.phasenet_card(name, description="PhaseNet trained by seispick.", **changes)
        run = _run_training(
            train_mod.train_phasenet, split=split, out_dir=kw["out"], config=config, card=card, **extra
        )
    _report_run(run, kw["quiet"])


@click.command()
@click.argument("data", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--base",
    default="phasenet-original",
    show_default=True,
    help="phasenet-original, a weights.npz of the original PhaseNet, or a checkpoint folder of seispick training.",
)
@_data_options
@_train_options
@click.option(
    "--lr",
    type=click.FloatRange(0, min_open=True),
    default=1e-4,
    show_default=True,
    help="Learning rate (lower than for training).",
)
@click.option(
    "--freeze-encoder/--no-freeze-encoder",
    default=False,
    show_default=True,
    help="Keep the encoder weights fixed.",
)
@click.option(
    "--freeze-batchnorm/--no-freeze-batchnorm",
    default=True,
    show_default=True,
    help="Keep batch-norm running statistics fixed.",
)
@click.option(
    "--anchor-weight",
    type=click.FloatRange(0),
    default=0.0,
    show_default=True,
    help="L2-SP: penalise the squared distance of the weights from the base's.",
)
@click.option(
    "--distill-weight",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Blend the targets of --distill-phases with the base's own probabilities (learning without forgetting).",
)
@click.option(
    "--distill-phases",
    type=click.Choice(["P", "S", "PS"]),
    default="PS",
    show_default=True,
    help="Phases whose targets --distill-weight blends with the base's output.",
)
@click.option(
    "--replay",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Dataset folder of other stations whose train part is mixed in (repeatable); its val/test parts stay unused.",
)
@click.option(
    "--replay-fraction",
    type=click.FloatRange(0),
    default=0.5,
    show_default=True,
    help="Replayed windows per epoch as a fraction of the own training windows.",
)
@click.option("--description", default=None, help="Card description (default: what it was fine-tuned from).")
@click.pass_context
def finetune(ctx: click.Context, data: tuple[Path, ...], base: str, **kw: Any) -> None:
    """Fine-tune PhaseNet from --base on dataset folders DATA; the base is scored on the same test split."""
    fractions = _fractions(kw["val_fraction"], kw["test_fraction"])
    split = _load_split(data, kw["split_by"], fractions, kw["seed"])
    replay = _load_split(kw["replay"], kw["split_by"], fractions, kw["seed"]) if kw["replay"] else None
    config = _config(
        kw,
        lr=kw["lr"],
        freeze_encoder=kw["freeze_encoder"],
        freeze_batchnorm=kw["freeze_batchnorm"],
        anchor_weight=kw["anchor_weight"],
        distill_weight=kw["distill_weight"],
        distill_phases=kw["distill_phases"],
        replay_fraction=kw["replay_fraction"] if replay else 0.0,
    )
    train_mod = training_module("train")
    command = _command_line(ctx)
    changes: dict[str, Any] = {"training_data": ", ".join(map(str, data))}
    if kw["description"]:
        changes["description"] = kw["description"]
    if kw["licence"]:
        changes["licence"] = kw["licence"]
    run = _run_training(
        train_mod.finetune_phasenet,
        split=split,
        base=base,
        out_dir=kw["out"],
        config=config,
        name=kw["name"] or kw["out"].name,
        card_changes=changes,
        model_dir=kw["model_out"],
        datasets=[str(d) for d in data],
        command=command,
        progress=not kw["quiet"],
        licence_text=kw["licence"],
        replay=replay,
    )
    _report_run(run, kw["quiet"])


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
@click.option(
    "--model", "-m", "model", default=None, help="Model name or model folder (default: the shipped default)."
)
@click.option(
    "--data",
    "-d",
    "data",
    multiple=True,
    type=click.Path(path_type=Path),
    required=True,
    help="Dataset folder (repeatable).",
)
@click.option(
    "--split",
    "part",
    type=click.Choice(SPLIT_PARTS),
    default="test",
    show_default=True,
    help="Which part of each folder's split.",
)
@_data_options
@click.option("--p-threshold", type=click.FloatRange(0, 1), default=None)
@click.option("--s-threshold", type=click.FloatRange(0, 1), default=None)
@click.option(
    "--detection-threshold",
    type=click.FloatRange(0, 1),
    default=None,
    help="Detectors: event probability threshold.",
)
@click.option(
    "--pre-p-noise/--no-pre-p-noise",
    default=True,
    show_default=True,
    help="Detectors: add noise samples cut before each P to the events.",
)
@click.option("--out", "-o", type=click.Path(path_type=Path), default=None, help="Report JSON to write.")
@click.option("--plot", type=click.Path(path_type=Path), default=None, help="Report PNG to write.")
def evaluate(model: str | None, data: tuple[Path, ...], part: str, **kw: Any) -> None:
    """Score a model on labelled data through the same runtime as `seispick pick`.

    Pickers: precision, recall and F1 of P and S picks within 0.1 s and 0.5 s of the labels, and the residuals.
    Detectors: precision, recall, ROC AUC and location-cell accuracy.
    """
    from seispick.models.registry import ModelRegistry, UnknownModelError
    from seispick.models.runtime import ModelLoadError

    try:
        loaded = ModelRegistry().load(model, prefer_gpu=False)
    except (UnknownModelError, ModelLoadError) as exc:
        raise click.ClickException(str(exc)) from exc
    fractions = _fractions(kw["val_fraction"], kw["test_fraction"])
    split = _load_split(data, kw["split_by"], fractions, kw["seed"], allow_noise=True)
    samples = split.part(part)
    if not samples:
        raise click.ClickException(f"the {part} split of {', '.join(map(str, data))} is empty")
    evaluation = training_module("evaluate")
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
        samples = training_module("detector_samples").detector_test_samples(
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
        training_module("plots").plot_evaluation(report, kw["plot"])
        click.echo(f"wrote {kw['plot']}", err=True)


@click.command("export")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option(
    "--out", "-o", type=click.Path(path_type=Path), required=True, help="ONNX model folder to write."
)
@click.option("--name", default=None, help="Model name (default: the checkpoint's card name).")
def export(checkpoint: Path, out: Path, name: str | None) -> None:
    """Export a training CHECKPOINT folder to an ONNX model folder (card + ONNX parity check against torch)."""
    train_mod = training_module("train")
    card = _run_training(train_mod.export_checkpoint, checkpoint_dir=checkpoint, model_dir=out, name=name)
    diff = card.metrics.get("onnx_vs_torch_max_abs_diff", float("nan"))
    click.echo(f"wrote {out} (model {card.name}, sha256 {card.onnx_sha256[:12]}, ONNX vs torch {diff:.1e})")
