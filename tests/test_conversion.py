"""The original PhaseNet: conversion checked against an independent numpy forward of the TF graph, and ONNX."""

from __future__ import annotations

import numpy as np
import obspy
import pytest

torch = pytest.importorskip("torch")

from seispick.picking.preprocess import normalise_windows  # noqa: E402
from seispick.training.export.convert import load_original_phasenet  # noqa: E402
from seispick.training.export.onnx_export import export_onnx, onnx_parity  # noqa: E402
from seispick.training.networks import tf_reference  # noqa: E402
from tests.streams import DATA, REAL  # noqa: E402

WEIGHTS = DATA / "phasenet_original" / "weights.npz"


def real_windows(n: int = 6) -> np.ndarray:
    """(n, 3, 3000) E,N,Z windows around real P arrivals."""
    windows = []
    for path in sorted(REAL.glob("B*.mseed"))[:n]:
        st = obspy.read(str(path))
        windows.append(np.stack([st.select(component=c)[0].data[500:3500] for c in "ENZ"]).astype(np.float64))
    return np.array(windows)


@pytest.fixture(scope="module")
def original():
    return load_original_phasenet(WEIGHTS)


def test_torch_conversion_matches_numpy_tf_forward(original):
    weights = dict(np.load(WEIGHTS))
    worst = 0.0
    for window in real_windows():
        x = tf_reference.normalise(window.T)
        expected = tf_reference.forward(x, weights)
        with torch.no_grad():
            actual = original(torch.from_numpy(x.T[None].astype(np.float32)))[0].numpy().T
        assert expected[:, 1].max() > 0.5, "a real P window should give a confident P probability"
        worst = max(worst, float(np.abs(expected - actual).max()))
    assert worst <= 1e-4


def test_onnx_export_matches_torch(original, tmp_path):
    x = normalise_windows(real_windows(), normalise_default())
    path = export_onnx(original, tmp_path / "m.onnx", x.shape)
    assert onnx_parity(original, path, x) <= 1e-5


def test_shipped_onnx_matches_numpy_tf_forward(shipped_model):
    """The ONNX file we ship, run through the models/ runtime, reproduces the TF graph on real windows."""
    weights = dict(np.load(WEIGHTS))
    windows = real_windows()
    ours = shipped_model.predict(normalise_windows(windows.copy(), shipped_model.card.normalisation))
    for window, out in zip(windows, ours):
        expected = tf_reference.forward(tf_reference.normalise(window.T), weights)
        assert np.abs(expected - out.T).max() <= 1e-4


def test_shipped_card_describes_the_original(shipped_model):
    card = shipped_model.card
    assert (card.window_samples, card.channel_order, card.labels) == (3000, "ENZ", ["N", "P", "S"])
    assert card.sampling_rate == 100.0 and "MIT" in card.licence and "Zhu" in card.citation
    assert card.metrics["tf_reference_max_abs_diff"] <= 1e-4


def normalise_default():
    from seispick.models.card import Normalisation

    return Normalisation(ddof=0)
