"""Faster inference is an option that must give the reference picks: OpenVINO (fp32) vs onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import obspy
import pytest

from seispick.models.inference import ModelLoadError, load_model_dir
from seispick.models.registry import ModelRegistry
from seispick.picking.annotate import annotate

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


def test_pick_backend_option_writes_the_reference_picks(tmp_path: Path) -> None:
    """`seispick pick --backend openvino` writes the same pick CSV rows as the default onnxruntime."""
    import csv

    from click.testing import CliRunner

    from seispick.cli.pick_cmd import pick

    outputs = {}
    for backend in ("onnxruntime", "openvino"):
        out = tmp_path / f"{backend}.csv"
        result = CliRunner().invoke(pick, [*map(str, REAL[:3]), "--backend", backend, "-q", "-o", str(out)])
        assert result.exit_code == 0, result.output
        with out.open() as handle:
            outputs[backend] = list(csv.DictReader(handle))
    reference, faster = outputs["onnxruntime"], outputs["openvino"]
    assert len(reference) == len(faster) > 0
    for a, b in zip(reference, faster):
        assert (a["trace_id"], a["phase"]) == (b["trace_id"], b["phase"])
        assert abs(obspy.UTCDateTime(a["peak_time"]) - obspy.UTCDateTime(b["peak_time"])) <= 0.01
        assert abs(float(a["probability"]) - float(b["probability"])) <= 0.02


def test_service_setting_selects_the_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """SEISPICK_INFERENCE_BACKEND reaches the loaded models; an unknown engine refuses to start."""
    from seispick.service.api.state import load_models
    from seispick.service.settings import Settings, SettingsError, load_settings

    monkeypatch.setenv("SEISPICK_INFERENCE_BACKEND", "openvino")
    settings = Settings(models=["phasenet-original"])
    assert settings.inference_backend == "openvino"
    models = load_models(ModelRegistry(), settings)
    assert {m.backend for m in models.values()} == {"openvino"}
    monkeypatch.setenv("SEISPICK_INFERENCE_BACKEND", "tensorrt")
    with pytest.raises(SettingsError, match="SEISPICK_INFERENCE_BACKEND"):
        load_settings()
