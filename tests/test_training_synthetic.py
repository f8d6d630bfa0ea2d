"""The synthetic generator: seeded, labelled, with P on the vertical, larger S on the horizontals, band-limited."""

from __future__ import annotations

import numpy as np
from scipy import signal

from seispick.training.data.synthetic_waveforms import (
    SyntheticConfig,
    coloured_noise,
    synthetic_event,
    synthetic_noise,
    synthetic_samples,
)
from seispick.training.data.validation import validate_dataset

QUIET = SyntheticConfig(snr_db=(60.0, 60.0), distance_km=(60.0, 100.0))  # S-P of 7-12 s: phases apart


def test_same_seed_same_samples_other_seed_other_samples():
    a = list(synthetic_samples(5, seed=11, noise_fraction=0.4))
    b = list(synthetic_samples(5, seed=11, noise_fraction=0.4))
    c = list(synthetic_samples(5, seed=12, noise_fraction=0.4))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.waveform, y.waveform)
        assert (x.p_index, x.s_index, x.trace_id) == (y.p_index, y.s_index, y.trace_id)
    assert not np.array_equal(a[0].waveform, c[0].waveform)


def test_events_are_valid_labelled_samples_and_noise_has_no_picks():
    samples = list(synthetic_samples(20, seed=0, noise_fraction=0.3))
    events = [s for s in samples if not s.is_noise]
    assert 0 < len(events) < 20
    assert validate_dataset(samples, allow_noise=True) == []
    for s in samples:
        assert s.waveform.shape == (3, 6000) and s.waveform.dtype == np.float32
        assert s.channel_order == "ZNE" and s.sampling_rate == 100.0
    for s in events:
        assert 300 <= s.p_index < 3000 and s.p_index < s.s_index < 6000
    noise = synthetic_noise(np.random.default_rng(1))
    assert noise.p_index is None and noise.s_index is None and noise.is_noise


def test_p_is_strongest_on_z_and_s_is_larger_on_the_horizontals():
    rng = np.random.default_rng(2)
    for _ in range(10):
        s = synthetic_event(rng, QUIET)
        p_win = s.waveform[:, s.p_index : s.p_index + 100]
        s_win = s.waveform[:, s.s_index : s.s_index + 200]
        p_peak, s_peak = np.abs(p_win).max(axis=1), np.abs(s_win).max(axis=1)
        assert p_peak[0] > p_peak[1:].max()  # P: Z above N and E
        assert s_peak[1:].max() > 1.5 * p_peak[0]  # S on the horizontals well above P on Z
        assert s_peak[1:].max() > s_peak[0]  # S: horizontals above Z
        assert np.abs(s.waveform[:, : s.p_index - 5]).max() < 0.01 * p_peak[0]  # nothing before P at 60 dB


def test_onsets_are_band_limited_between_a_few_hz_and_15_hz():
    rng = np.random.default_rng(3)
    for _ in range(5):
        s = synthetic_event(rng, QUIET)
        freqs, power = signal.welch(s.waveform[0, s.p_index : s.p_index + 256], fs=100.0, nperseg=256)
        assert 1.5 <= freqs[np.argmax(power)] <= 15.0
        assert power[freqs > 25].sum() < 0.05 * power.sum()


def test_coloured_noise_has_unit_std_and_the_requested_slope():
    rng = np.random.default_rng(4)
    white, brown = coloured_noise(rng, (3, 8192), 0.0), coloured_noise(rng, (3, 8192), 2.0)
    np.testing.assert_allclose(white.std(axis=1), 1.0, rtol=1e-6)
    freqs, p_white = signal.welch(white, fs=100.0, nperseg=1024)
    _, p_brown = signal.welch(brown, fs=100.0, nperseg=1024)
    low, high = (freqs > 1) & (freqs < 2), (freqs > 20) & (freqs < 40)
    assert 0.3 < p_white[:, low].mean() / p_white[:, high].mean() < 3  # flat
    assert p_brown[:, low].mean() / p_brown[:, high].mean() > 50  # falls ~1/f**2


def test_shorter_windows_fit_s_into_the_trace():
    cfg = SyntheticConfig(n_samples=1000, p_window=(0.1, 0.3), distance_km=(5.0, 40.0))
    for s in synthetic_samples(20, seed=5, config=cfg):
        assert s.n_samples == 1000 and s.s_index is not None and s.s_index < 1000
