"""Faster inference is an option that must give the reference picks: OpenVINO (fp32) vs onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import obspy
import pytest

from seispick.models.annotate import annotate
from seispick.models.registry import ModelRegistry
from seispick.models.runtime import ModelLoadError, load_model_dir

REAL = sorted((Path(__file__).parent / "data" / "real").glob("*.mseed"))
MODELS = ("phasenet-original", "phasenet-ta109c")


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    return ModelRegistry()


@pytest.mark.parametrize("name", MODELS)
def test_openvino_gives_the_reference_picks_on_real_traces(registry: ModelRegistry, name: str) -> None:
    reference = registry.load(name)
    openvino = registry.load(name, backend="openvino")
    assert openvino.backend == "openvino" and reference.backend == "onnxruntime"
    n_picks = 0
    for path in REAL:
        stream = obspy.read(str(path))
        ours, theirs = annotate(stream, openvino), annotate(stream.copy(), reference)
        assert len(ours.picks) == len(theirs.picks), path.name
        for a, b in zip(ours.picks, theirs.picks):
            assert (a.trace_id, a.phase) == (b.trace_id, b.phase)
            assert abs(a.peak_time - b.peak_time) <= 0.01, (path.name, a, b)
            assert abs(a.probability - b.probability) <= 0.02, (path.name, a, b)
        n_picks += len(theirs.picks)
        for x, y in zip(ours.annotations, theirs.annotations):
            assert np.abs(x.probabilities - y.probabilities).max() < 1e-4
    assert n_picks >= len(REAL)  # the traces hold events: the comparison is not vacuous


def test_openvino_splits_a_batch_like_onnxruntime(registry: ModelRegistry) -> None:
    model = registry.load("phasenet-original", backend="openvino")
    windows = np.random.default_rng(3).standard_normal((9, 3, model.card.window_samples)).astype(np.float32)
    whole = np.concatenate([model.predict(windows[i : i + 1]) for i in range(len(windows))])
    np.testing.assert_allclose(model.predict(windows), whole, atol=1e-6)


def test_unknown_backend_is_refused(registry: ModelRegistry) -> None:
    with pytest.raises(ModelLoadError, match="unknown inference backend 'tensorrt'"):
        load_model_dir(registry.get("phasenet-original").folder, backend="tensorrt")  # type: ignore[arg-type]
