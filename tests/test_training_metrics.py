"""Pick matching, precision/recall/F1, residuals, and detection ROC AUC on hand-made inputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from obspy import UTCDateTime

from seispick.training.evaluation.scores import (
    Pick,
    detection_scores,
    evaluate_picks,
    match_picks,
    roc_auc,
    roc_curve,
)


def scores_for(predicted, labelled, phase="P", tolerance=0.1):
    (result,) = evaluate_picks(predicted, labelled, tolerances=(tolerance,), phases=(phase,))
    return result


def test_tolerance_boundary_009_counts_011_does_not():
    truth = [Pick("a", "P", 10.0), Pick("b", "P", 20.0)]
    predicted = [Pick("a", "P", 10.09), Pick("b", "P", 19.89)]
    at_01 = scores_for(predicted, truth, tolerance=0.1)
    assert (at_01.tp, at_01.fp, at_01.fn) == (1, 1, 1)
    at_05 = scores_for(predicted, truth, tolerance=0.5)
    assert (at_05.tp, at_05.fp, at_05.fn) == (2, 0, 0)
    exact = scores_for([Pick("a", "P", 10.1)], truth[:1], tolerance=0.1)  # exactly 0.1 s counts
    assert exact.tp == 1


def test_picks_match_only_on_the_same_trace_and_phase():
    truth = [Pick("a", "P", 10.0), Pick("a", "S", 15.0)]
    predicted = [Pick("b", "P", 10.0), Pick("a", "S", 10.0), Pick("a", "P", 15.0)]
    for phase in ("P", "S"):
        result = scores_for(predicted, truth, phase=phase, tolerance=0.5)
        assert (result.tp, result.fp, result.fn) == (0, 2 if phase == "P" else 1, 1)


def test_duplicates_are_false_positives_and_the_closest_prediction_wins():
    truth = [Pick("a", "P", 10.0)]
    predicted = [Pick("a", "P", 10.04), Pick("a", "P", 9.98), Pick("a", "P", 10.08)]
    matched, unmatched_pred, unmatched_true = match_picks(predicted, truth, 0.1, "P")
    assert [p.time for p, _ in matched] == [9.98]
    assert sorted(p.time for p in unmatched_pred) == [10.04, 10.08] and unmatched_true == []
    result = scores_for(predicted, truth)
    assert (result.tp, result.fp, result.fn) == (1, 2, 0)
    assert result.precision == pytest.approx(1 / 3) and result.recall == 1.0


def test_greedy_matching_by_smallest_residual_across_labels():
    # One prediction between two labels: it goes to the nearer label; the other prediction takes the far one.
    truth = [Pick("a", "P", 10.0), Pick("a", "P", 10.3)]
    predicted = [Pick("a", "P", 10.2), Pick("a", "P", 10.05)]
    matched, fp, fn = match_picks(predicted, truth, 0.5, "P")
    assert sorted((p.time, t.time) for p, t in matched) == [(10.05, 10.0), (10.2, 10.3)]
    assert fp == [] and fn == []


def test_known_precision_recall_f1_and_residuals():
    truth = [Pick(f"t{i}", "P", 100.0 + i) for i in range(5)] + [
        Pick(f"t{i}", "S", 200.0 + i) for i in range(4)
    ]
    predicted = [
        Pick("t0", "P", 100.02),
        Pick("t1", "P", 101.06),
        Pick("t2", "P", 101.96),  # -0.04
        Pick("t3", "P", 104.0),  # 1 s off: false positive, and t3's P is missed
        Pick("t9", "P", 50.0),  # no label on t9: false positive
        Pick("t0", "S", 200.3),  # within 0.5 s only
    ]
    results = {(r.phase, r.tolerance): r for r in evaluate_picks(predicted, truth)}
    p01 = results[("P", 0.1)]
    assert (p01.n_true, p01.n_pred, p01.tp, p01.fp, p01.fn) == (5, 5, 3, 2, 2)
    assert p01.precision == pytest.approx(0.6) and p01.recall == pytest.approx(0.6)
    assert p01.f1 == pytest.approx(0.6)
    residuals = np.array([0.02, 0.06, -0.04])
    assert p01.residual_mean == pytest.approx(residuals.mean(), abs=1e-9)
    assert p01.residual_std == pytest.approx(residuals.std(), abs=1e-9)
    assert p01.residual_mae == pytest.approx(np.abs(residuals).mean(), abs=1e-9)
    s01, s05 = results[("S", 0.1)], results[("S", 0.5)]
    assert (s01.tp, s01.fp, s01.fn, s01.precision, s01.recall, s01.f1) == (0, 1, 4, 0.0, 0.0, 0.0)
    assert math.isnan(s01.residual_mean) and s01.to_dict()["residual_mean"] is None
    assert (s05.tp, s05.precision, s05.recall) == (1, 1.0, 0.25)
    assert s05.f1 == pytest.approx(2 * 0.25 / 1.25)
    assert s05.residual_mean == pytest.approx(0.3, abs=1e-9)
    json.dumps([r.to_dict() for r in results.values()], allow_nan=False)


def test_utcdatetime_pick_times_work_too():
    t = UTCDateTime("2020-01-01T00:00:00")
    (result,) = evaluate_picks(
        [Pick("a", "P", t + 0.05)], [Pick("a", "P", t)], tolerances=(0.1,), phases=("P",)
    )
    assert result.tp == 1 and result.residual_mean == pytest.approx(0.05, abs=1e-6)


def test_no_predictions_or_no_labels():
    truth = [Pick("a", "P", 1.0)]
    assert scores_for([], truth).recall == 0.0 and scores_for([], truth).precision == 0.0
    nothing = scores_for(truth, [])
    assert (nothing.tp, nothing.fp, nothing.fn) == (0, 1, 0)


def test_auc_of_a_perfect_an_inverted_and_a_mixed_ranking():
    labels = np.array([0, 0, 0, 1, 1, 1], dtype=bool)
    assert roc_auc([0.1, 0.2, 0.3, 0.7, 0.8, 0.9], labels) == 1.0
    assert roc_auc([0.9, 0.8, 0.7, 0.3, 0.2, 0.1], labels) == 0.0
    # positives at 0.35, 0.8, 0.2 against negatives at 0.1, 0.4, 0.5: 1 + 3 + 1 = 5 of 9 pairs ranked right
    assert roc_auc([0.1, 0.4, 0.5, 0.35, 0.8, 0.2], labels) == pytest.approx(5 / 9)
    assert roc_auc([0.5] * 6, labels) == 0.5  # all tied
    rng = np.random.default_rng(0)
    y = rng.random(4000) < 0.3
    assert roc_auc(rng.random(4000), y) == pytest.approx(0.5, abs=0.03)


def test_auc_equals_the_pairwise_probability_with_ties():
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 5, size=60).astype(float)  # many ties
    labels = rng.random(60) < 0.4
    pos, neg = scores[labels], scores[~labels]
    pairwise = ((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean()
    assert roc_auc(scores, labels) == pytest.approx(pairwise)
    fpr, tpr, thresholds = roc_curve(scores, labels)
    assert fpr[0] == tpr[0] == 0.0 and fpr[-1] == tpr[-1] == 1.0
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0) and np.all(np.diff(thresholds) < 0)


def test_detection_scores_at_a_threshold():
    result = detection_scores([0.9, 0.6, 0.4, 0.2, 0.7], [True, True, True, False, False], threshold=0.5)
    assert (result.tp, result.fp, result.fn, result.n_pos, result.n_neg) == (2, 1, 1, 3, 2)
    assert result.precision == pytest.approx(2 / 3) and result.recall == pytest.approx(2 / 3)
    assert result.auc == pytest.approx(4 / 6)
    one_class = detection_scores([0.9, 0.1], [True, True])
    assert math.isnan(one_class.auc) and one_class.to_dict()["auc"] is None
    with pytest.raises(ValueError, match="both positive and negative"):
        roc_auc([0.1, 0.2], [True, True])
    with pytest.raises(ValueError, match="differ in length"):
        roc_auc([0.1, 0.2, 0.3], [True, False])
