"""Int8 static quantisation of a shipped picker, measured against the fp32 model on real held-out records.

    python scripts/quantize_int8.py --data ../shared/data --out runs/int8        # every variant, a table
    python scripts/quantize_int8.py --out runs/int8 --ship percentile-io          # writes the model folder
                                                                                  # only if it reaches the bar

How it quantises:

* onnxruntime's ``quant_pre_process`` first (optimisation: batch norm folded into the transposed convolutions;
  shape inference);
* ``quantize_static`` with ``QuantFormat.QDQ``, int8 weights per channel, uint8 activations;
* calibration windows are real and normalised exactly as the picking core normalises them: every window the core
  cuts on the absolute time grid of each record (``AnnotationJob.windows``: ``normalise_windows`` with the card's
  normalisation) plus one window with P, one with S and one before P per record, at random places, from the
  **training and validation** parts of the seed-0 splits of ``ncedc_phasenet`` (by station) and ``stead_ta109c``
  (by time); windows with a constant channel (|x| > sqrt(n): float32 demeaning leaves ~1e-6, divided by
  std + eps) are left out, one of them set every range 1000x too wide;
* the ranges are computed here and handed to ``quantize_static`` as its calibration cache, because
  ``quantize_static`` passes no histogram size and its Entropy calibrator then has 128 bins for 128 quantised bins
  (its result equals MinMax's);
* calibrators MinMax, Entropy (2048 bins) and Percentile (99.999 % of |x|) times node sets (:data:`NODE_SETS`):
  everything, everything but the first convolution, the output convolution and the softmax (``io``), also
  without the skip concatenations or the last decoder convolution, without encoder levels, or only decoder nodes.

Each variant is measured on the test parts (NCEDC test stations, 24 records; TA.109C test events, 8: the cards'
held-out sets), through ``seispick.picking.annotate`` as ``seispick pick`` runs it: max |probability
difference| against fp32 (stacked traces and raw windows), P and S F1 within 0.1 s against the analyst picks
(the delta to fp32's) and against fp32's picks, the fraction of fp32's picks reproduced within 0.02 s (and
0.1 s), and windows per second at batch 64 on 1 and 2 intra-op threads against fp32 (interleaved, best of 7).
Two reference rows run fp32 on inputs with Gaussian noise of 0.001 and 0.01 of the window's std, and one
convolution at a time gets int8 weights (the rest fp32): how far the network itself moves under small changes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data
from onnxruntime.quantization.shape_inference import quant_pre_process

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seispick.models.card import ModelCard, sha256_file  # noqa: E402
from seispick.models.inference import OnnxModel, create_session, load_model_dir  # noqa: E402
from seispick.models.registry import ModelRegistry  # noqa: E402
from seispick.picking.annotate import prepare  # noqa: E402
from seispick.picking.preprocess import normalise_windows  # noqa: E402
from seispick.training.data.inputs import load_split  # noqa: E402
from seispick.training.data.sample_streams import sample_stream  # noqa: E402
from seispick.training.data.samples import WaveformSample, reorder  # noqa: E402
from seispick.training.evaluation.parity import BAR, compare, f1s, run_model  # noqa: E402
from seispick.training.evaluation.scores import Pick  # noqa: E402

SEED = 0
SETS = {"ncedc_phasenet": "station", "stead_ta109c": "time"}
BASE = "phasenet-original"
VARIANT_NAME = "phasenet-original-int8"

FIRST_CONV = "/inc/Conv"
OUT = ["/out/Conv", "/Softmax"]
CONCATS = [f"/Concat_{i}" for i in range(4, 8)]
LAST_DECODER = ["/up_branch.3.2/Conv"]
LEVEL = {k: [f"/down_branch.{k}.0/Conv", f"/down_branch.{k}.2/Conv"] for k in range(4)}
DECODER = [f"/up_branch.{k}.{part}" for k in range(4) for part in ("0/ConvTranspose", "2/Conv")]
BOTTOM = ["/down_branch.3.0/Conv", "/down_branch.3.2/Conv", "/down_branch.4.0/Conv"]
# What is quantised: ("exclude", nodes kept in float, everything else quantised) or ("include", the only nodes
# quantised). Node names are those of the pre-processed graph (batch norm folded into the transposed convolutions).
NODE_SETS: dict[str, tuple[str, list[str]]] = {
    "all": ("exclude", []),
    "io": ("exclude", [FIRST_CONV, *OUT]),
    "io.concat": ("exclude", [FIRST_CONV, *OUT, *CONCATS]),
    "io.last": ("exclude", [FIRST_CONV, *OUT, *LAST_DECODER]),
    "enc1": ("exclude", [FIRST_CONV, *OUT, *LEVEL[0]]),
    "enc2": ("exclude", [FIRST_CONV, *OUT, *LEVEL[0], *LEVEL[1]]),
    "only.dec.bottom": ("include", DECODER + BOTTOM),
    "only.dec": ("include", [n for n in DECODER if n not in LAST_DECODER]),
    "only.top2": ("include", ["/up_branch.3.0/ConvTranspose", *LAST_DECODER]),
}
METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}

# The parity bar: F1 within 0.1 s no more than 0.01 below fp32's, 98 % of fp32's picks within 0.02 s,
# probabilities within 0.05.


# ---------------------------------------------------------------------------------------------------- data
def splits(data: Path) -> tuple[list[WaveformSample], list[WaveformSample]]:
    """(calibration samples: training + validation parts, test samples) of both sets, seed 0 as the cards."""
    calib, test = [], []
    for folder, method in SETS.items():
        split = load_split([data / folder], method, seed=SEED)
        calib += split.train + split.val
        test += split.test
    return calib, test


def calibration_windows(samples: list[WaveformSample], card: ModelCard, seed: int = SEED) -> np.ndarray:
    """Normalised windows as the core makes them: its grid windows of every record, and per record one window
    with P, one with S and one before P (no phase) at random places."""
    rng = np.random.default_rng(seed)
    n = card.window_samples
    grid, extra = [], []
    for sample in samples:
        grid.append(prepare(sample_stream(sample), card).windows())
        wave = reorder(sample, card.channel_order).waveform.astype(np.float32)
        length = wave.shape[-1]
        for index in (sample.p_index, sample.s_index):
            if index is None or length < n:
                continue
            lo, hi = max(0, index - n + 100), min(length - n, index - 100)
            if hi > lo:
                start = int(rng.integers(lo, hi + 1))
                extra.append(wave[:, start : start + n])
        if sample.p_index is not None and sample.p_index - 50 >= n:
            start = int(rng.integers(0, sample.p_index - 50 - n + 1))
            extra.append(wave[:, start : start + n])
    targeted = normalise_windows(np.stack(extra), card.normalisation)
    windows = np.concatenate([*grid, targeted]).astype(np.float32)
    # A std-normalised channel of n samples stays within sqrt(n); beyond that a channel was constant (a flat
    # stretch: float32 demeaning leaves ~1e-6, divided by std + eps ~ 1e-10). One such window would set the
    # activation ranges of every layer (scales x1000), so degenerate windows are left out of the calibration.
    sane = np.abs(windows).max(axis=(1, 2)) <= np.sqrt(n)
    return windows[sane]


class WindowReader(CalibrationDataReader):
    """Feeds calibration windows in batches of ``batch``."""

    def __init__(self, windows: np.ndarray, input_name: str, batch: int = 32) -> None:
        # The histogram calibrators stack the batches: all of one size (the few left over are dropped).
        windows = windows[np.random.default_rng(SEED).permutation(len(windows))]
        self.windows = windows[: len(windows) // batch * batch]
        self.input_name, self.batch = input_name, batch
        self.rewind()

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._pos >= len(self.windows):
            return None
        part = self.windows[self._pos : self._pos + self.batch]
        self._pos += self.batch
        return {self.input_name: part}

    def rewind(self) -> None:
        self._pos = 0


# ---------------------------------------------------------------------------------------------------- building
def calibrate(pre: Path, windows: np.ndarray, card: ModelCard, method: str, cache: Path) -> Path:
    """Activation ranges of every tensor by ``method``, written to ``cache`` (quantize_static reads it).

    Calibrated here rather than inside quantize_static, which passes no histogram size: its Entropy calibrator
    then uses 128 bins for 128 quantised bins, so the only threshold it can choose is the whole range (= MinMax).
    Entropy gets 2048 bins here, Percentile 2048 bins of |x| at 99.999 % (onnxruntime's defaults; the one-sided
    histogram measured worse), MinMax the plain range.
    """
    if cache.is_file():
        return cache
    options = {
        "minmax": {},
        "entropy": {"num_bins": 2048, "num_quantized_bins": 128},
        "percentile": {"num_bins": 2048, "percentile": 99.999},  # ORT's default: on |x| (symmetric)
    }[method]
    with tempfile.TemporaryDirectory(prefix="seispick-int8-") as tmp:
        calibrator = create_calibrator(
            pre, None, f"{tmp}/augmented.onnx", calibrate_method=METHODS[method], extra_options=options
        )
        calibrator.collect_data(WindowReader(windows, card.input_name))
        save_tensors_data(calibrator.compute_data(), cache)
    return cache


def quantise(pre: Path, out: Path, cache: Path, method: str, nodes: str) -> None:
    mode, names = NODE_SETS[nodes]
    quantize_static(
        str(pre),
        str(out),
        None,
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_quantize=names if mode == "include" else None,
        nodes_to_exclude=names if mode == "exclude" else None,
        calibrate_method=METHODS[method],
        calibration_cache_path=str(cache),
    )


def model_folder(onnx_path: Path, base: ModelCard, folder: Path, name: str, **card_changes) -> Path:
    """A model folder for ``onnx_path``: the base card with the ONNX file's sha256 and ``card_changes``."""
    folder.mkdir(parents=True, exist_ok=True)
    if onnx_path.resolve() != (folder / "model.onnx").resolve():
        shutil.copyfile(onnx_path, folder / "model.onnx")
    card = base.model_copy(
        update={"name": name, "onnx_file": "model.onnx", "onnx_sha256": sha256_file(folder / "model.onnx")}
        | card_changes
    )
    card.write(folder)
    return folder


# ---------------------------------------------------------------------------------------------------- measuring
def labels_of(samples: list[WaveformSample]) -> list[Pick]:
    return [
        Pick(str(i), phase, index / s.sampling_rate)
        for i, s in enumerate(samples)
        for phase, index in s.picks()
    ]


def windows_per_s(paths: dict[str, Path], windows: np.ndarray, card: ModelCard, repeats: int = 7) -> dict:
    """Windows per second at batch 64 on 1 and 2 intra-op threads, the models interleaved, best of ``repeats``."""
    batch = np.ascontiguousarray(np.resize(windows, (64, *windows.shape[1:])), dtype=np.float32)
    out: dict[str, dict[str, float]] = {name: {} for name in paths}
    for threads in (1, 2):
        sessions = {name: create_session(p, threads=threads, prefer_gpu=False) for name, p in paths.items()}
        best = dict.fromkeys(paths, np.inf)
        for session in sessions.values():
            session.run(None, {card.input_name: batch})
        for _ in range(repeats):
            for name, session in sessions.items():
                t0 = time.perf_counter()
                session.run(None, {card.input_name: batch})
                best[name] = min(best[name], time.perf_counter() - t0)
        for name in paths:
            out[name][f"{threads}t"] = round(64 / best[name], 1)
    return out


def load(folder: Path) -> OnnxModel:
    return load_model_dir(folder, threads=2, prefer_gpu=False)


def with_input_noise(model: OnnxModel, level: float) -> OnnxModel:
    """The fp32 model fed its normalised windows plus Gaussian noise of ``level`` (in units of the window's std):
    how far the network itself moves under a perturbation of that size (a reference for the int8 rows)."""
    rng = np.random.default_rng(SEED)

    def run(windows: np.ndarray) -> np.ndarray:
        noise = rng.standard_normal(windows.shape).astype(np.float32) * np.float32(level)
        return model.runners[0](np.ascontiguousarray(windows + noise))

    return OnnxModel(model.card, model.path, [run])


def weight_sensitivity(pre: Path, windows: np.ndarray, card: ModelCard) -> dict[str, float]:
    """Max |dp| over ``windows`` when only one convolution's weights are rounded to int8 (per output channel,
    symmetric, as quantize_static does) and everything else, activations included, stays fp32."""
    ref_session = ort.InferenceSession(str(pre), providers=["CPUExecutionProvider"])
    ref = ref_session.run(None, {card.input_name: windows})[0]
    graph = onnx.load(str(pre))
    out = {}
    for node in [n for n in graph.graph.node if n.op_type in ("Conv", "ConvTranspose")]:
        model = onnx.load(str(pre))
        inits = {i.name: i for i in model.graph.initializer}
        w = numpy_helper.to_array(inits[node.input[1]])
        axis = 0 if node.op_type == "Conv" else 1  # output channels: (out, in, k) / (in, out, k)
        scale = np.abs(w).max(axis=tuple(i for i in range(w.ndim) if i != axis), keepdims=True) / 127
        rounded = (np.clip(np.round(w / np.where(scale > 0, scale, 1)), -127, 127) * scale).astype(np.float32)
        inits[node.input[1]].CopyFrom(numpy_helper.from_array(rounded, node.input[1]))
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        out[node.name] = round(float(np.abs(session.run(None, {card.input_name: windows})[0] - ref).max()), 4)
    return out


# ---------------------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("runs/int8"))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--nodes", nargs="+", default=list(NODE_SETS), choices=list(NODE_SETS))
    parser.add_argument(
        "--ship", metavar="VARIANT", help="write this variant (e.g. percentile-io) as the model"
    )
    parser.add_argument(
        "--models", type=Path, default=Path(__file__).resolve().parents[1] / "seispick/models"
    )
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    base = ModelRegistry().get(BASE)
    card = base.card
    calib_samples, test = splits(args.data)
    calib = calibration_windows(calib_samples, card)
    test_windows = np.concatenate([prepare(sample_stream(s), card).windows() for s in test])
    print(f"calibration: {len(calib)} windows from {len(calib_samples)} records; test: {len(test)} records")
    pre = args.out / "pre.onnx"
    quant_pre_process(str(base.folder / card.onnx_file), str(pre))
    labels = labels_of(test)
    fp32 = load(base.folder)
    streams = [sample_stream(s) for s in test]
    ref = run_model(fp32, streams, test_windows)
    f_ref = f1s(ref.picks, labels)
    print(f"fp32: P F1 {f_ref['P']:.4f}, S F1 {f_ref['S']:.4f} within 0.1 s; {len(ref.picks)} picks")

    reference = {}
    for level in (1e-3, 1e-2):
        reference[f"fp32 + input noise {level:g} std"] = compare(
            ref, run_model(with_input_noise(fp32, level), streams, test_windows), labels
        )
    sensitivity = weight_sensitivity(pre, test_windows, card)
    print("input noise:", json.dumps(reference), "\nint8 weights of one layer:", json.dumps(sensitivity))

    results, paths = {}, {"fp32": base.folder / card.onnx_file}
    wanted = [args.ship] if args.ship else [f"{m}-{n}" for m in args.methods for n in args.nodes]
    for variant in wanted:
        method, nodes = variant.split("-", 1)
        onnx_path = args.out / f"{variant}.onnx"
        t0 = time.perf_counter()
        cache = calibrate(pre, calib, card, method, args.out / f"calibration-{method}.json")
        quantise(pre, onnx_path, cache, method, nodes)
        seconds = time.perf_counter() - t0
        folder = model_folder(onnx_path, card, args.out / variant, f"{BASE}-{variant}")
        figures = compare(ref, run_model(load(folder), streams, test_windows), labels)
        figures["calibration_s"] = round(seconds, 1)
        mode, names = NODE_SETS[nodes]
        results[variant] = {"method": method, "nodes": nodes, mode: names, **figures}
        paths[variant] = onnx_path
        print(variant, json.dumps(figures), flush=True)

    speed = windows_per_s(paths, test_windows, card)
    for variant in results:
        for t in ("1t", "2t"):
            results[variant][f"speedup_{t}"] = round(speed[variant][t] / speed["fp32"][t], 2)
            results[variant][f"windows_per_s_{t}"] = speed[variant][t]
    summary = {
        "fp32": {"f1_labels": f_ref, "n_picks": len(ref.picks), "windows_per_s": speed["fp32"]},
        "calibration": {"windows": len(calib), "records": len(calib_samples)},
        "test_records": len(test),
        "test_windows": len(test_windows),
        "bar": BAR,
        "reference": reference,
        "weight_sensitivity": sensitivity,
        "variants": results,
    }
    (args.out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    print_table(summary)
    if args.ship:
        ship(args, results[args.ship], args.out / f"{args.ship}.onnx", card, summary)


def print_table(summary: dict) -> None:
    print(
        "\n| variant | max dp stacked / windows | P F1 delta | S F1 delta | fp32 picks within 0.02 s "
        "| within 0.1 s | speed 1 / 2 threads | bar |"
    )
    print("|---|---|---|---|---|---|---|---|")
    rows = list(summary["reference"].items()) + list(summary["variants"].items())
    for name, r in rows:
        print(
            f"| {name} | {r['max_dp_stacked']:.3f} / {r['max_dp_windows']:.3f} "
            f"| {r['P_f1_delta']:+.3f} | {r['S_f1_delta']:+.3f} | {r['reproduced_0.02s']:.3f} "
            f"| {r['reproduced_0.1s']:.3f} | {r.get('speedup_1t', 1):.2f}x / {r.get('speedup_2t', 1):.2f}x | {'yes' if r['passes'] else 'no'} |"
        )


def ship(args: argparse.Namespace, figures: dict, onnx_path: Path, card: ModelCard, summary: dict) -> None:
    if not figures["passes"]:
        raise SystemExit(f"{args.ship} does not reach the parity bar: not shipped")
    method, nodes = args.ship.split("-", 1)
    mode, names = NODE_SETS[nodes]
    kept = ", ".join(names) if mode == "exclude" else f"all but {', '.join(names)}"
    skip = ("method", "nodes", "exclude", "include", "passes", "calibration_s")
    parity = {k: v for k, v in figures.items() if k not in skip}
    text = (
        f"phasenet-original quantised to int8 (onnxruntime quantize_static, QDQ, int8 weights per channel, uint8 "
        f"activations, calibrator {method}; kept in float: {kept}). Calibrated on "
        f"{summary['calibration']['windows']} normalised windows of the training and validation parts of the seed-0 "
        f"splits of ncedc_phasenet (by station) and stead_ta109c (by time), {summary['calibration']['records']} "
        f"records; measured against fp32 on their test parts ({summary['test_records']} records): max |dp| "
        f"{max(figures['max_dp_stacked'], figures['max_dp_windows']):.3f}, P/S F1 within 0.1 s "
        f"{figures['P_f1_delta']:+.3f}/{figures['S_f1_delta']:+.3f} vs fp32, "
        f"{figures['reproduced_0.02s']:.1%} of fp32's picks within 0.02 s, "
        f"{figures['speedup_1t']:.2f}x/{figures['speedup_2t']:.2f}x fp32's windows/s on 1/2 threads. "
        "Only used when named (--model phasenet-original-int8); never the default."
    )
    folder = args.models / VARIANT_NAME
    model_folder(
        onnx_path,
        card,
        folder,
        VARIANT_NAME,
        description=text,
        provenance=f"{card.provenance} Then scripts/quantize_int8.py --ship {args.ship} (seispick).",
        metrics={
            **card.metrics,
            "int8": {
                "base": BASE,
                "base_sha256": card.onnx_sha256,
                "calibrator": method,
                "nodes": {mode: names},
                "calibration_data": "ncedc_phasenet (station split, seed 0) and stead_ta109c (time split) training "
                "and validation records: every grid window of the picking core plus P, S and pre-P windows",
                "calibration_windows": summary["calibration"]["windows"],
                "test_records": summary["test_records"],
                "parity_vs_fp32": parity,
                "bar": BAR,
            },
        },
        held_out={},
    )
    shutil.copyfile(ModelRegistry().get(BASE).folder / "LICENSE", folder / "LICENSE")
    print(f"wrote {folder}")


if __name__ == "__main__":
    main()
