"""Fine-tuning with distillation from the base, and the blocked time folds used to choose fine-tuning settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from obspy import UTCDateTime

from seispick.training.data.folds import time_folds
from seispick.training.data.inputs import load_split
from seispick.training.data.samples import sample_time
from seispick.training.data.synthetic_waveforms import synthetic_samples
from seispick.training.evaluation.scores import Pick
from seispick.training.export.convert import load_original_phasenet
from seispick.training.fitting.config import RunConfig, TrainConfig
from seispick.training.fitting.crossval import FoldResult
from seispick.training.fitting.distill import blend_targets
from seispick.training.fitting.train import FinetuneOptions, finetune_phasenet
from tests.streams import DATA

WEIGHTS = DATA / "phasenet_original" / "weights.npz"


def _probs(batch: int, n: int, seed: int) -> torch.Tensor:
    return torch.softmax(torch.from_numpy(np.random.default_rng(seed).normal(size=(batch, 3, n))), dim=1)


def test_blend_targets_weights_and_phases():
    labels, teacher = _probs(2, 50, 0), _probs(2, 50, 1)
    torch.testing.assert_close(blend_targets(labels, teacher, 0.0, "PS"), labels)
    torch.testing.assert_close(blend_targets(labels, teacher, 1.0, "PS"), teacher)
    only_s = blend_targets(labels, teacher, 0.5, "S")
    s_blend = 0.5 * labels[:, 2] + 0.5 * teacher[:, 2]
    fits = labels[:, 1] + s_blend <= 1.0
    assert fits.any() and (~fits).any()
    torch.testing.assert_close(only_s[:, 1][fits], labels[:, 1][fits])
    torch.testing.assert_close(only_s[:, 2][fits], s_blend[fits])
    # where P and the blended S overlap by more than 1 both are scaled down, as in make_labels
    torch.testing.assert_close((only_s[:, 1] + only_s[:, 2])[~fits], torch.ones_like(s_blend[~fits]))
    ratio = (only_s[:, 1] / only_s[:, 2])[~fits]
    torch.testing.assert_close(ratio, (labels[:, 1] / s_blend)[~fits])
    torch.testing.assert_close(only_s.sum(dim=1), torch.ones(2, 50, dtype=only_s.dtype))
    assert (only_s >= 0).all()


def test_blend_targets_rejects_bad_settings():
    labels = _probs(1, 10, 0)
    with pytest.raises(ValueError, match="weight"):
        blend_targets(labels, labels, 1.5, "S")
    with pytest.raises(ValueError, match="phases"):
        blend_targets(labels, labels, 0.5, "N")
    with pytest.raises(ValueError, match="distill_phases"):
        TrainConfig(distill_weight=0.5, distill_phases="X")


def _drift(tmp_path, name: str, distill_weight: float) -> float:
    """Mean absolute change of the output probabilities on the validation windows after one epoch."""
    split = load_split([DATA / "stead"], "time", (0.5, 0.25, 0.25))
    cfg = TrainConfig(
        epochs=1, batch_size=4, lr=3e-3, windows_per_sample=2, val_windows_per_sample=1, patience=1,
        weight_decay=0.0, freeze_batchnorm=True, distill_weight=distill_weight,
    )  # fmt: skip
    cfg.min_delta = -1.0  # keep the epoch-1 weights whatever the validation loss
    options = FinetuneOptions(name=name, score_base=False)
    run = finetune_phasenet(split, WEIGHTS, RunConfig(tmp_path / name, cfg, progress=False), options)
    from seispick.training.data.picking_data import PickingWindows
    from seispick.training.fitting.checkpoint import load_checkpoint

    tuned, meta = load_checkpoint(run.checkpoint_dir)
    base = load_original_phasenet(WEIGHTS).eval()
    data = PickingWindows(split.val, 3000, "ENZ", meta.card.normalisation, seed=1)
    x = torch.stack([data[i][0] for i in range(len(data))])
    with torch.no_grad():
        return float((tuned.eval()(x) - base(x)).abs().mean())


def test_full_distillation_keeps_the_base_outputs_where_labels_move_them(tmp_path):
    plain = _drift(tmp_path, "plain", 0.0)
    distilled = _drift(tmp_path, "distilled", 1.0)
    assert plain > 1e-3
    assert distilled < 0.25 * plain, (distilled, plain)


def _timed(n: int):
    samples = list(synthetic_samples(n, seed=2))
    start = UTCDateTime(2020, 1, 1)
    order = np.random.default_rng(0).permutation(n)  # files come in any order
    for k, s in zip(order, samples):
        s.source["origin_time"] = str(start + 3600 * int(k))
    return samples


def test_time_folds_are_chronological_blocks_each_tested_once():
    samples = _timed(23)
    folds = time_folds(samples, 5)
    assert len(folds) == 5
    tested = [s for f in folds for s in f.test]
    assert sorted(id(s) for s in tested) == sorted(id(s) for s in samples)
    assert [len(f.test) for f in folds] == [5, 5, 5, 4, 4]
    for i, fold in enumerate(folds):
        assert fold.val is folds[(i + 1) % 5].test or fold.val == folds[(i + 1) % 5].test
        ids = [{id(s) for s in part} for part in (fold.train, fold.val, fold.test)]
        assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
        assert len(fold.train) + len(fold.val) + len(fold.test) == 23
        times = [sample_time(s) for s in fold.test]
        assert times == sorted(times)
    assert max(sample_time(s) for s in folds[0].test) < min(sample_time(s) for s in folds[1].test)


def test_time_folds_refuse_too_few_folds_or_samples():
    with pytest.raises(ValueError, match="at least 3"):
        time_folds(_timed(10), 2)
    with pytest.raises(ValueError, match="cannot make"):
        time_folds(_timed(3), 4)


def test_pooled_fold_scores_count_every_fold():
    truth = [Pick("0/a", "P", 1.0), Pick("1/a", "P", 1.0)]  # same trace key, different folds
    predicted = [Pick("0/a", "P", 1.05), Pick("1/a", "P", 1.3)]
    scores = FoldResult("x", predicted, truth).scores()
    assert scores["P@0.1s"]["tp"] == 1 and scores["P@0.1s"]["fn"] == 1 and scores["P@0.5s"]["tp"] == 2
