"""``seispick models tune``: a copy of a model with the P/S thresholds a catalogue calibration chose (or given)."""

from __future__ import annotations

from pathlib import Path

import click

from seispick.models.registry import ModelLoadError, ModelRegistry, UnknownModelError, user_model_dir
from seispick.models.tuning import TuneError, calibration_for, read_calibration, tuned_card, write_tuned


@click.command("tune")
@click.argument("model")
@click.option(
    "--from-calibration",
    "calibration",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Calibration JSON of `seispick evaluate --catalog ... --calibrate`: its recommended thresholds.",
)
@click.option("--p-threshold", type=click.FloatRange(0, 1, min_open=True), default=None, help="P threshold.")
@click.option("--s-threshold", type=click.FloatRange(0, 1, min_open=True), default=None, help="S threshold.")
@click.option("--name", required=True, help="Name of the new model.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Model folder to write (default: the user model folder / NAME, where the registry finds it).",
)
@click.option("--force", is_flag=True, help="Replace an existing folder or a user model of that name.")
def tune(
    model: str,
    calibration: Path | None,
    p_threshold: float | None,
    s_threshold: float | None,
    name: str,
    out: Path | None,
    force: bool,
) -> None:
    """Write a copy of MODEL under --name with new P/S thresholds: the calibration's recommended ones
    (--from-calibration), or --p-threshold/--s-threshold (which override the calibration's).

    The copy (card + the same ONNX file, sha256 checked) goes to the user model folder, so `seispick pick
    --model NAME` and the service find it; its card records on what data and with which held-out figures the
    thresholds were chosen.
    """
    registry = ModelRegistry()
    try:
        entry = registry.get(model)
    except (UnknownModelError, ModelLoadError) as exc:
        raise click.ClickException(str(exc)) from exc
    if name in registry.names() and not force:
        where = "shipped" if registry.get(name).shipped else str(registry.get(name).folder)
        raise click.ClickException(f"a model named {name!r} exists ({where}); choose another --name")
    if calibration is None and p_threshold is None and s_threshold is None:
        raise click.UsageError("give --from-calibration FILE or --p-threshold/--s-threshold")
    thresholds: dict[str, float] = {}
    vertical_only: dict[str, float] = {}
    off_ratios: dict[str, float] = {}
    record: dict = {}
    try:
        if calibration is not None:
            data = read_calibration(calibration)
            found = calibration_for(data, entry.card.name, entry.card.onnx_sha256)
            cal = found["calibration"]
            thresholds = {ph: float(v) for ph, v in cal["recommended"].items()}
            vertical = cal.get("vertical_only", {}).get("recommended") or {}
            vertical_only = {ph: float(v) for ph, v in vertical.items()}
            ratios = cal.get("off_ratio", {}).get("recommended") or {}
            off_ratios = {ph: float(v) for ph, v in ratios.items()}
            record = {
                "source": f"calibrated on the catalogue {data['catalog']} by seispick evaluate --calibrate",
                "calibration_file": str(calibration),
                "catalog": data["catalog"],
                "catalog_sha256": data["catalog_sha256"],
                "waveforms": data["waveforms"],
                "command": data.get("command", ""),
                "created": data.get("created", ""),
                "stations": found.get("stations", []),
                "station_hours": found.get("station_hours"),
                "period": found.get("period", {}),
                "n_reference": found.get("n_reference", {}),
                "f1_at_card_thresholds": found.get("f1", {}),
                "calibration": cal,
            }
        hand = {ph: v for ph, v in (("P", p_threshold), ("S", s_threshold)) if v is not None}
        if hand:
            thresholds.update(hand)
            record["set_by_hand"] = hand
            if calibration is None:
                record["source"] = "set by hand"
        card = tuned_card(entry.card, name, thresholds, record, vertical_only, off_ratios)
        folder = write_tuned(entry.folder, card, out or user_model_dir() / name, force=force)
    except TuneError as exc:
        raise click.ClickException(str(exc)) from exc
    if calibration is not None and not (set(hand) >= {"P", "S"}):
        cal_phases = record["calibration"]["phases"]
        for ph, c in cal_phases.items():
            if ph in hand:
                continue
            verdict = (
                "calibrated threshold kept"
                if c["recommended"] != c["card_threshold"]
                else "the card's threshold kept: the calibrated one did not beat it on held-out blocks"
            )
            click.echo(
                f"{ph}: {c['card_threshold']:g} -> {c['recommended']:g} (held-out F1 at 0.1 s: card "
                f"{c['held_out_f1_card']:.3f}, calibrated {c['held_out_f1_calibrated']:.3f}; {verdict})",
                err=True,
            )
    changes = ", ".join(f"{k} {entry.card.default_thresholds.get(k)} -> {v:g}" for k, v in thresholds.items())
    click.echo(f"wrote {folder} (model {card.name}: {changes}; sha256 {card.onnx_sha256[:12]})")
