"""Blocked cross-validation in time, for choosing fine-tuning settings without touching the test split.

    python -m seispick.training.crossval /data/stead_ta109c --replay /data/ncedc_phasenet --folds 5 \\
        --variant plain "" --variant distil-S "--distill-weight 0.5 --distill-phases S"

The training and validation events of a one-station dataset (its chronological test part is left out) are cut
into ``folds`` consecutive blocks; fold i fine-tunes on the other blocks, stops early on block i+1 and picks
block i through the models/ runtime. Picks of all folds are pooled and scored against the labels, next to the
base model's picks on the same events, so a setting is judged on every held-out event rather than on a
handful of test events.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .evaluate import TOLERANCES, load_model, predict_picks
from .inputs import DataSplit, load_split
from .metrics import Pick, evaluate_picks
from .samples import WaveformSample, sample_time

__all__ = ["FoldResult", "cross_validate", "time_folds"]


def time_folds(samples: Sequence[WaveformSample], folds: int) -> list[DataSplit]:
    """``folds`` splits of chronological blocks: test = block i, validation = block i+1 (cyclic), train = rest."""
    if folds < 3:
        raise ValueError(f"need at least 3 folds (train, validation, test blocks), got {folds}")
    if len(samples) < folds:
        raise ValueError(f"{len(samples)} sample(s) cannot make {folds} folds")
    ordered = sorted(samples, key=lambda s: (sample_time(s) or 0, s.trace_id))
    size, extra = divmod(len(ordered), folds)
    blocks, start = [], 0
    for i in range(folds):
        stop = start + size + (1 if i < extra else 0)
        blocks.append(ordered[start:stop])
        start = stop
    out = []
    for i in range(folds):
        j = (i + 1) % folds
        train = [s for k, b in enumerate(blocks) if k not in (i, j) for s in b]
        out.append(
            DataSplit(train=train, val=blocks[j], test=blocks[i], description={"fold": i, "of": folds})
        )
    return out


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


def _tagged(picks: list[Pick], fold: int) -> list[Pick]:
    return [Pick(f"{fold}/{p.trace_id}", p.phase, p.time) for p in picks]


def cross_validate(
    data: Path,
    variants: dict[str, dict[str, Any]],
    folds: int = 5,
    replay: Sequence[Path] = (),
    base: str = "phasenet-original",
    common: dict[str, Any] | None = None,
    work_dir: Path | None = None,
) -> list[FoldResult]:
    """Fine-tune ``base`` with every variant (TrainConfig fields over ``common``) on each fold of ``data``.

    ``replay`` folders are split by station and their train parts mixed in as `seispick finetune --replay`
    does. The base model's picks on the same held-out blocks come first in the result.
    """
    from .config import TrainConfig
    from .train import finetune_phasenet

    split = load_split([data], "time")
    extra = load_split(list(replay), "station") if replay else None
    results = {name: FoldResult(name, [], []) for name in [base, *variants]}
    base_model = load_model(base)
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        for i, fold in enumerate(time_folds(split.train + split.val, folds)):
            predicted, truth = predict_picks(base_model, fold.test)
            results[base].predicted += _tagged(predicted, i)
            results[base].truth += _tagged(truth, i)
            for name, options in variants.items():
                config = TrainConfig(**{**(common or {}), **options})
                out = Path(tmp) / f"{name}-{i}"
                finetune_phasenet(
                    fold, base, out, config, name=name, progress=False, replay=extra, score_base=False
                )
                predicted, truth = predict_picks(load_model(out / "model"), fold.test)
                results[name].predicted += _tagged(predicted, i)
                results[name].truth += _tagged(truth, i)
                print(f"fold {i + 1}/{folds} {name}: done", flush=True)
    return list(results.values())


def _table(results: list[FoldResult]) -> str:
    head = "| setting | P F1 0.1 s | P F1 0.5 s | S F1 0.1 s | S F1 0.5 s | P std (s) | S std (s) |"
    rows = [head, "|" + "---|" * 7]
    for r in results:
        s = r.scores()
        f1 = [s[f"{ph}@{t}s"]["f1"] for ph in "PS" for t in ("0.1", "0.5")]
        std = [s[f"{ph}@0.5s"]["residual_std"] for ph in "PS"]
        rows.append(f"| {r.name} | " + " | ".join(f"{x:.3f}" for x in f1 + std) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: print a Markdown table of pooled held-out scores and write them as JSON."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", type=Path, help="One-station dataset folder (split by time).")
    parser.add_argument("--replay", type=Path, action="append", default=[])
    parser.add_argument("--folds", type=int, default=5)
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
    variants = {name: json.loads(options) for name, options in args.variant}
    results = cross_validate(args.data, variants, args.folds, args.replay, args.base, args.common)
    print(_table(results))
    if args.out:
        payload = {
            "data": str(args.data),
            "folds": args.folds,
            "common": args.common,
            "variants": variants,
            "scores": {r.name: r.scores() for r in results},
        }
        args.out.write_text(json.dumps(payload, indent=1) + "\n")


if __name__ == "__main__":
    main()
