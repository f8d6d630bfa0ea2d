"""ConvNetQuake detection over continuous data (models/detect.py): window merging, the shipped detector on a
pasted event and on pure noise, detector evaluation, and no torch in the runtime path."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import obspy
import pytest

from seispick.models.registry import ModelRegistry
from seispick.picking.detect import SegmentWindows, detect, detections_from_windows, run_detector
from seispick.picking.grouping import StationSegment
from seispick.training.data.datasets import load_dataset
from seispick.training.data.detection_data import pre_p_noise_samples
from seispick.training.data.samples import reorder
from seispick.training.evaluation.evaluate import evaluate, nearest_cells
from tests.streams import DATA

DETECTOR = "convnetquake-ta109c"
START = obspy.UTCDateTime(2021, 3, 4, 5, 6, 7.89)


def fake_windows(event_probability, offsets, window=1000, cells=3) -> SegmentWindows:
    segment = StationSegment("XX.AAA..HH", {"Z": "HHZ"}, 0, 100.0, np.zeros((3, 10_000), np.float32))
    probs = np.zeros((len(offsets), 1 + cells), np.float32)
    probs[:, 0] = 1 - np.asarray(event_probability)
    probs[:, 2] = np.asarray(event_probability)  # cell 1 is the likeliest
    return SegmentWindows(segment, np.asarray(offsets), probs, window)


def test_consecutive_windows_merge_and_gaps_split():
    w = fake_windows([0.1, 0.9, 0.7, 0.2, 0.6, 0.95], [0, 500, 1000, 1500, 2000, 2500])
    found = detections_from_windows(w, 0.5, "m")
    assert len(found) == 2
    first, second = found
    assert first.start_time == obspy.UTCDateTime(5.0) and first.end_time == obspy.UTCDateTime(19.99)
    assert (
        first.probability == pytest.approx(0.9)
        and first.cell == 1
        and first.cell_probability == pytest.approx(0.9)
    )
    assert second.start_time == obspy.UTCDateTime(20.0) and second.probability == pytest.approx(0.95)
    # windows that neither overlap nor touch stay apart even when both are above the threshold
    apart = detections_from_windows(fake_windows([0.9, 0.9], [0, 3000]), 0.5, "m")
    assert len(apart) == 2
    assert detections_from_windows(fake_windows([0.1, 0.2], [0, 500]), 0.5, "m") == []


@pytest.fixture(scope="module")
def detector():
    return ModelRegistry().load(DETECTOR, prefer_gpu=False)


@pytest.fixture(scope="module")
def stead_events():
    return load_dataset(DATA / "stead")


def noise(seconds: float, seed: int, scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * 100)
    spec = np.fft.rfft(rng.standard_normal((3, n)), axis=-1)
    freqs = np.maximum(np.fft.rfftfreq(n, 0.01), 0.5)
    out = np.fft.irfft(spec / freqs**0.5, n=n, axis=-1)
    return (scale * out / out.std()).astype(np.float32)


def stream_of(data: np.ndarray, start: obspy.UTCDateTime = START) -> obspy.Stream:
    return obspy.Stream(
        [
            obspy.Trace(
                row,
                header={
                    "network": "TA",
                    "station": "109C",
                    "channel": f"BH{c}",
                    "sampling_rate": 100.0,
                    "starttime": start,
                },
            )
            for c, row in zip("ENZ", data)
        ]
    )


def test_the_shipped_detector_is_a_convnetquake_card(detector):
    card = detector.card
    assert card.architecture == "convnetquake" and card.task == "detector" and card.window_samples == 1000
    # its location cells did not beat the most frequent cell on held-out events (issue 13): noise/event only,
    # and the card says why
    assert card.labels == ["noise", "event"] and not card.location_cells
    assert "left out" in card.description and "cells" in card.description
    assert 0 < card.overlap_samples < 1000 and "Perol" in card.citation
    assert card.metrics["test"]["n_pos"] > 0 and card.split


def test_pasted_event_is_found_without_a_cell(detector, stead_events):
    event = reorder(stead_events[-1], "ENZ")  # 2007-08-05, in the test split
    data = noise(300, seed=1, scale=float(np.std(event.waveform[:, : event.p_index - 100])) or 1.0)
    at = 12_000
    data[:, at : at + event.n_samples] += event.waveform
    found = detect(stream_of(data), detector)
    p_time = START + (at + event.p_index) / 100.0
    hits = [d for d in found if d.start_time <= p_time <= d.end_time]
    assert hits, [d.as_dict() for d in found]
    hit = hits[0]
    assert hit.probability >= detector.card.default_thresholds["detection"]
    assert hit.cell is None and hit.cell_probability is None  # the shipped card has no cells
    assert hit.trace_id == "TA.109C..BH"


def test_pure_noise_gives_no_detection(detector):
    assert detect(stream_of(noise(600, seed=2)), detector) == []


def test_detect_refuses_a_picker():
    picker = ModelRegistry().load("phasenet-original", prefer_gpu=False)
    with pytest.raises(ValueError, match="not a detector"):
        detect(stream_of(noise(30, seed=3)), picker)


def test_windows_follow_the_absolute_grid(detector):
    run = run_detector(stream_of(noise(60, seed=4)), detector)
    (windows,) = run.windows
    stride = detector.card.stride_samples
    starts = [windows.segment.start_index + o for o in windows.offsets]
    assert all(s % stride == 0 for s in starts[1:-1]) and windows.probabilities.shape[1] == len(
        detector.card.labels
    )


def test_detector_evaluation_on_events_and_pre_p_noise(detector, stead_events):
    ncedc = load_dataset(DATA / "ncedc")
    samples = stead_events + pre_p_noise_samples(ncedc, 1000)
    report = evaluate(detector, samples)
    assert report["task"] == "detector" and report["n_events"] == 4 and report["n_noise"] == 4
    det = report["detection"]
    assert det["recall"] >= 0.75 and det["precision"] >= 0.75 and det["auc"] >= 0.75
    assert report["cells"]["n_cells"] == 0  # no cells to score (the card says why)


def test_nearest_cells_by_great_circle():
    cells = [{"latitude": 32.0, "longitude": -117.0}, {"latitude": 33.0, "longitude": -116.0}]
    assert nearest_cells([32.1, 32.9], [-117.1, -116.2], cells).tolist() == [0, 1]


def test_the_runtime_path_imports_no_torch():
    code = "import sys, seispick.picking.detect, seispick.picking.annotate; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_detections_record_by_record_equal_detect(detector, stead_events):
    """The stream's core detects with the detector too: records in, the batch detections out, each once."""
    from seispick.picking.incremental import InstrumentPicker

    event = reorder(stead_events[-1], "ENZ")
    data = noise(400, seed=5, scale=float(np.std(event.waveform[:, : event.p_index - 100])) or 1.0)
    for at in (9_000, 21_000):
        data[:, at : at + event.n_samples] += event.waveform
    stream = stream_of(data)
    expected = detect(stream, detector)
    assert len(expected) >= 2

    card = detector.card
    start = int(round(START.timestamp * 100))
    picker = InstrumentPicker(
        "TA.109C..BH", card, detector.name, detector.sha256, time_offset=START.timestamp - start / 100
    )
    got, waiting = [], []
    for k in range(0, data.shape[1], 512):  # records of 512 samples, the three components in turn
        for comp in range(3):
            requests, done = picker.add(comp, start + k, data[comp, k : k + 512], now=0.0)
            got += done
            waiting += requests
        if len(waiting) >= 3:  # outputs come back late and out of order
            outputs = detector.predict(np.stack([r.window for r in waiting]))
            for r, out in reversed(list(zip(waiting, outputs))):
                got += picker.result(r.start, out)
            waiting = []
    requests, done = picker.close()
    got += done
    waiting += requests
    outputs = detector.predict(np.stack([r.window for r in waiting]))
    for r, out in zip(waiting, outputs):
        got += picker.result(r.start, out)
    assert picker.pending == 0 and picker.stats.picks == 0
    assert [d.as_dict() for d in got] == [d.as_dict() for d in expected]
