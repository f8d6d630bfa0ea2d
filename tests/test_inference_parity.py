"""The parity bar of faster variants (``seispick.training.evaluation.parity``) on the real recordings of
tests/data/real: P and S F1 within 0.1 s no more than 0.01 below fp32's, 98 % of fp32's picks again within
0.02 s, probabilities within 0.05.

Every int8 variant that ships is held to it (none does: no quantisation reached it, README "Int8"), and so is the
OpenVINO backend (``--backend openvino``, fp32 on OpenVINO's CPU plugin). The bar itself must pass the model
against itself and fail a model that moves its probabilities by as much as int8 did.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
from obspy import UTCDateTime

from seispick.models.inference import OnnxModel
from seispick.models.registry import ModelRegistry
from seispick.picking.annotate import prepare
from seispick.picking.waveforms import read_waveform_file
from seispick.training.evaluation.parity import compare, run_model
from seispick.training.evaluation.scores import Pick
from tests.streams import REAL

BASE = "phasenet-original"


@pytest.fixture(scope="module")
def recordings():
    """The recordings, their analyst picks keyed by recording (times from its start), and their windows."""
    streams = [read_waveform_file(path) for path in sorted(REAL.glob("*.mseed"))]
    with open(REAL / "picks.csv") as handle:
        rows = list(csv.DictReader(handle))
    labels = []
    for i, stream in enumerate(streams):
        start, end = min(tr.stats.starttime for tr in stream), max(tr.stats.endtime for tr in stream)
        station = ".".join(stream[0].id.split(".")[:2])
        for row in rows:
            t = UTCDateTime(row["time"])
            if row["trace_id"].startswith(station + ".") and start <= t <= end:
                labels.append(Pick(str(i), row["phase"], t - start))
    card = ModelRegistry().get(BASE).card
    windows = np.concatenate([prepare(stream, card).windows() for stream in streams])
    return streams, labels, windows


@pytest.fixture(scope="module")
def reference(recordings):
    streams, _, windows = recordings
    return run_model(ModelRegistry().load(BASE, prefer_gpu=False), streams, windows)


def _noisy(model: OnnxModel, level: float) -> OnnxModel:
    rng = np.random.default_rng(0)

    def run(windows: np.ndarray) -> np.ndarray:
        noise = rng.standard_normal(windows.shape).astype(np.float32) * np.float32(level)
        return model.runners[0](np.ascontiguousarray(windows + noise))

    return OnnxModel(model.card, model.path, [run])


def test_the_bar_passes_the_model_itself_and_fails_one_that_moves_its_probabilities(recordings, reference):
    streams, labels, windows = recordings
    assert len(streams) == 32 and len(labels) == 64 and len(reference.picks) > 40
    same = compare(
        reference, run_model(ModelRegistry().load(BASE, prefer_gpu=False), streams, windows), labels
    )
    assert same["passes"] and same["max_dp_stacked"] == 0.0 and same["reproduced_0.02s"] == 1.0
    # noise of 1 % of a window's std moves the probabilities about as far as int8 did: the bar says no
    moved = compare(reference, run_model(_noisy(ModelRegistry().load(BASE), 0.01), streams, windows), labels)
    assert not moved["passes"] and moved["max_dp_windows"] > 0.05


SHIPPED_INT8 = [e.card.name for e in ModelRegistry().entries() if e.shipped and "int8" in e.card.metrics]


@pytest.mark.parametrize(
    "name",
    SHIPPED_INT8
    or [pytest.param(None, marks=pytest.mark.skip(reason="no int8 variant ships (none reached the bar)"))],
)
def test_every_shipped_int8_variant_reaches_the_bar(name, recordings, reference):
    streams, labels, windows = recordings
    model = ModelRegistry().load(name, prefer_gpu=False)
    assert model.card.metrics["int8"]["base"] == BASE
    figures = compare(reference, run_model(model, streams, windows), labels)
    assert figures["passes"], figures


def test_the_openvino_backend_reaches_the_bar(recordings, reference):
    pytest.importorskip("openvino")
    streams, labels, windows = recordings
    model = ModelRegistry().load(BASE, prefer_gpu=False, backend="openvino")
    figures = compare(reference, run_model(model, streams, windows), labels)
    assert figures["passes"], figures
    assert figures["reproduced_0.02s"] == 1.0 and figures["max_dp_windows"] < 1e-3
