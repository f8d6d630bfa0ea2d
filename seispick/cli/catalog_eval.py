"""``seispick evaluate --catalog``: models' picks on continuous waveforms against a QuakeML catalogue's picks.

The scoring is ``seispick.events.catalog_evaluation`` (pure), the picking ``seispick.events.catalog_picking``
(the picking core, as ``seispick pick`` runs it); this module holds the options, the printed table, the CSV,
the figures and the calibration file that ``seispick models tune --from-calibration`` reads. No torch.
"""

from __future__ import annotations

import csv
import math
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

from seispick.events import catalog_evaluation as ce

CALIBRATION_KIND = "seispick-catalog-calibration"
CSV_FIELDS = [
    "model",
    "station",
    "phase",
    "tolerance",
    "n_reference",
    "n_model",
    "tp",
    "fp",
    "fn",
    "precision",
    "recall",
    "f1",
    "residual_median",
    "residual_mad",
    "hours",
    "false_per_hour",
]


# the catalogue's waveforms and which of its picks are the reference: evaluate --catalog and finetune --catalog
waveforms_option = click.option(
    "--waveforms",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Continuous waveform files or folders the catalogue was picked on (repeatable).",
)
picks_option = click.option(
    "--picks",
    "pick_modes",
    type=click.Choice(["auto", "manual", "all"]),
    default="auto",
    show_default=True,
    help="Catalogue picks used: manual only, all, or auto (manual ones when there are any).",
)


def catalog_options(func):
    """The options of ``seispick evaluate`` in catalogue mode."""
    options = [
        click.option(
            "--catalog",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            default=None,
            help="QuakeML (or SeisComP XML) catalogue whose picks (waveform id + phase hint) are the reference; "
            "with --waveforms instead of --data.",
        ),
        waveforms_option,
        click.option(
            "--stations",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            default=None,
            help="StationXML or CSV of station coordinates: adds a per-station F1 map to --plot.",
        ),
        picks_option,
        click.option(
            "--calibrate",
            is_flag=True,
            help="Choose P and S thresholds per model on the catalogue (grid 0.1..0.9, cross-validated over "
            "time blocks) and write them for `seispick models tune --from-calibration`.",
        ),
        click.option(
            "--blocks",
            type=click.IntRange(2, 10),
            default=3,
            show_default=True,
            help="Contiguous time blocks of the calibration's cross-validation.",
        ),
        click.option(
            "--calibration-out",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="Calibration JSON to write (default: next to -o as NAME.calibration.json, else "
            "calibration.json).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def evaluate_catalog(models: tuple[str, ...], kw: dict[str, Any], command_line: str = "") -> None:
    """Run ``seispick evaluate --catalog`` with the command's options ``kw``."""
    from tqdm import tqdm

    from seispick.events.catalog_picking import GRID, run_models, waveform_files
    from seispick.models.inference import ModelLoadError
    from seispick.models.registry import ModelRegistry, UnknownModelError

    if kw.get("data"):
        raise click.UsageError("--catalog scores against a catalogue: give --waveforms, not --data")
    if not kw["waveforms"]:
        raise click.UsageError(
            "--catalog needs --waveforms (the continuous data the catalogue was picked on)"
        )
    registry = ModelRegistry()
    loaded = []
    for name in models or (None,):
        try:
            model = registry.load(name, prefer_gpu=False)
        except (UnknownModelError, ModelLoadError) as exc:
            raise click.ClickException(str(exc)) from exc
        if model.card.task != "picker":
            raise click.ClickException(
                f"model {model.name} is a {model.card.task}: a catalogue scores pickers"
            )
        if model.name in {m.name for m in loaded}:
            continue
        loaded.append(model)
    try:
        catalog = ce.read_catalog(kw["catalog"])
    except ce.CatalogError as exc:
        raise click.ClickException(str(exc)) from exc
    manual = {"auto": None, "manual": True, "all": False}[kw["pick_modes"]]
    reference = ce.reference_picks(catalog, manual_only=manual)
    for note in reference.notes:
        click.echo(f"note: {note}", err=True)
    if not reference.picks:
        raise click.ClickException(f"{kw['catalog']}: no P or S pick with a waveform id in the catalogue")
    files, problems = waveform_files(kw["waveforms"])
    for problem in problems:
        click.echo(f"warning: {problem}", err=True)
    given = {"P": kw.get("p_threshold"), "S": kw.get("s_threshold")}
    thresholds = {
        m.name: {
            ph: given[ph] if given[ph] is not None else m.card.default_thresholds.get(ph, 0.3) for ph in "PS"
        }
        for m in loaded
    }
    with tqdm(total=len(files), unit="file", desc="picking", file=sys.stderr) as bar:
        runs, used, skipped = run_models(
            files,
            loaded,
            thresholds,
            GRID if kw["calibrate"] else None,
            progress=lambda _: bar.update(),
            given=given,
        )
    if skipped:
        names = ", ".join(p.split(":")[0].rsplit("/", 1)[-1] for p in skipped[:4])
        click.echo(
            f"warning: skipped {len(skipped)} file(s) that are not waveforms or hold no usable data: {names}"
            + (", ..." if len(skipped) > 4 else ""),
            err=True,
        )
    if not used:
        raise click.ClickException("no readable waveform file with data the models can use")
    scores = [ce.score(run.name, reference.picks, run.reported, run.spans) for run in runs.values()]
    vertical = {name: run.vertical_only_thresholds for name, run in runs.items()}
    click.echo(format_table(scores, thresholds, reference, len(used), vertical))
    if kw.get("out"):
        write_csv(scores, kw["out"])
        click.echo(f"wrote {kw['out']}", err=True)
    if kw.get("plot"):
        from seispick.cli.catalog_plot import plot_residuals, plot_station_map

        click.echo(f"wrote {plot_residuals(scores, kw['plot'])}", err=True)
        if kw.get("stations"):
            from seispick.events.stations import StationFileError, read_stations

            try:
                table = read_stations(kw["stations"])
            except StationFileError as exc:
                raise click.ClickException(str(exc)) from exc
            path, missing = plot_station_map(scores, table, kw["plot"])
            if missing:
                click.echo(
                    f"note: no coordinates for {len(missing)} station(s): {', '.join(missing[:5])}", err=True
                )
            click.echo(f"wrote {path}", err=True)
    elif kw.get("stations"):
        click.echo("note: --stations draws the per-station F1 map of --plot; no --plot was given", err=True)
    if kw["calibrate"]:
        record = calibration_record(kw, runs, reference, used, scores, command_line)
        click.echo(format_calibration(record))
        out = kw.get("calibration_out") or (
            kw["out"].with_suffix(".calibration.json") if kw.get("out") else Path("calibration.json")
        )
        import json

        out.write_text(json.dumps(record, indent=2) + "\n")
        click.echo(f"wrote {out} (seispick models tune MODEL --from-calibration {out} --name NEW)", err=True)


def _num(value: float, digits: int = 3) -> str:
    return (
        "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"
    )


def format_table(
    scores: list[ce.Scores],
    thresholds: dict,
    reference: ce.CatalogPicks,
    n_files: int,
    vertical_only: dict | None = None,
) -> str:
    """The table over all stations, then each station's F1 (0.1 s / 0.5 s); the header names each model's
    thresholds, the vertical-only ones where they differ."""
    lines = []
    for s in scores:
        th = ", ".join(f"{k} {v:g}" for k, v in thresholds[s.model].items())
        vertical = (vertical_only or {}).get(s.model) or {}
        if vertical and any(vertical.get(k, v) != v for k, v in thresholds[s.model].items()):
            th += "; vertical-only " + ", ".join(f"{k} {v:g}" for k, v in vertical.items())
        lines.append(
            f"{s.model} (thresholds {th}) on {n_files} file(s), {s.hours:.2f} station-hours; "
            f"{len(reference.picks) - s.n_outside} analyst picks in the data, {s.n_outside} outside it"
        )
        lines.append(
            "phase  tol   n_ref  n_mod    TP    FP    FN  precision  recall     F1  res.med  res.MAD  false/h"
        )
        for phase in ce.PHASES:
            for tol in ce.TOLERANCES:
                r = s.row(phase, tol)
                lines.append(
                    f"{phase:5s} {tol:3.1f}s {r.n_reference:6d} {r.n_model:6d} {r.tp:5d} {r.fp:5d} {r.fn:5d}  "
                    f"{r.precision:9.3f}  {r.recall:6.3f}  {r.f1:5.3f}  {_num(r.residual_median):>7s}  "
                    f"{_num(r.residual_mad):>7s}  {_num(r.false_per_hour, 1):>7s}"
                )
    stations = sorted({r.station for s in scores for r in s.rows if r.station != ce.ALL})
    if stations:
        lines.append("")
        lines.append("F1 per station, P and S at 0.1 s / 0.5 s (n analyst P/S):")
        width = max(len(st) for st in stations)
        lines.append(" " * (width + 10) + "  ".join(f"{s.model:>23s}" for s in scores))
        for st in stations:
            first = scores[0]
            n = "/".join(str(first.row(ph, 0.5, st).n_reference) for ph in ce.PHASES)
            cells = []
            for s in scores:
                f1 = [s.row(ph, tol, st).f1 for ph in ce.PHASES for tol in ce.TOLERANCES]
                cells.append(f"P {f1[0]:.2f}/{f1[1]:.2f} S {f1[2]:.2f}/{f1[3]:.2f}".rjust(23))
            lines.append(f"{st:{width}s} {n:>8s}  " + "  ".join(cells))
    return "\n".join(lines)


def write_csv(scores: list[ce.Scores], path: Path) -> None:
    """Every row (all stations and each station) of every model."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for s in scores:
            for row in s.rows:
                writer.writerow(
                    {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.as_dict().items()}
                )


def calibration_record(
    kw: dict[str, Any],
    runs: dict,
    reference: ce.CatalogPicks,
    used: list[Path],
    scores: list[ce.Scores],
    command: str,
) -> dict[str, Any]:
    """The calibration file: on what data, and with which figures, each model's thresholds were chosen."""
    from seispick.models.card import sha256_file

    record: dict[str, Any] = {
        "kind": CALIBRATION_KIND,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "catalog": str(kw["catalog"]),
        "catalog_sha256": sha256_file(kw["catalog"]),
        "n_events": reference.n_events,
        "waveforms": [str(p) for p in kw["waveforms"]],
        "n_files": len(used),
        "grid": list(ce.GRID),
        "models": {},
    }
    for s in scores:
        run = runs[s.model]
        runs_by_station = ce.merged_spans(run.spans)
        inside = ce.scored_references(reference.picks, runs_by_station)
        cal = ce.calibrate(
            reference.picks,
            run.picks,
            run.spans,
            run.card_thresholds,
            kw["blocks"],
            vertical_only_thresholds=run.vertical_only_thresholds,
            picks_by_off_ratio=run.by_off_ratio,
            card_off_ratios=run.card_off_ratios,
        )
        starts = [a for runs_ in runs_by_station.values() for a, _ in runs_]
        ends = [b for runs_ in runs_by_station.values() for _, b in runs_]
        record["models"][s.model] = {
            "model_sha256": run.sha256,
            "stations": sorted(runs_by_station),
            "station_hours": round(s.hours, 4),
            "period": {"start": ce.iso(min(starts)), "end": ce.iso(max(ends))} if starts else {},
            "n_reference": {ph: sum(r.phase == ph for r in inside) for ph in ce.PHASES},
            "f1": {
                f"{ph}@{tol:g}s": round(s.row(ph, tol).f1, 4) for ph in ce.PHASES for tol in ce.TOLERANCES
            },
            "calibration": cal,
        }
    return record


def format_calibration(record: dict[str, Any]) -> str:
    width = max(len(n) for n in record["models"])
    lines = [
        "",
        "threshold calibration: held-out F1 at 0.1 s (each time block scored with the thresholds chosen "
        "on the others)",
    ]
    lines.append(
        f"{'model':{width}s}  phase  card thr  held-out F1  calibrated thr  folds' choices  held-out F1  use"
    )
    vertical = False
    for name, m in record["models"].items():
        groups = [("", m["calibration"]["phases"])]
        if "vertical_only" in m["calibration"]:
            vertical = True
            groups.append((" (vertical-only)", m["calibration"]["vertical_only"]["phases"]))
        if "off_ratio" in m["calibration"]:
            groups.append((" (trigger off ratio)", m["calibration"]["off_ratio"]["phases"]))
        for label, phases in groups:
            for ph, c in phases.items():
                folds = ",".join(f"{t:g}" for t in c["fold_thresholds"])
                lines.append(
                    f"{name:{width}s}  {ph:5s}  {c['card_threshold']:8g}  {c['held_out_f1_card']:11.3f}  "
                    f"{c['threshold']:14g}  {folds:>14s}  {c['held_out_f1_calibrated']:11.3f}  "
                    f"{c['recommended']:g}{label}"
                )
    lines.append(
        "use: the calibrated threshold (or trigger off ratio: a trigger ends below ratio x threshold) where its "
        "held-out F1 beats the card's, else the card's"
    )
    if vertical:
        lines.append(
            "vertical-only: stations that recorded no horizontal component, calibrated apart (the card's "
            "vertical_only_thresholds); the others' rows are for three-component stations"
        )
    return "\n".join(lines)
