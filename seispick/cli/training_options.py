"""Click options of the training commands, made once: TrainConfig fields become options from their metadata.

A field's type gives the option's type (``int``/``float`` with the field's ``min``/``max`` as a range, a
``Literal`` or ``choices`` as a choice, ``bool`` as ``--x/--no-x``, the class weights as ``noise,P,S``); its
metadata the help text; the defaults are the field's unless a command's defaults (e.g.
:data:`~seispick.training.fitting.config.FINETUNE_DEFAULTS`) say otherwise. No torch is imported here.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import click

from seispick.training.fitting.config import TrainConfig

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
HINTS = typing.get_type_hints(TrainConfig)
TRAIN_DEFAULTS: dict[str, Any] = {k: v for k, v in TrainConfig().to_dict().items() if k != "threads"}

# The hyper-parameters `seispick train` and `finetune` both offer, in the order their help lists them.
TRAIN_FIELDS = (
    "epochs", "batch_size", "weight_decay", "schedule", "warmup_epochs", "patience", "select_on",
    "windows_per_sample", "epoch_windows", "edge_probability", "label_sigma", "s_label_sigma", "class_weights",
    "s_window_probability", "calibrate_thresholds",
)  # fmt: skip
# What fine-tuning adds (after --lr).
FINETUNE_FIELDS = ("freeze_encoder", "freeze_batchnorm", "anchor_weight", "distill_weight", "distill_phases")


def stack(*options: Decorator) -> Decorator:
    """One decorator applying ``options`` in the order given (the first is listed first in the help)."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def class_weights(text: str | tuple) -> tuple[float, float, float]:
    """``"1,1,1.5"`` (or an already parsed tuple) as three floats."""
    try:
        weights = tuple(float(x) for x in (text.split(",") if isinstance(text, str) else text))
    except ValueError:
        weights = ()
    if len(weights) != 3:
        raise click.BadParameter(
            f"give three numbers (noise,P,S), got {text!r}", param_hint="--class-weights"
        )
    return weights  # type: ignore[return-value]


def _click_type(name: str) -> Any:
    """The click type of field ``name``: a choice, a range from its bounds, or its plain type."""
    meta, hint = FIELDS[name].metadata, HINTS[name]
    if "choices" in meta:
        return click.Choice(list(meta["choices"]))
    if typing.get_origin(hint) is Literal:
        return click.Choice(list(typing.get_args(hint)))
    kind = int if int in (hint, *typing.get_args(hint)) else float
    if "min" in meta or "max" in meta:
        bounds = click.IntRange if kind is int else click.FloatRange
        return bounds(meta.get("min"), meta.get("max"), min_open=meta.get("min_open", False))
    return kind


def config_option(name: str, defaults: dict[str, Any] | None = None, **overrides: Any) -> Decorator:
    """The option of TrainConfig field ``name`` (``--name-with-dashes``), its default from ``defaults`` or the
    field; ``overrides`` replace any click.option argument (a command's own help text, default)."""
    field = FIELDS[name]
    flag = "--" + name.replace("_", "-")
    default = (defaults or {}).get(name, field.default)
    kwargs: dict[str, Any] = {"default": default, "show_default": True}
    if field.metadata.get("help"):
        kwargs["help"] = field.metadata["help"]
    if HINTS[name] is bool:
        flag = f"{flag}/--no-{flag[2:]}"
    elif typing.get_origin(HINTS[name]) is tuple:
        kwargs["default"] = ",".join(f"{w:g}" for w in default)
        kwargs["callback"] = lambda ctx, param, value: class_weights(value)
    else:
        kwargs["type"] = _click_type(name)
    return click.option(flag, **{**kwargs, **overrides})


def config_options(names: Sequence[str], defaults: dict[str, Any] | None = None) -> Decorator:
    """The options of TrainConfig fields ``names``, in that order; a ``windows_per_sample`` option defaults to the
    ``epoch_windows`` rule when ``defaults`` set one."""
    d = {**TRAIN_DEFAULTS, **(defaults or {})}
    options = []
    for name in names:
        overrides = {}
        if name == "windows_per_sample" and d.get("epoch_windows"):
            overrides = {"default": None, "show_default": "from --epoch-windows"}
        options.append(config_option(name, d, **overrides))
    return stack(*options)


def run_options(hyper_parameters: Decorator) -> Decorator:
    """Where a train or finetune run writes and what it records, around its ``hyper_parameters`` options."""
    path = click.Path(path_type=Path)
    return stack(
        click.option("--out", "-o", type=path, required=True, help="Checkpoint folder to write."),
        click.option("--model-out", type=path, default=None, help="ONNX model folder (default OUT/model)."),
        click.option("--name", default=None, help="Model name in the card (default: the --out folder name)."),
        hyper_parameters,
        click.option("--no-augment", is_flag=True, help="No augmentation (window placement stays random)."),
        click.option(
            "--licence",
            default=None,
            help="Licence text for the card and LICENSE (default: seispick MIT note).",
        ),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
    )


def data_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by the commands that split dataset folders."""
    fraction = click.FloatRange(0, 0.9)
    return stack(
        click.option(
            "--split-by",
            type=click.Choice(["auto", "station", "time"]),
            default="auto",
            show_default=True,
            help="Split each folder by station or by event time; auto: time for one-station data, else station.",
        ),
        click.option("--val-fraction", type=fraction, default=0.15, show_default=True),
        click.option("--test-fraction", type=fraction, default=0.15, show_default=True),
        click.option(
            "--seed", type=int, default=0, show_default=True, help="Seed of splits, windows and weights."
        ),
    )(func)


# Help texts of the options that are no TrainConfig field, by their long flag.
HELP = {
    "--base": "phasenet-original, a weights.npz of the original PhaseNet, or a checkpoint folder of seispick "
    "training.",
    "--cells": "ConvNetQuake location cells (k-means over training epicentres); 0: a detector without cells.",
    "--check-cells/--keep-cells": "Drop the cells (detector without cells, said in the card) unless they beat "
    "always answering the most frequent training cell on the located validation events.",
    "--synthetic": "Synthetic events (and as many noise records for ConvNetQuake) added to training.",
    "--overlap": "ConvNetQuake: overlap of consecutive windows (samples) in the card; event windows put P 0.5 s "
    "to one stride + 0.5 s into the window.",
    "--replay": "Dataset folder of other stations whose train part is mixed in (repeatable); its val/test parts "
    "stay unused.",
    "--select-folds": "K >= 3: choose the epoch count and pick thresholds by K-fold cross-validation over the "
    "training and validation data (by station, or by time for one station), then fine-tune on all of them "
    "(K+1 runs).",
    "--description": "Card description (default: what it was fine-tuned from).",
    "--model": "Model name or model folder (default: the shipped default).",
    "--data": "Dataset folder (repeatable).",
    "--split": "Which part of each folder's split.",
    "--detection-threshold": "Detectors: event probability threshold.",
    "--pre-p-noise/--no-pre-p-noise": "Detectors: add noise samples cut before each P to the events.",
}


def option(*decls: str, **kwargs: Any) -> Decorator:
    """click.option with its help from :data:`HELP` (by the first declaration) and the default shown."""
    return click.option(*decls, **{"help": HELP.get(decls[0]), "show_default": True, **kwargs})
