"""Where phasenet-original loses S on the cards' test splits (README "Shipped models", issue 23 item 4).

    python scripts/s_picking_study.py --data ../shared/data

For the NCEDC and TA.109C test splits (station split and time split, seed 0, as the cards name them) it prints P and
S F1 within 0.1 / 0.5 s (TP/FP/FN, mean residual) of: the trigger at thresholds 0.2-0.6 against PhaseNet's own
peak detection (local maxima 0.5 s apart); zero horizontals of vertical-only records given to the model or left
out; stacking max; overlaps 2000 and 2500; the reference pass (argmax per 3000-sample window); and the same
weights imported from SeisBench's 3001-sample layout with and without ``--tf-padding``. Needs the training extra
and SeisBench; a few minutes on two cores.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from seispick.cli.main import cli
from seispick.picking.annotate import annotate, prepare
from seispick.picking.results import picks_from_probabilities
from seispick.training.data.inputs import load_split
from seispick.training.data.sample_streams import sample_start, sample_stream
from seispick.training.evaluation.evaluate import load_model
from seispick.training.evaluation.scores import Pick, evaluate_picks


def peaks(x: np.ndarray, mph: float, mpd: int) -> np.ndarray:
    """PhaseNet's detect_peaks: local maxima at or above ``mph``, the larger first, none within ``mpd``."""
    dx = np.diff(x)
    ind = np.flatnonzero((np.hstack((dx, 0)) <= 0) & (np.hstack((0, dx)) > 0))
    ind = ind[x[ind] >= mph]
    if ind.size and mpd > 1:
        ind = ind[np.argsort(x[ind])][::-1]
        gone = np.zeros(ind.size, bool)
        for i in range(ind.size):
            if not gone[i]:
                gone |= (ind >= ind[i] - mpd) & (ind <= ind[i] + mpd) & (x[ind[i]] > x[ind])
                gone[i] = False
        ind = np.sort(ind[~gone])
    return ind


def line(pred: list[Pick], truth: list[Pick]) -> str:
    out = []
    for s in evaluate_picks(pred, truth, (0.1, 0.5), ("P", "S")):
        mean = "n/a" if s.residual_mean is None else f"{s.residual_mean:+.3f}"
        out.append(f"{s.phase}@{s.tolerance:g} {s.f1:.3f} ({s.tp}/{s.fp}/{s.fn}, {mean})")
    return " | ".join(out)


def seisbench_imports(folder: Path, weights: Path) -> dict[str, object]:
    """The original weights in SeisBench's layout (ENZ), imported as SeisBench runs them and with --tf-padding."""
    import seisbench.models as sbm

    from seispick.training.export.convert import state_dict_from_tf

    model = sbm.PhaseNet(component_order="ENZ").eval()
    model.load_state_dict(state_dict_from_tf(dict(np.load(weights))))
    model.save(str(folder / "original"), version_str="1")
    out = {}
    for name, flags in (("seisbench-3001", []), ("tf-padding-3000", ["--tf-padding"])):
        result = CliRunner().invoke(
            cli,
            ["models", "import-seisbench", f"{folder / 'original'}.pt.v1", f"{folder / 'original'}.json.v1"]
            + ["--name", name, "--out", str(folder / name), *flags],
        )
        assert result.exit_code == 0, result.output
        out[name] = load_model(folder / name)
    return out


def study(name: str, samples, model, extra: dict) -> None:
    truth = [
        Pick(f"{i}:{s.trace_id}", ph, idx / s.sampling_rate)
        for i, s in enumerate(samples)
        for ph, idx in s.picks()
    ]
    vertical = sum(
        not np.any(s.waveform[[k for k, c in enumerate(s.channel_order) if c != "Z"]]) for s in samples
    )
    print(f"== {name}: {len(samples)} test records, {vertical} vertical-only; F1 (TP/FP/FN, mean residual s)")
    runs = []
    for i, s in enumerate(samples):
        for drop in (True, False):
            runs.append(
                (
                    f"{i}:{s.trace_id}",
                    sample_start(s),
                    drop,
                    annotate(sample_stream(s, drop), model),
                )
            )
    for drop in (True, False):
        for t in (0.2, 0.3, 0.4, 0.5, 0.6):
            trig, peak = [], []
            for key, start, d, result in runs:
                if d != drop:
                    continue
                for a in result.annotations:
                    found = picks_from_probabilities(
                        a.probabilities, a.time_of, model.card.labels, {"P": t, "S": t}, "", "m"
                    )
                    trig += [Pick(key, p.phase, p.peak_time - start) for p in found]  # as evaluate does
                    for row, ph in ((1, "P"), (2, "S")):
                        x = np.nan_to_num(a.probabilities[row], nan=0.0)
                        peak += [Pick(key, ph, a.time_of(int(j)) - start.timestamp) for j in peaks(x, t, 50)]
            zeros = "zero horizontals left out" if drop else "zero horizontals given"
            print(f"{zeros}, threshold {t}: trigger {line(trig, truth)}")
            print(f"{zeros}, threshold {t}: peaks   {line(peak, truth)}")
    for label, m, kwargs in [("stacking max", model, {"stacking": "max"}), ("overlap 2000", model, {"overlap": 2000}),
                             ("overlap 2500", model, {"overlap": 2500})] + [(k, v, {}) for k, v in extra.items()]:  # fmt: skip
        pred = []
        for i, s in enumerate(samples):
            start = sample_start(s)
            result = annotate(sample_stream(s), m, thresholds={"P": 0.3, "S": 0.3}, **kwargs)
            pred += [Pick(f"{i}:{s.trace_id}", p.phase, p.peak_time - start) for p in result.picks]
        print(f"{label}: {line(pred, truth)}")
    pred = []
    for i, s in enumerate(samples):
        job = prepare(sample_stream(s), model.card, overlap=model.card.window_samples - 1500)
        y = model.predict(job.windows(0, job.n_windows))
        seg, start = job.segments[0], sample_start(s).timestamp
        for k, off in enumerate(job.offsets[0]):
            for row, ph in ((1, "P"), (2, "S")):
                j = int(np.argmax(y[k, row]))
                if y[k, row, j] >= 0.3:
                    pred.append(Pick(f"{i}:{s.trace_id}", ph, seg.time_of(int(off) + j) - start))
    kept: list[Pick] = []
    for p in sorted(pred, key=lambda p: (p.trace_id, p.phase, p.time)):
        if not (
            kept
            and (kept[-1].trace_id, kept[-1].phase) == (p.trace_id, p.phase)
            and p.time - kept[-1].time < 0.5
        ):
            kept.append(p)
    print(f"reference pass (argmax per window, 1500 apart, one pick per 0.5 s): {line(kept, truth)}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    args = parser.parse_args()
    model = load_model("phasenet-original")
    with tempfile.TemporaryDirectory() as tmp:
        extra = seisbench_imports(Path(tmp), args.data / "phasenet_original" / "weights.npz")
        for name in ("ncedc_phasenet", "stead_ta109c"):
            study(name, load_split([args.data / name], "auto", (0.7, 0.15, 0.15), 0).test, model, extra)


if __name__ == "__main__":
    main()
