"""The parity bar a faster variant of a model (int8, another backend) must reach against its fp32 model before it
ships (issue 22): on real recordings, through ``seispick.picking.annotate`` as ``seispick pick`` runs them,

* P and S F1 within 0.1 s against the analyst picks no more than ``f1_drop`` below fp32's,
* at least ``reproduced`` of fp32's picks made again within ``tolerance_s``,
* probabilities (stacked traces and raw window outputs) within ``max_dp`` of fp32's.

``scripts/quantize_int8.py`` measures its variants with it and ``--ship`` refuses one that fails;
``tests/test_inference_parity.py`` holds every shipped variant to it on ``tests/data/real``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import obspy

from seispick.models.inference import OnnxModel
from seispick.picking.annotate import annotate
from seispick.training.evaluation.scores import Pick, evaluate_picks, match_picks

BAR = {"f1_drop": 0.01, "reproduced": 0.98, "max_dp": 0.05, "tolerance_s": 0.02}


@dataclass
class Run:
    """A model's picks (times from each recording's start, keyed by the recording's index), stacked probabilities over
    the recordings, and its raw outputs of a set of windows."""

    picks: list[Pick]
    probs: list[np.ndarray]
    window_out: np.ndarray


def run_model(model: OnnxModel, streams: Sequence[obspy.Stream], windows: np.ndarray) -> Run:
    """``model`` over each recording of ``streams`` (as ``seispick pick``) and over ``windows``."""
    picks, probs = [], []
    for i, stream in enumerate(streams):
        start = min(tr.stats.starttime for tr in stream)
        result = annotate(stream, model, batch_size=64)
        picks += [Pick(str(i), p.phase, p.peak_time - start) for p in result.picks]
        probs += [a.probabilities for a in result.annotations]
    return Run(picks, probs, model.predict(windows))


def f1s(predicted: list[Pick], truth: list[Pick], tolerance: float = 0.1) -> dict[str, float]:
    return {s.phase: s.f1 for s in evaluate_picks(predicted, truth, (tolerance,), ("P", "S"))}


def compare(ref: Run, other: Run, labels: list[Pick], bar: dict[str, float] = BAR) -> dict[str, float | bool]:
    """The parity figures of ``other`` against the fp32 run ``ref`` (``labels``: the analyst picks, keyed as
    the runs' picks), with ``passes``: whether they reach ``bar``."""
    max_dp = max((float(np.abs(a - b).max()) for a, b in zip(ref.probs, other.probs)), default=0.0)
    window_dp = float(np.abs(ref.window_out - other.window_out).max()) if ref.window_out.size else 0.0
    tol = bar["tolerance_s"]
    kept = sum(len(match_picks(other.picks, ref.picks, tol, ph)[0]) for ph in ("P", "S"))
    kept_01 = sum(len(match_picks(other.picks, ref.picks, 0.1, ph)[0]) for ph in ("P", "S"))
    n_ref = sum(p.phase in ("P", "S") for p in ref.picks)
    f_ref, f_new, f_vs = f1s(ref.picks, labels), f1s(other.picks, labels), f1s(other.picks, ref.picks)
    out: dict[str, float | bool] = {
        "max_dp_stacked": round(max_dp, 4),
        "max_dp_windows": round(window_dp, 4),
        "P_f1_labels": round(f_new["P"], 4),
        "S_f1_labels": round(f_new["S"], 4),
        "P_f1_delta": round(f_new["P"] - f_ref["P"], 4),
        "S_f1_delta": round(f_new["S"] - f_ref["S"], 4),
        "P_f1_vs_fp32": round(f_vs["P"], 4),
        "S_f1_vs_fp32": round(f_vs["S"], 4),
        "reproduced_0.02s": round(kept / n_ref, 4) if n_ref else 0.0,
        "reproduced_0.1s": round(kept_01 / n_ref, 4) if n_ref else 0.0,
        "n_picks_fp32": n_ref,
        "n_picks": sum(p.phase in ("P", "S") for p in other.picks),
    }
    out["passes"] = bool(
        out["P_f1_delta"] >= -bar["f1_drop"]
        and out["S_f1_delta"] >= -bar["f1_drop"]
        and out["reproduced_0.02s"] >= bar["reproduced"]
        and max(max_dp, window_dp) <= bar["max_dp"]
    )
    return out
