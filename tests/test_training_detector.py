"""ConvNetQuake training: the unknown-cell loss, cell balancing, windows around P, and a tiny end-to-end run
that exports a detector the runtime can use."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from seispick.models.inference import load_model_dir
from seispick.training.data.detection_data import (
    UNKNOWN_CELL,
    DetectionWindows,
    EventExample,
    pre_p_noise_samples,
)
from seispick.training.data.inputs import DataSplit
from seispick.training.data.splits import Split
from seispick.training.data.synthetic_waveforms import SyntheticConfig, synthetic_samples
from seispick.training.export.cards import convnetquake_card
from seispick.training.fitting.config import RunConfig, TrainConfig
from seispick.training.fitting.train_detector import (
    DetectorOptions,
    balance_cells,
    best_threshold,
    cells_for,
    detection_loss,
    train_convnetquake,
)

CENTRES = [(32.2, -117.4), (32.8, -116.1), (33.5, -116.9)]


def test_unknown_cell_events_train_only_the_event_probability():
    class Fixed(torch.nn.Module):
        def __init__(self, logits):
            super().__init__()
            self.logits = torch.tensor(logits)

        def forward(self, x):
            return self.logits

    model = Fixed([[0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 2.0, 3.0]])
    x = torch.zeros(2, 3, 10)
    logp = torch.log_softmax(model.logits, dim=1)
    known = detection_loss(model, (x, torch.tensor([2, 2])))
    assert known.item() == pytest.approx(-logp[0, 2].item())
    unknown = detection_loss(model, (x, torch.tensor([UNKNOWN_CELL, UNKNOWN_CELL])))
    assert unknown.item() == pytest.approx(-math.log(1 - logp[0, 0].exp().item()), rel=1e-5)
    noise = detection_loss(model, (x, torch.tensor([0, 0])))
    assert noise.item() == pytest.approx(-logp[0, 0].item())


def test_small_cells_are_repeated():
    sample = next(synthetic_samples(1))
    examples = (
        [EventExample(sample, 1)] * 6 + [EventExample(sample, 2)] * 2 + [EventExample(sample, UNKNOWN_CELL)]
    )
    balanced = balance_cells(examples)
    targets = [e.target for e in balanced]
    assert targets.count(1) == 6 and targets.count(2) == 6 and targets.count(UNKNOWN_CELL) == 1


def test_best_threshold_prefers_the_higher_of_equal_f1():
    assert best_threshold([0.9, 0.8, 0.2, 0.1], [True, True, False, False], [0.3, 0.5, 0.7])[0] == 0.7


def located_events(n: int, seed: int):
    rng = np.random.default_rng(seed)
    samples = list(
        synthetic_samples(n, seed=seed, config=SyntheticConfig(n_samples=3000, p_window=(0.3, 0.6)))
    )
    for i, s in enumerate(samples):
        lat, lon = CENTRES[i % 3]
        s.source.update(source_latitude=lat + rng.normal(0, 0.05), source_longitude=lon + rng.normal(0, 0.05))
        s.station = "TA.109C"
    return samples


def test_event_windows_put_p_in_the_trained_range_and_noise_is_cut_before_p():
    events = [EventExample(s, 1) for s in located_events(3, seed=1)]
    noise = pre_p_noise_samples([e.sample for e in events], 1000)
    assert noise and all(n.is_noise and n.n_samples >= 1000 for n in noise)
    data = DetectionWindows(
        events, noise, 1000, "ENZ", convnetquake_card("x", CENTRES).normalisation, p_range=(50, 550)
    )
    for i in range(data.n_event_items):
        piece, target = data.item_window(i)
        assert target == 1 and 50 <= piece.p_index <= 550
    piece, target = data.item_window(len(data) - 1)
    assert target == 0 and piece.is_noise


def test_tiny_convnetquake_run_exports_a_working_detector(tmp_path):
    events = located_events(18, seed=2)
    noise = list(synthetic_samples(6, seed=3, noise_fraction=1.0, config=SyntheticConfig(n_samples=3000)))
    split = DataSplit()
    split.add(
        "synthetic", Split(events[:12] + noise[:4], events[12:15] + noise[4:5], events[15:] + noise[5:], {})
    )
    centroids = cells_for(split.train, 3)
    assert centroids.shape == (3, 2)
    card = convnetquake_card("cnq-tiny", [tuple(c) for c in centroids])
    cfg = TrainConfig(epochs=1, batch_size=16, windows_per_sample=2, val_windows_per_sample=1)
    run = train_convnetquake(split, card, centroids, RunConfig(tmp_path / "run", cfg, progress=False))
    model = load_model_dir(run.model_dir)
    assert model.card.labels == ["noise", "cell_0", "cell_1", "cell_2"]
    assert model.card.metrics["onnx_vs_torch_max_abs_diff"] <= 1e-5
    assert 0.3 <= model.card.default_thresholds["detection"] <= 0.95
    assert run.test_report["n_events"] == 3 and run.test_report["cells"]["n_located"] == 3
    out = model.predict(np.random.default_rng(0).standard_normal((2, 3, 1000)).astype(np.float32))
    assert out.shape == (2, 4) and np.allclose(out.sum(axis=1), 1.0, atol=1e-5)


def test_cells_need_enough_located_events():
    from seispick.training.data.validation import DatasetError

    with pytest.raises(DatasetError, match="at least 3 training events with source coordinates"):
        cells_for(list(synthetic_samples(5)), 3)


def _tiny_split():
    events = located_events(18, seed=2)
    noise = list(synthetic_samples(6, seed=3, noise_fraction=1.0, config=SyntheticConfig(n_samples=3000)))
    split = DataSplit()
    split.add(
        "synthetic", Split(events[:12] + noise[:4], events[12:15] + noise[4:5], events[15:] + noise[5:], {})
    )
    return split


def test_cells_that_do_not_beat_the_majority_are_dropped_and_the_card_says_so(tmp_path):
    from seispick.training.fitting.train import export_checkpoint

    split = _tiny_split()
    centroids = cells_for(split.train, 3)
    card = convnetquake_card("cnq-check", [tuple(c) for c in centroids])
    cfg = TrainConfig(epochs=1, batch_size=16, windows_per_sample=2, val_windows_per_sample=1)
    run = train_convnetquake(
        split,
        card,
        centroids,
        RunConfig(tmp_path / "run", cfg, progress=False),
        DetectorOptions(check_cells=True),
    )
    verdict = run.card.metrics["cells"]
    # 3 located validation events are too few to show that cells work, whatever the accuracy
    assert verdict["n_located_validation"] == 3 and verdict["supported"] is False
    assert "fewer than 5 located validation events" in verdict["reason"]
    model = load_model_dir(run.model_dir)
    assert model.card.labels == ["noise", "event"] and model.card.location_cells is None
    assert "dropped" in model.card.description
    out = model.predict(np.random.default_rng(0).standard_normal((2, 3, 1000)).astype(np.float32))
    assert out.shape == (2, 2) and np.allclose(out.sum(axis=1), 1.0, atol=1e-5)
    assert math.isnan(run.test_report["cells"]["accuracy"])
    exported = export_checkpoint(run.checkpoint_dir, tmp_path / "again")
    assert exported.labels == ["noise", "event"]
    assert load_model_dir(tmp_path / "again").predict(np.zeros((1, 3, 1000), np.float32)).shape == (1, 2)
    assert (tmp_path / "again" / "LICENSE").is_file() and (run.model_dir / "LICENSE").is_file()


def test_a_detector_without_cells(tmp_path):
    split = _tiny_split()
    card = convnetquake_card("cnq-plain", [])
    assert card.labels == ["noise", "event"] and card.location_cells is None
    cfg = TrainConfig(epochs=1, batch_size=16, windows_per_sample=2, val_windows_per_sample=1)
    run = train_convnetquake(split, card, np.zeros((0, 2)), RunConfig(tmp_path / "run", cfg, progress=False))
    model = load_model_dir(run.model_dir)
    assert model.card.labels == ["noise", "event"]
    assert run.test_report["n_events"] == 3 and run.test_report["cells"]["n_cells"] == 0
