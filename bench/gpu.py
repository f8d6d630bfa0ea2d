"""Inference throughput by execution provider and batch size, and how far the fast paths drift from the CPU.

For a GPU machine (onnxruntime-gpu installed: ``pip install 'seispick[gpu]'``): windows/s of the shipped
PhaseNet on CUDA (fp32, and fp16 with IO binding: inputs copied once, outputs left on the device until the
end of a batch) next to the CPU reference, by batch size, plus the max |difference| of each path's
probabilities from the CPU fp32 output on the same windows. On a machine without CUDA it runs the CPU
rows only and says so. Run by hand:

    python bench/gpu.py [--model phasenet-original] [--batches 1,8,32,128,512] [--seconds 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seispick.models.registry import ModelRegistry  # noqa: E402


def fp16_model(src: Path, dst: Path) -> Path:
    """The same network with fp16 weights and arithmetic, fp32 inputs and outputs (keep_io_types)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))
    return dst


def session(path: Path, provider: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=options, providers=[provider])


def run_plain(sess: ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def run_io_binding(sess: ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    """Input copied to the device once, output allocated on the device and copied back once."""
    binding = sess.io_binding()
    value = ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0)
    binding.bind_ortvalue_input(sess.get_inputs()[0].name, value)
    binding.bind_output(sess.get_outputs()[0].name, "cuda", 0)
    sess.run_with_iobinding(binding)
    return binding.copy_outputs_to_cpu()[0]


def throughput(fn, x: np.ndarray, seconds: float) -> float:
    """Windows per second over at least ``seconds`` of repeated calls (after one warm-up call)."""
    fn(x)
    calls, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn(x)
        calls += 1
    return calls * len(x) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="phasenet-original")
    parser.add_argument("--batches", default="1,8,32,128,512")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]

    entry = ModelRegistry().get(args.model)
    src = entry.folder / entry.card.onnx_file
    rng = np.random.default_rng(0)
    shape = (max(batches), len(entry.card.channel_order), entry.card.window_samples)
    windows = rng.standard_normal(shape).astype(np.float32)

    cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    print(f"model {args.model}  onnxruntime {ort.__version__}  providers {ort.get_available_providers()}")
    if not cuda:
        print("CUDAExecutionProvider not available: CPU rows only (install onnxruntime-gpu on a GPU machine)")

    cpu = session(src, "CPUExecutionProvider")
    reference = run_plain(cpu, windows[:32])
    paths: list[tuple[str, object]] = [("CPU fp32", lambda x: run_plain(cpu, x))]
    with tempfile.TemporaryDirectory() as tmp:
        if cuda:
            gpu32 = session(src, "CUDAExecutionProvider")
            gpu16 = session(fp16_model(src, Path(tmp) / "fp16.onnx"), "CUDAExecutionProvider")
            paths += [
                ("CUDA fp32", lambda x: run_plain(gpu32, x)),
                ("CUDA fp32 IO binding", lambda x: run_io_binding(gpu32, x)),
                ("CUDA fp16 IO binding", lambda x: run_io_binding(gpu16, x)),
            ]
        print(f"\n| path | {' | '.join(f'batch {b}' for b in batches)} | max abs diff vs CPU fp32 |")
        print(f"|---|{'---|' * len(batches)}---|")
        for name, fn in paths:
            rates = []
            for b in batches:
                if name.startswith("CPU") and b > 128:
                    rates.append("-")  # the CPU rows would take minutes; batch size does not help it past 32
                    continue
                rates.append(f"{throughput(fn, windows[:b], args.seconds):,.0f}")
            diff = float(np.abs(fn(windows[:32]) - reference).max())
            print(f"| {name} | {' | '.join(rates)} | {diff:.2e} |")
    print("\nwindows/s (one window = 30 s of 3-component data at 100 Hz)")


if __name__ == "__main__":
    main()
