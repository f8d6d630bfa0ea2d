"""Label targets and augmentations: shapes and invariants."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from obspy import UTCDateTime

from seispick.training.data.augment import (
    Compose,
    add_gap,
    add_noise,
    crop,
    gain,
    polarity_flip,
    pre_event_noise,
    random_window,
    superpose_event,
    vertical_only,
)
from seispick.training.data.labels import LabelConfig, make_labels, pick_label, sample_labels
from seispick.training.data.samples import WaveformSample
from seispick.training.data.synthetic_waveforms import SyntheticConfig, synthetic_event, synthetic_noise


@pytest.fixture
def event() -> WaveformSample:
    return synthetic_event(np.random.default_rng(0), SyntheticConfig(n_samples=6000, p_window=(0.3, 0.4)))


def ncedc_like(p: int = 3000, s: int = 3300, n: int = 9001) -> WaveformSample:
    wave = np.random.default_rng(1).normal(size=(3, n)).astype(np.float32)
    return WaveformSample(wave, 100.0, "ENZ", p, s, "NC_X", "NC.X", UTCDateTime(2020, 1, 1))


# --- labels -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["gaussian", "triangle"])
def test_labels_are_n_p_s_rows_summing_to_one(shape):
    cfg = LabelConfig(sigma=20, shape=shape)
    labels = make_labels(3001, [1000], [1500], cfg)
    assert labels.shape == (3, 3001) and labels.dtype == np.float32
    assert labels[1].argmax() == 1000 and labels[2].argmax() == 1500
    assert labels[1, 1000] == 1.0 and labels[0, 1000] == 0.0 and labels[0, 0] == 1.0
    overlapping = make_labels(3001, [1000], [1030], cfg)  # P + S would exceed 1: both scaled down
    for lab in (labels, overlapping):
        np.testing.assert_allclose(lab.sum(axis=0), 1.0, atol=1e-6)
        assert lab.min() >= 0 and lab.max() <= 1
    assert overlapping[1, 1000] > overlapping[2, 1000] and overlapping[2, 1030] > overlapping[1, 1030]


def test_label_width_follows_sigma():
    gauss = pick_label(201, 100, sigma=10)
    assert gauss[100] == 1.0
    assert gauss[110] == pytest.approx(np.exp(-0.5), rel=1e-6)  # one sigma away
    tri = pick_label(201, 100, sigma=10, shape="triangle")
    assert tri[110] == pytest.approx(0.5) and tri[120] == 0.0 and tri[119] > 0
    tail = pick_label(100, -5, sigma=10)  # a pick just before the window still shows its tail
    assert 0.8 < tail[0] < 1
    with pytest.raises(ValueError):
        pick_label(10, 5, shape="box")


def test_sample_labels_include_other_picks_and_noise_is_all_noise(event):
    labels = sample_labels(event.replace(other_picks=[("P", 5000)]), LabelConfig(sigma=10))
    assert labels[1, event.p_index] == 1.0 and labels[1, 5000] == 1.0 and labels[2, event.s_index] == 1.0
    noise = sample_labels(synthetic_noise(np.random.default_rng(0)))
    assert (noise[0] == 1).all() and not noise[1:].any()


# --- augmentations -------------------------------------------------------------------------------------------------


def test_random_window_moves_the_pick_which_stays_labelled():
    sample = ncedc_like()  # P always at 3000 in the NCEDC files
    rng = np.random.default_rng(0)
    positions = []
    for _ in range(50):
        w = random_window(sample, rng, length=3001, margin=100)
        assert w.waveform.shape == (3, 3001)
        assert 100 <= w.p_index < 2901
        offset = 3000 - w.p_index
        np.testing.assert_array_equal(w.waveform, sample.waveform[:, offset : offset + 3001])
        assert w.start_time == sample.start_time + offset / 100.0
        assert w.s_index == (3300 - offset if 3300 - offset < 3001 else None)
        positions.append(w.p_index)
    assert len(set(positions)) > 40 and np.ptp(positions) > 2000


def test_random_window_rejects_impossible_requests():
    with pytest.raises(ValueError, match="window needs"):
        random_window(ncedc_like(n=2000), np.random.default_rng(0), length=3001)
    with pytest.raises(ValueError, match="outside"):
        crop(ncedc_like(), 8000, 3001)


def test_polarity_flip_and_gain(event):
    flipped = polarity_flip(event, np.random.default_rng(0))
    np.testing.assert_array_equal(flipped.waveform, -event.waveform)
    assert (flipped.p_index, flipped.s_index) == (event.p_index, event.s_index)
    scaled = gain(event, np.random.default_rng(0), 0.5, 2.0)
    ratio = scaled.waveform[0, event.p_index + 20] / event.waveform[0, event.p_index + 20]
    assert 0.5 <= ratio <= 2.0 and ratio != pytest.approx(1.0)
    np.testing.assert_allclose(scaled.waveform, event.waveform * ratio, rtol=1e-5, atol=1e-7)


def test_vertical_only_zeroes_the_horizontals_whatever_the_order():
    enz = ncedc_like()
    z = vertical_only(enz, np.random.default_rng(0))
    assert not z.waveform[:2].any()
    np.testing.assert_array_equal(z.waveform[2], enz.waveform[2])
    assert enz.waveform[:2].any()  # the input is not modified
    with pytest.raises(ValueError, match="no Z"):
        vertical_only(enz.replace(channel_order="EN1"))


def test_gap_zeroes_one_segment(event):
    gapped = add_gap(event, np.random.default_rng(3), min_length=200, max_length=200)
    zero_cols = np.flatnonzero(~gapped.waveform.any(axis=0))
    assert len(zero_cols) == 200 and np.all(np.diff(zero_cols) == 1)
    changed = np.flatnonzero((gapped.waveform != event.waveform).any(axis=0))
    assert set(changed) <= set(zero_cols)


def test_add_noise_coloured_and_from_a_pool(event):
    rng = np.random.default_rng(4)
    noisy = add_noise(event, rng, level=(0.5, 0.5))
    added = noisy.waveform - event.waveform
    np.testing.assert_allclose(added.std(axis=1), 0.5 * event.waveform.std(axis=1), rtol=1e-3)
    pool = [np.tile(np.sin(np.arange(7000) / 3.0), (3, 1))]
    from_pool = add_noise(event, rng, level=(1.0, 1.0), pool=pool)
    added = from_pool.waveform - event.waveform
    corr = np.corrcoef(added[0], np.sin(np.arange(6000) / 3.0))[0, 1]
    assert abs(corr) > 0.5  # a shifted piece of the same sinusoid
    with pytest.raises(ValueError, match="cannot cover"):
        add_noise(event, rng, pool=[np.zeros((3, 100))])


def test_pre_event_noise_stops_before_the_first_pick(event):
    noise = synthetic_noise(np.random.default_rng(0))
    early = event.replace(p_index=100, s_index=400)
    pool = pre_event_noise([event, noise, early], min_length=1000, margin=50)
    assert [p.shape[1] for p in pool] == [event.p_index - 50, 6000]  # `early` has only 50 samples before P
    np.testing.assert_array_equal(pool[0], event.waveform[:, : event.p_index - 50])
    window = add_noise(
        random_window(event, np.random.default_rng(1), length=1000), np.random.default_rng(2), pool=pool
    )
    assert window.waveform.shape == (3, 1000)


def test_superposed_event_adds_energy_and_labels(event):
    quiet = SyntheticConfig(p_window=(0.05, 0.1), snr_db=(60.0, 60.0))
    other = synthetic_event(np.random.default_rng(9), quiet)
    mixed = superpose_event(event, np.random.default_rng(5), [other], scale=(0.5, 0.5), min_separation=300)
    assert (mixed.p_index, mixed.s_index) == (event.p_index, event.s_index)
    assert mixed.other_picks and mixed.other_picks[0][0] == "P"
    new_p = mixed.other_picks[0][1]
    assert min(abs(new_p - event.p_index), abs(new_p - event.s_index)) >= 300
    diff = mixed.waveform - event.waveform
    assert np.abs(diff[:, : new_p - 1]).max() < 0.01 * np.abs(diff[:, new_p : new_p + 300]).max()
    assert sample_labels(mixed)[1, new_p] == 1.0
    assert np.abs(diff).max() == pytest.approx(0.5 * np.abs(event.waveform).max(), rel=1e-4)


def test_compose_applies_steps_with_their_probabilities(event):
    pipeline = Compose([partial(random_window, length=3001), (polarity_flip, 0.5), (vertical_only, 0.0)])
    rng = np.random.default_rng(6)
    outs = [pipeline(event, rng) for _ in range(40)]
    assert all(o.waveform.shape == (3, 3001) and o.p_index is not None for o in outs)
    assert all(o.waveform[1:].any() for o in outs)  # probability 0: never vertical-only
    signs = set()
    for o in outs:
        offset = event.p_index - o.p_index
        original = event.waveform[:, offset : offset + 3001]
        signs.add(
            1 if np.array_equal(o.waveform, original) else -1 if np.array_equal(o.waveform, -original) else 0
        )
    assert signs == {1, -1}
    a = [
        Compose([partial(random_window, length=3001)])(event, np.random.default_rng(1)).p_index
        for _ in range(2)
    ]
    assert a[0] == a[1]  # seeded
