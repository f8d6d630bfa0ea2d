"""Inference sessions for shipped ONNX models.

The reference backend is onnxruntime (CUDA when the GPU build and a device are present, CPU otherwise).
``backend="openvino"`` runs the same ONNX file on OpenVINO's CPU plugin in fp32 (an option, never
chosen silently: ``pip install 'seispick[openvino]'``); it agrees with onnxruntime within ~1e-7.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort

from seispick.models.card import ModelCard, sha256_file

log = logging.getLogger(__name__)


BACKENDS = ("onnxruntime", "openvino")
Backend = Literal["onnxruntime", "openvino"]
Runner = Callable[[np.ndarray], np.ndarray]


class ModelLoadError(RuntimeError):
    """A model folder is missing files or its ONNX file does not match the card."""


def choose_providers(prefer_gpu: bool = True) -> list[str]:
    """The execution providers to use: CUDA first where onnxruntime-gpu sees a device, then CPU."""
    available = ort.get_available_providers()
    if prefer_gpu and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def create_session(
    onnx_path: str | Path, threads: int | None = None, prefer_gpu: bool = True
) -> ort.InferenceSession:
    """An inference session with full graph optimisation and ``threads`` intra-op threads (None: ORT default)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(onnx_path), sess_options=options, providers=choose_providers(prefer_gpu))


@dataclass
class OnnxModel:
    """A model card with its inference runners. ``predict`` is thread-safe.

    On the CPU the model holds one single-threaded runner per core and splits a batch across them:
    PhaseNet's small 1-D convolutions scale better over the batch than inside one operator (measured
    0.70 ms vs 0.87 ms per window on 2 cores). On a GPU it holds one runner.
    """

    card: ModelCard
    path: Path
    runners: list[Runner]
    backend: str = "onnxruntime"
    device: str = "CPUExecutionProvider"
    _pool: ThreadPoolExecutor | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def sha256(self) -> str:
        return self.card.onnx_sha256

    def predict(self, windows: np.ndarray) -> np.ndarray:
        """Run normalised windows (batch, channels, samples) through the network; returns its output."""
        windows = np.ascontiguousarray(windows, dtype=np.float32)
        if self._pool is None or len(windows) < 2 * len(self.runners):
            return self.runners[0](windows)
        parts = np.array_split(windows, len(self.runners))
        # the first part on this thread: one hand-over to the pool less per call
        others = [self._pool.submit(run, part) for run, part in zip(self.runners[1:], parts[1:])]
        return np.concatenate([self.runners[0](parts[0]), *(future.result() for future in others)])


def _ort_runner(session: ort.InferenceSession, card: ModelCard) -> Runner:
    def run(windows: np.ndarray) -> np.ndarray:
        return session.run([card.output_name], {card.input_name: windows})[0]

    return run


def _openvino_runners(onnx_path: Path, card: ModelCard, count: int, threads: int) -> list[Runner]:
    """OpenVINO CPU runners in fp32 (its CPU plugin would otherwise pick bf16 where the CPU has it)."""
    try:
        import openvino
    except ImportError as exc:
        raise ModelLoadError(
            "backend 'openvino' needs OpenVINO: pip install 'seispick[openvino]' (or use backend 'onnxruntime')"
        ) from exc
    core = openvino.Core()
    config = {
        "INFERENCE_NUM_THREADS": threads,
        "INFERENCE_PRECISION_HINT": "f32",
        "PERFORMANCE_HINT": "LATENCY",
    }
    compiled = core.compile_model(str(onnx_path), "CPU", config)
    output = compiled.output(card.output_name)

    def runner() -> Runner:
        request, lock = compiled.create_infer_request(), threading.Lock()

        def run(windows: np.ndarray) -> np.ndarray:
            with lock:  # an infer request is not thread-safe; copy out before releasing it
                return np.array(request.infer({card.input_name: windows})[output])

        return run

    return [runner() for _ in range(count)]


def load_model_dir(
    folder: str | Path,
    threads: int | None = None,
    prefer_gpu: bool = True,
    verify: bool = True,
    backend: Backend = "onnxruntime",
) -> OnnxModel:
    """Load a model folder (``card.json`` + ONNX file), checking the ONNX file against the card's sha256."""
    if backend not in BACKENDS:
        raise ModelLoadError(f"unknown inference backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    folder = Path(folder)
    card_path = folder / "card.json"
    if not card_path.is_file():
        raise ModelLoadError(f"{folder}: no card.json, so this is not a seispick model folder")
    card = ModelCard.read(card_path)
    onnx_path = folder / card.onnx_file
    if not onnx_path.is_file():
        raise ModelLoadError(f"{folder}: card names {card.onnx_file}, which is missing")
    if verify and card.onnx_sha256:
        actual = sha256_file(onnx_path)
        if actual != card.onnx_sha256:
            raise ModelLoadError(
                f"{onnx_path}: sha256 {actual[:12]}... does not match the card's {card.onnx_sha256[:12]}..."
            )
    threads = threads if threads is not None else _env_threads()
    if backend == "openvino":
        count = 1 if threads else _physical_cores()
        runners = _openvino_runners(onnx_path, card, count, threads or 1)
        log.info("loaded model %s (%s) on OpenVINO CPU (fp32)", card.name, card.onnx_sha256[:12])
        return _with_pool(OnnxModel(card, folder, runners, backend="openvino", device="CPU"))
    session = create_session(onnx_path, threads=threads or 1, prefer_gpu=prefer_gpu)
    provider = session.get_providers()[0]
    log.info("loaded model %s (%s) on %s", card.name, card.onnx_sha256[:12], provider)
    if provider != "CPUExecutionProvider" or threads:
        if threads:  # an explicit thread count: one session using them
            session = create_session(onnx_path, threads=threads, prefer_gpu=prefer_gpu)
        return OnnxModel(card, folder, [_ort_runner(session, card)], device=provider)
    sessions = [session] + [
        create_session(onnx_path, threads=1, prefer_gpu=False) for _ in range(_physical_cores() - 1)
    ]
    return _with_pool(OnnxModel(card, folder, [_ort_runner(one, card) for one in sessions], device=provider))


def _with_pool(model: OnnxModel) -> OnnxModel:
    if len(model.runners) > 1:
        model._pool = ThreadPoolExecutor(len(model.runners), thread_name_prefix=f"infer-{model.name}")
    return model


def _physical_cores() -> int:
    return max(
        1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 8)
    )


def _env_threads() -> int | None:
    value = os.environ.get("SEISPICK_INFERENCE_THREADS")
    return int(value) if value else None
