"""``seispick models``: list, show, import and convert models."""

from __future__ import annotations

import json
from pathlib import Path

import click

from seispick.cli.lazy import training_module
from seispick.cli.main import SuggestingGroup
from seispick.models.registry import (
    DEFAULT_MODEL,
    ModelLoadError,
    ModelRegistry,
    UnknownModelError,
    user_model_dir,
)


@click.group(cls=SuggestingGroup)
def models() -> None:
    """List, inspect and import models."""


@models.command("list")
def list_models() -> None:
    """Shipped and user models."""
    rows = [
        ("name", "version", "task", "scope", "rate", "window", "channels", "thresholds", "sha256", "where")
    ]
    try:
        entries = ModelRegistry().entries()
    except ModelLoadError as exc:
        raise click.ClickException(str(exc)) from exc
    for entry in entries:
        card = entry.card
        mark = " (default)" if card.name == DEFAULT_MODEL else ""
        rows.append(
            (
                card.name + mark,
                card.version,
                card.task,
                card.scope,
                f"{card.sampling_rate:g} Hz",
                str(card.window_samples),
                card.channel_order,
                _thresholds(card),
                card.onnx_sha256[:12],
                "shipped" if entry.shipped else str(entry.folder),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def _thresholds(card) -> str:
    """P/S thresholds as a card sets them, e.g. ``P 0.7 S 0.5 (Z only: P 0.3 S 0.3)``."""
    if card.task != "picker":
        return f"detection {card.default_thresholds.get('detection', 0.5):g}"

    def text(values: dict[str, float]) -> str:
        return " ".join(f"{ph} {values[ph]:g}" for ph in card.phases if ph in values)

    out = text(card.default_thresholds)
    vertical = {**card.default_thresholds, **card.vertical_only_thresholds}
    if card.vertical_only_thresholds and text(vertical) != out:
        out += f" (Z only: {text(vertical)})"
    return out


@models.command("show")
@click.argument("name", required=False)
def show_model(name: str | None) -> None:
    """Print a model's card (JSON)."""
    try:
        entry = ModelRegistry().get(name)
    except (UnknownModelError, ModelLoadError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(entry.card.for_display().model_dump(mode="json"), indent=2))


@models.command("import-seisbench")
@click.argument("weights", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("metadata", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", default=None, help="Model name (default: from the weights file name).")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Model folder to write.")
@click.option(
    "--tf-padding",
    is_flag=True,
    help="Run the weights on 3000-sample windows with TensorFlow 'same' padding, as the original PhaseNet "
    "(trained in TensorFlow) ran: its picks are not 25-35 ms late as in SeisBench's 3001-sample layout. "
    "Departs from SeisBench's annotate/classify (no parity with SeisBench then).",
)
def import_seisbench_cmd(
    weights: Path, metadata: Path | None, name: str | None, out: Path | None, tf_padding: bool
) -> None:
    """Turn a SeisBench PhaseNet checkpoint (WEIGHTS .pt.vN, METADATA .json.vN) into an ONNX model folder.

    Today's layout at any width, the early layout (filters 8, 11, 16, 22, 32) and weights saved as a whole pickled
    module (read without SeisBench's classes); component and phase order come from the JSON, thresholds from its
    default_args. The folder gets the ONNX model, its card and a LICENSE.
    """
    builders = training_module("export.builders")
    name = name or "phasenet-" + weights.name.split(".pt")[0].replace("_", "-")
    out = out or user_model_dir() / name
    try:
        card = builders.import_seisbench(weights, metadata, out, name, tf_padding=tf_padding)
    except (ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"wrote {out} (model {card.name}, sha256 {card.onnx_sha256[:12]}, ONNX parity ok)")


@models.command("convert-original")
@click.argument("weights_npz", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Model folder to write.")
@click.option(
    "--check-data",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Folder of PhaseNet npz waveforms to check the conversion on (real windows).",
)
def convert_original(weights_npz: Path, out: Path | None, check_data: Path | None) -> None:
    """Convert the original PhaseNet weights (weights.npz of the TF checkpoint) to ONNX with a model card."""
    import numpy as np

    builders = training_module("export.builders")
    windows = None
    if check_data:
        files = sorted(check_data.glob("*.npz"))[:16]
        windows = np.array([np.load(f)["data"][1200:4200].T for f in files]) if files else None
    out = out or user_model_dir() / "phasenet-original"
    card = builders.build_phasenet_original(weights_npz, out, windows)
    diffs = {k: f"{v:.1e}" for k, v in card.metrics.items()}
    click.echo(f"wrote {out} (sha256 {card.onnx_sha256[:12]}; {diffs})")


from seispick.cli.tune_cmd import tune  # noqa: E402  (defined in its own module)

models.add_command(tune)
