"""Cross-validation of fine-tuning: blocked in time for one station, by station for a network.

    python -m seispick.training.fitting.crossval /data/stead_ta109c --replay /data/ncedc_phasenet --folds 5 \\
        --variant plain '{}' --variant distil-S '{"distill_weight": 0.5, "distill_phases": "S"}'
    python -m seispick.training.fitting.crossval /data/ncedc_phasenet --by station --all --folds 5 --defaults
    python -m seispick.training.fitting.crossval --catalog events.xml --waveforms archive/ --all --defaults

``--by time`` (:func:`~seispick.training.data.folds.time_folds`): the training and validation events of a one-station dataset (its
chronological test part is left out, unless ``--all``) are cut into ``folds`` consecutive blocks; fold i
fine-tunes on the other blocks, stops early on block i+1 and picks block i. ``--by station``
(:func:`~seispick.training.data.folds.station_folds`): the stations are dealt into ``folds`` groups; fold i picks the records of group i and
fine-tunes on the other stations, which are split into training and validation stations as ``seispick
finetune`` splits a user's folder. Picks go through the models/ runtime; they are pooled over all folds and
scored against the labels (and per fold), next to the base model's picks on the same records, so a setting is
judged on every held-out record rather than on a handful of test records. ``--defaults`` starts every variant
from ``seispick finetune``'s default settings (:data:`~seispick.training.fitting.config.FINETUNE_DEFAULTS`).
``--catalog EVENTS.xml --waveforms DIR`` folds the windows ``seispick finetune --catalog`` cuts
(:mod:`~seispick.training.data.catalog_windows`) instead of a dataset folder.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seispick.training.data.catalog_windows import catalog_samples
from seispick.training.data.folds import make_folds
from seispick.training.data.inputs import load_split
from seispick.training.data.samples import WaveformSample
from seispick.training.evaluation.evaluate import TOLERANCES, load_model, predict_picks
from seispick.training.evaluation.scores import Pick, evaluate_picks
from seispick.training.fitting.config import FINETUNE_DEFAULTS, RunConfig, TrainConfig
from seispick.training.fitting.selection import calibrate_thresholds
from seispick.training.fitting.train import FinetuneOptions, finetune_phasenet

__all__ = ["FoldResult", "cross_validate"]


@dataclass
class FoldResult:
    """Pooled picks of one setting over all folds (trace keys made unique per fold) and the labels."""

    name: str
    predicted: list[Pick]
    truth: list[Pick]

    def scores(self, tolerances: Sequence[float] = TOLERANCES) -> dict[str, Any]:
        """Per phase and tolerance: precision, recall, F1, and residual statistics."""
        return {
            f"{s.phase}@{s.tolerance:g}s": {
                k: round(v, 4) if isinstance(v, float) else v
                for k, v in s.to_dict().items()
                if k not in ("phase", "tolerance")
            }
            for s in evaluate_picks(self.predicted, self.truth, tolerances)
        }

    def fold(self, i: int) -> FoldResult:
        """The picks and labels of fold ``i`` only."""
        tag = f"{i}/"
        keep = lambda picks: [p for p in picks if p.trace_id.startswith(tag)]  # noqa: E731
        return FoldResult(f"{self.name} fold {i}", keep(self.predicted), keep(self.truth))


def _tagged(picks: list[Pick], fold: int) -> list[Pick]:
    return [Pick(f"{fold}/{p.trace_id}", p.phase, p.time) for p in picks]


def cross_validate(
    data: Path | Sequence[WaveformSample],
    variants: dict[str, dict[str, Any]],
    folds: int = 5,
    replay: Sequence[Path] = (),
    base: str = "phasenet-original",
    common: dict[str, Any] | None = None,
    work_dir: Path | None = None,
    by: str = "time",
    use_all: bool = False,
    seed: int = 0,
) -> list[FoldResult]:
    """Fine-tune ``base`` with every variant (TrainConfig fields over ``common``) on each fold of ``data``
    (:func:`~seispick.training.data.folds.make_folds`).

    ``replay`` folders are split by station and their train parts mixed in as `seispick finetune --replay`
    does. The base model's picks on the same held-out records come first in the result, then the base's with
    P and S thresholds calibrated on each fold's validation records (what threshold calibration alone gives).
    """
    extra = load_split(list(replay), "station") if replay else None
    calibrated = f"{base} (thresholds calibrated)"
    results = {name: FoldResult(name, [], []) for name in [base, calibrated, *variants]}
    base_model = load_model(base)
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        for i, fold in enumerate(make_folds(data, folds, by, use_all, seed)):
            predicted, truth = predict_picks(base_model, fold.test)
            results[base].predicted += _tagged(predicted, i)
            results[base].truth += _tagged(truth, i)
            # the base with thresholds calibrated on the fold's validation records, as fine-tuning calibrates
            thresholds = calibrate_thresholds(base_model, fold.val)["thresholds"]
            predicted, truth = predict_picks(base_model, fold.test, thresholds)
            results[calibrated].predicted += _tagged(predicted, i)
            results[calibrated].truth += _tagged(truth, i)
            for name, options in variants.items():
                config = TrainConfig(**{**(common or {}), **options})
                out = Path(tmp) / f"{name}-{i}"
                card_name = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "variant"
                run = RunConfig(out, config, progress=False)
                options = FinetuneOptions(name=card_name, score_base=False)
                finetune_phasenet(fold, base, run, options, replay=extra)
                predicted, truth = predict_picks(load_model(out / "model"), fold.test)
                results[name].predicted += _tagged(predicted, i)
                results[name].truth += _tagged(truth, i)
                print(f"fold {i + 1}/{folds} {name}: done", flush=True)
    return list(results.values())


def _table(results: list[FoldResult], folds: int = 0) -> str:
    head = "| setting | P F1 0.1 s | P F1 0.5 s | S F1 0.1 s | S F1 0.5 s | P std (s) | S std (s) |"
    rows = [head, "|" + "---|" * 7]
    parts = [r for r in results] + [r.fold(i) for i in range(folds) for r in results]
    for r in parts:
        s = r.scores()
        f1 = [s[f"{ph}@{t}s"]["f1"] for ph in "PS" for t in ("0.1", "0.5")]
        std = [s[f"{ph}@0.5s"]["residual_std"] for ph in "PS"]
        rows.append(
            f"| {r.name} | " + " | ".join("n/a" if x is None else f"{x:.3f}" for x in f1 + std) + " |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: print a Markdown table of pooled held-out scores and write them as JSON."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", type=Path, nargs="?", default=None, help="Dataset folder.")
    parser.add_argument("--catalog", type=Path, default=None, help="QuakeML catalogue (instead of a folder).")
    parser.add_argument("--waveforms", type=Path, action="append", default=[], help="With --catalog.")
    parser.add_argument(
        "--by", choices=["time", "station"], default="time", help="Fold by event time or station."
    )
    parser.add_argument("--all", action="store_true", help="Time folds over every event, test part included.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the station folds.")
    parser.add_argument("--replay", type=Path, action="append", default=[])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument(
        "--defaults", action="store_true", help="Start from seispick finetune's defaults (FINETUNE_DEFAULTS)."
    )
    parser.add_argument("--base", default="phasenet-original")
    parser.add_argument("--common", type=json.loads, default={}, help="TrainConfig fields (JSON) for all.")
    parser.add_argument(
        "--variant",
        nargs=2,
        action="append",
        metavar=("NAME", "JSON"),
        default=[],
        help="A setting to compare: name and TrainConfig fields (JSON) over --common.",
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the pooled scores.")
    args = parser.parse_args(argv)
    variants = {name: json.loads(options) for name, options in args.variant} or {"finetuned": {}}
    common = dict(args.common)
    if args.defaults:
        common = {**FINETUNE_DEFAULTS, **common}
    if (args.data is None) == (args.catalog is None) or (args.catalog is not None) != bool(args.waveforms):
        parser.error("give a dataset folder, or --catalog with --waveforms")
    data = args.data if args.catalog is None else catalog_samples(args.catalog, args.waveforms).samples
    results = cross_validate(
        data, variants, args.folds, args.replay, args.base, common,
        by=args.by, use_all=args.all, seed=args.seed,
    )  # fmt: skip
    print(_table(results, args.folds))
    if args.out:
        payload = {
            "data": str(args.data or args.catalog),
            "by": args.by,
            "folds": args.folds,
            "common": common,
            "variants": variants,
            "scores": {r.name: r.scores() for r in results},
            "fold_scores": {r.name: [r.fold(i).scores() for i in range(args.folds)] for r in results},
        }
        args.out.write_text(json.dumps(payload, indent=1) + "\n")


if __name__ == "__main__":
    main()
