"""ConvNetQuake: architecture, ONNX export parity, and deterministic k-means location cells."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from seispick.training.networks.convnetquake import CITATION, ConvNetQuake, assign_cells, location_cells


def test_architecture_follows_perol_et_al_2018():
    model = ConvNetQuake(n_cells=6)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv1d)]
    assert len(convs) == 8
    assert all(
        c.out_channels == 32 and c.kernel_size == (3,) and c.stride == (2,) and c.padding == (1,)
        for c in convs
    )
    assert sum(isinstance(m, torch.nn.ReLU) for m in model.modules()) == 8
    assert model.classifier.in_features == 32 * 4  # 1000 samples halved 8 times -> 4
    assert model.classifier.out_features == 7  # noise + 6 cells
    x = torch.randn(5, 3, 1000)
    logits = model(x)
    assert logits.shape == (5, 7)
    probs = model.predict(x)
    torch.testing.assert_close(probs, torch.softmax(logits, dim=1))
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(5))
    assert "Perol" in CITATION and "10.1126/sciadv.1700578" in CITATION


def test_onnx_export_matches_torch_with_a_dynamic_batch(tmp_path):
    torch.manual_seed(0)
    model = ConvNetQuake(n_cells=4).eval()
    path = tmp_path / "convnetquake.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter announces its deprecation
        torch.onnx.export(
            model,
            (torch.zeros(2, 3, 1000),),
            str(path),
            input_names=["waveforms"],
            output_names=["logits"],
            dynamic_axes={"waveforms": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    assert graph.opset_import[0].version >= 17
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    for batch in (1, 7):
        x = rng.normal(size=(batch, 3, 1000)).astype(np.float32)
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()
        (actual,) = session.run(None, {"waveforms": x})
        assert actual.shape == (batch, 5)
        assert np.abs(actual - expected).max() <= 1e-5


def _epicentres(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.array([[32.5, -116.5], [33.5, -117.5], [34.0, -116.0]])
    points = centres[rng.integers(0, 3, 90)] + rng.normal(scale=0.1, size=(90, 2))
    return points[:, 0], points[:, 1]


def test_location_cells_are_deterministic_and_recover_clusters():
    lat, lon = _epicentres()
    labels, centroids = location_cells(lat, lon, k=3, seed=42)
    again, again_c = location_cells(lat, lon, k=3, seed=42)
    np.testing.assert_array_equal(labels, again)
    np.testing.assert_array_equal(centroids, again_c)
    assert labels.dtype.kind == "i" and set(labels) == {0, 1, 2} and centroids.shape == (3, 2)
    # cells numbered by centroid latitude: the three synthetic clusters in order
    np.testing.assert_allclose(centroids, [[32.5, -116.5], [33.5, -117.5], [34.0, -116.0]], atol=0.05)
    np.testing.assert_array_equal(assign_cells(lat, lon, centroids), labels)
    # another seed may start elsewhere but, with well-separated clusters, ends in the same cells
    np.testing.assert_array_equal(location_cells(lat, lon, k=3, seed=7)[0], labels)


def test_location_cells_reject_impossible_k():
    lat, lon = _epicentres()
    with pytest.raises(ValueError, match="distinct epicentres"):
        location_cells(lat[:2], lon[:2], k=3)
    with pytest.raises(ValueError, match="distinct epicentres"):
        location_cells([33.0] * 5, [-117.0] * 5, k=2)
