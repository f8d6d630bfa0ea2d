"""The shipped pickers' P/S thresholds, chosen by ``seispick evaluate --catalog --calibrate`` on the data each
card names (issue 23): the records of the card's datasets that are neither in its test split nor something the
model was trained on, written out as a network would have them (one miniSEED file per recording, analyst picks
as a QuakeML catalogue), so the choice runs through exactly the command an operator runs on their catalogue.

    python -m seispick.training.recipes.card_thresholds --data /work/shared/data

The card gets the recommended thresholds (the calibrated one where its held-out F1 over leave-one-block-out time
blocks beats the card's, else the card's) and ``metrics['threshold_calibration']``: on what data, with which
command, and the held-out figures. Then ``python -m seispick.training.recipes all --describe-only`` re-scores
the held-out test sets at the new thresholds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from obspy.core.event import Catalog, Event, Pick, WaveformStreamID

from seispick.models.card import ModelCard
from seispick.training.data.inputs import load_split
from seispick.training.data.sample_streams import sample_start, sample_stream
from seispick.training.data.samples import WaveformSample

NCEDC, STEAD, SEED = "ncedc_phasenet", "stead_ta109c", 0
FRACTIONS = (0.7, 0.15, 0.15)
BLOCKS = 5

# Per model, the parts of each dataset's seeded split (the cards' splits: NCEDC by station, TA.109C by time)
# that the model neither trained on nor is tested on. phasenet-original was trained outside seispick (its NCEDC
# records may overlap its training data, which the card says); phasenet-ta109c trained on the TA.109C train part
# and replayed the NCEDC train stations, and chose its epoch on the validation parts (no weights learnt there).
CALIBRATION_PARTS: dict[str, dict[str, tuple[str, ...]]] = {
    "phasenet-original": {NCEDC: ("train", "val"), STEAD: ("train", "val")},
    "phasenet-ta109c": {NCEDC: ("val",), STEAD: ("val",)},
}


def calibration_samples(data: Path, model: str) -> tuple[list[WaveformSample], dict[str, Any]]:
    """The calibration records of ``model`` and a description of them for its card."""
    samples: list[WaveformSample] = []
    described: dict[str, Any] = {}
    for folder, parts in CALIBRATION_PARTS[model].items():
        split = load_split([data / folder], "station" if folder == NCEDC else "time", FRACTIONS, SEED)
        chosen = [s for part in parts for s in split.part(part)]
        samples += chosen
        described[folder] = {
            "parts": list(parts),
            "split": "station (seed 0)" if folder == NCEDC else "time",
            "n_records": len(chosen),
            "stations": sorted({s.station for s in chosen}),
        }
    return samples, described


def write_catalogue(samples: Sequence[WaveformSample], folder: Path) -> Path:
    """One miniSEED file per record under ``folder/waveforms`` and its analyst picks (manual, one event per
    record) as ``folder/events.xml``; returns the catalogue's path."""
    waves = folder / "waveforms"
    waves.mkdir(parents=True, exist_ok=True)
    catalog = Catalog()
    for k, sample in enumerate(samples):
        stream = sample_stream(sample)
        stream.write(str(waves / f"{k:04d}_{sample.station}.mseed"), format="MSEED", encoding="FLOAT32")
        start, rate = sample_start(sample), float(sample.sampling_rate)
        onsets = [("P", sample.p_index), ("S", sample.s_index), *sample.other_picks]
        event = Event()
        network, _, station = sample.station.rpartition(".")
        for phase, index in onsets:
            if index is None:
                continue
            channel = stream[-1].stats.channel  # the vertical where there is only one
            event.picks.append(
                Pick(
                    time=start + index / rate,
                    phase_hint=phase,
                    evaluation_mode="manual",
                    waveform_id=WaveformStreamID(network, station, "", channel),
                )
            )
        catalog.append(event)
    path = folder / "events.xml"
    catalog.write(str(path), format="QUAKEML")
    return path


BASE_THRESHOLDS = {"P": 0.3, "S": 0.3}  # where the calibration starts: PhaseNet's published thresholds


def _evaluate(catalogue: Path, waveforms: Path, model: str, blocks: int, out: Path) -> tuple[dict, list[str]]:
    """``seispick evaluate --catalog --calibrate`` of ``model``, as a user runs it: its calibration record
    and the command's arguments."""
    args = ["evaluate", "--catalog", str(catalogue), "--waveforms", str(waveforms), "-m", model,
            "--calibrate", "--blocks", str(blocks), "-o", str(out)]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", "from seispick.cli.main import cli; cli()", *args],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise RuntimeError(f"seispick {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    print(done.stdout)
    return json.loads(out.with_suffix(".calibration.json").read_text())["models"][model], args


def _figures(cal: dict[str, Any]) -> dict[str, Any]:
    return {
        ph: {
            "previous": cal[ph]["card_threshold"],
            "best_on_all": cal[ph]["threshold"],
            "fold_choices": cal[ph]["fold_thresholds"],
            "held_out_f1_previous": round(cal[ph]["held_out_f1_card"], 4),
            "held_out_f1_calibrated": round(cal[ph]["held_out_f1_calibrated"], 4),
            "f1_by_value": {k: round(v, 4) for k, v in cal[ph]["f1_by_threshold"].items()},
        }
        for ph in ("P", "S")
    }


def calibrate_model(
    data: Path, models: Path, model: str, blocks: int = BLOCKS, keep: Path | None = None
) -> dict:
    """Calibrate ``model``'s card on its calibration records, from :data:`BASE_THRESHOLDS` (so that a rerun
    gives the same card): first the P/S thresholds (three-component and vertical-only stations apart), then,
    at those, the triggers' off ratios; each is written into the card. Returns the card's record."""
    samples, described = calibration_samples(data, model)
    folder = models / model
    card = ModelCard.read(folder)
    base = {
        "default_thresholds": {**card.default_thresholds, **BASE_THRESHOLDS},
        "vertical_only_thresholds": {},
        "trigger_off_ratios": {},
    }
    card = card.model_copy(update=base).validated()
    card.write(folder)
    with tempfile.TemporaryDirectory() as tmp:
        work = keep or Path(tmp)
        catalogue = write_catalogue(samples, work)
        record, args = _evaluate(catalogue, work / "waveforms", model, blocks, work / "thresholds.csv")
        if record["model_sha256"] != card.onnx_sha256:
            raise RuntimeError(f"{model}: calibrated another ONNX file than the card's")
        cal = record["calibration"]
        recommended = {ph: float(cal["recommended"][ph]) for ph in ("P", "S")}
        vertical = cal.get("vertical_only", {})
        vertical_recommended = {ph: float(v) for ph, v in vertical.get("recommended", {}).items()}
        card_record: dict[str, Any] = {
            "method": "seispick evaluate --catalog --calibrate (leave-one-block-out over contiguous time blocks, "
            "F1 within 0.1 s; a calibrated value is used only where its held-out F1 beats the previous one)",
            "command": "python -m seispick.training.recipes.card_thresholds (seispick evaluate --catalog "
            f"events.xml --waveforms waveforms -m {model} --calibrate --blocks {blocks}, twice)",
            "date": datetime.now(timezone.utc).date().isoformat(),
            "data": described,
            "n_reference": record["n_reference"],
            "station_hours": record["station_hours"],
            "blocks": cal["blocks"],
            "thresholds": recommended,
            "three_component_stations": _figures(cal["phases"]),
        }
        if vertical:
            card_record["vertical_only_thresholds"] = vertical_recommended
            card_record["vertical_only_stations"] = {
                "stations": vertical["stations"],
                **_figures(vertical["phases"]),
            }
        card = card.model_copy(
            update={
                "default_thresholds": {**card.default_thresholds, **recommended},
                "vertical_only_thresholds": {
                    ph: v for ph, v in vertical_recommended.items() if v != recommended.get(ph)
                },
            }
        ).validated()
        card.write(folder)
        # the triggers' off ratios at the thresholds just chosen
        second, _ = _evaluate(catalogue, work / "waveforms", model, blocks, work / "off_ratios.csv")
        ratios = second["calibration"]["off_ratio"]
        chosen = {ph: float(v) for ph, v in ratios["recommended"].items()}
        card_record["trigger_off_ratios"] = chosen
        card_record["trigger_off_ratio_choice"] = _figures(ratios["phases"])
    update = {
        "trigger_off_ratios": {ph: v for ph, v in chosen.items() if v != 0.5},
        "metrics": {**card.metrics, "threshold_calibration": card_record},
    }
    card.model_copy(update=update).validated().write(folder)
    return card_record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    parser.add_argument("--models", type=Path, default=Path(__file__).resolve().parents[2] / "models")
    parser.add_argument("--model", action="append", choices=list(CALIBRATION_PARTS))
    parser.add_argument("--blocks", type=int, default=BLOCKS)
    parser.add_argument("--keep", type=Path, help="Keep the catalogue and waveforms in this folder.")
    args = parser.parse_args(argv)
    for model in args.model or list(CALIBRATION_PARTS):
        keep = args.keep / model if args.keep else None
        record = calibrate_model(args.data, args.models, model, args.blocks, keep)
        print(
            json.dumps(
                {k: record.get(k) for k in ("thresholds", "vertical_only_thresholds", "trigger_off_ratios")}
                | {"model": model}
            )
        )


if __name__ == "__main__":
    main()
