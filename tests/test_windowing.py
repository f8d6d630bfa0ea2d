"""Window placement on the absolute grid, stacking and pick extraction units."""

from __future__ import annotations

import numpy as np
import pytest

from seispick.picking.results import picks_from_probabilities
from seispick.picking.stacking import stack_windows
from seispick.picking.windowing import cut_windows, window_offsets


def covered(offsets, n, window):
    mask = np.zeros(n, bool)
    for o in offsets:
        mask[o : o + window] = True
    return mask.all()


@pytest.mark.parametrize("start", [0, 1, 1499, 1500, 1501, 123456789])
@pytest.mark.parametrize("n", [3000, 3001, 4500, 10_000, 360_000])
def test_windows_on_grid_cover_everything(start, n):
    offsets = window_offsets(start, n, 3000, 1500)
    assert covered(offsets, n, 3000)
    assert offsets.min() == 0 and offsets.max() == max(n - 3000, 0)
    inner = offsets[(offsets > 0) & (offsets < n - 3000)]
    assert np.all((start + inner) % 1500 == 0), "interior windows start on the absolute grid"


def test_short_segment_gets_one_padded_window():
    assert window_offsets(10, 1200, 3000, 1500).tolist() == [0]
    data = np.arange(2 * 1200, dtype=np.float32).reshape(2, 1200)
    windows = cut_windows(data, np.array([0]), 3000)
    assert (
        windows.shape == (1, 2, 3000)
        and windows[0, 1, 1199] == data[1, -1]
        and windows[0, 0, 1200:].sum() == 0
    )


def test_stacking_avg_and_max():
    preds = np.stack([np.full((1, 4), 1.0), np.full((1, 4), 3.0)]).astype(np.float32)
    avg = stack_windows(preds, np.array([0, 2]), 6, "avg")
    assert avg[0].tolist() == [1, 1, 2, 2, 3, 3]
    mx = stack_windows(preds, np.array([0, 2]), 6, "max")
    assert mx[0].tolist() == [1, 1, 3, 3, 3, 3]
    with pytest.raises(ValueError, match="stacking"):
        stack_windows(preds, np.array([0, 2]), 6, "median")


def test_pick_is_peak_of_triggered_interval():
    probs = np.zeros((3, 100), np.float32)
    probs[1, 40:50] = [0.2, 0.4, 0.6, 0.9, 0.7, 0.5, 0.3, 0.2, 0.1, 0.0]
    picks = picks_from_probabilities(
        probs, lambda i: 1000 + i / 100, ["N", "P", "S"], {"P": 0.5, "S": 0.5}, "X.Y..HH", "m"
    )
    assert len(picks) == 1
    pick = picks[0]
    assert (
        pick.phase == "P"
        and abs(pick.peak_time.timestamp - 1000.43) < 1e-6
        and pick.probability == pytest.approx(0.9)
    )
    assert abs(pick.start_time.timestamp - 1000.42) < 1e-6  # first sample >= threshold
    assert abs(pick.end_time.timestamp - 1000.46) < 1e-6  # last sample >= threshold / 2
