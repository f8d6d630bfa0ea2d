"""Synthetic labelled 3-component waveforms (P, S, coda, coloured noise) for tests and pre-training.

Not physics-grade seismograms: band-limited wavelets with realistic polarisation (P strongest on Z, S strongest
on the horizontals), S/P amplitude ratios, S-P times from distance, exponential coda and coloured noise.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy import signal

from seispick.training.data.samples import WaveformSample

__all__ = ["SyntheticConfig", "coloured_noise", "synthetic_event", "synthetic_noise", "synthetic_samples"]

VP_KM_S, VS_KM_S = 6.0, 3.5


@dataclass
class SyntheticConfig:
    """Ranges the generator draws from (uniformly unless said otherwise)."""

    n_samples: int = 6000
    sampling_rate: float = 100.0
    p_window: tuple[float, float] = (0.05, 0.5)  # P onset as a fraction of the trace length
    distance_km: tuple[float, float] = (5.0, 120.0)  # sets the S-P time, about 0.12 s per km
    snr_db: tuple[float, float] = (5.0, 40.0)  # peak P amplitude on Z over noise standard deviation
    s_to_p: tuple[float, float] = (2.0, 8.0)  # peak S (horizontals) over peak P (Z), drawn log-uniformly
    p_band_hz: tuple[tuple[float, float], tuple[float, float]] = (
        (2.0, 4.0),
        (10.0, 15.0),
    )  # low, high corner
    s_band_hz: tuple[tuple[float, float], tuple[float, float]] = ((1.0, 3.0), (6.0, 10.0))
    p_decay_s: tuple[float, float] = (0.5, 2.0)
    coda_decay_s: tuple[float, float] = (2.0, 8.0)
    noise_exponent: tuple[float, float] = (0.5, 2.0)  # noise power spectrum ~ 1 / f**exponent
    s_in_trace: bool = True  # redraw distance so that S falls inside the trace


def coloured_noise(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    exponent: float,
    sampling_rate: float = 100.0,
    corner_hz: float = 0.5,
) -> np.ndarray:
    """Gaussian noise with power spectrum ~ 1/f**exponent (0 white, 1 pink, 2 brown) above ``corner_hz`` and
    flat below it (no drift), unit std along the last axis."""
    n = shape[-1]
    spec = np.fft.rfft(rng.standard_normal(shape), axis=-1)
    freqs = np.maximum(np.fft.rfftfreq(n, d=1.0 / sampling_rate), corner_hz)
    out = np.fft.irfft(spec * freqs ** (-exponent / 2.0), n=n, axis=-1)
    out -= out.mean(axis=-1, keepdims=True)
    std = out.std(axis=-1, keepdims=True)
    return out / np.where(std > 0, std, 1.0)


def _wavelet(
    rng: np.random.Generator, n: int, rate: float, band: tuple[float, float], decay_s: float
) -> np.ndarray:
    """Band-passed noise burst under a fast-rise, exponential-decay envelope, starting at sample 0, peak 1."""
    t = np.arange(n) / rate
    rise = rng.uniform(0.02, 0.15)
    envelope = (1.0 - np.exp(-t / rise)) * np.exp(-t / decay_s)
    low, high = band
    sos = signal.butter(4, [low, min(high, 0.45 * rate)], btype="bandpass", fs=rate, output="sos")
    burst = signal.sosfilt(sos, rng.standard_normal(n))  # causal: nothing before the onset
    out = burst * envelope
    return out / max(np.abs(out).max(), 1e-12)


def _shifted(w: np.ndarray, onset: int, n: int) -> np.ndarray:
    out = np.zeros(n)
    if onset < n:
        out[onset:] = w[: n - onset]
    return out


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(*bounds))


def synthetic_event(rng: np.random.Generator, config: SyntheticConfig | None = None) -> WaveformSample:
    """One earthquake recording, channels Z, N, E, with P/S labels and the drawn parameters in ``source``."""
    cfg = config or SyntheticConfig()
    n, rate = cfg.n_samples, cfg.sampling_rate
    p_index = int(rng.uniform(*cfg.p_window) * n)
    for _ in range(100):
        distance = _uniform(rng, cfg.distance_km)
        s_index = p_index + int(round(distance * (1 / VS_KM_S - 1 / VP_KM_S) * rate))
        if s_index < n or not cfg.s_in_trace:
            break
    else:
        raise ValueError("cannot fit S into the trace: widen p_window or shorten distance_km")
    baz = np.deg2rad(rng.uniform(0, 360))
    incidence = np.deg2rad(rng.uniform(10, 35))
    radial = np.array([np.cos(baz), np.sin(baz)])  # (N, E) unit vector towards the station from the source

    p_band = (_uniform(rng, cfg.p_band_hz[0]), _uniform(rng, cfg.p_band_hz[1]))
    s_band = (_uniform(rng, cfg.s_band_hz[0]), _uniform(rng, cfg.s_band_hz[1]))
    p_wave = _wavelet(rng, n, rate, p_band, _uniform(rng, cfg.p_decay_s))
    p_vec = np.array([np.cos(incidence), *(np.sin(incidence) * radial)])  # Z, N, E
    wave = np.outer(p_vec, _shifted(p_wave, p_index, n)) / p_vec[0]  # peak 1 on Z

    s_to_p = float(np.exp(rng.uniform(*np.log(cfg.s_to_p))))
    sh, sv = (_wavelet(rng, n, rate, s_band, _uniform(rng, cfg.p_decay_s) * 1.5) for _ in range(2))
    sh_amp, sv_amp = rng.uniform(0.5, 1.0), rng.uniform(0.3, 1.0)
    transverse = np.array([-radial[1], radial[0]])
    horizontal = np.outer(transverse, sh_amp * sh) + np.outer(radial, sv_amp * sv * np.cos(incidence))
    s_z = -sv_amp * sv * np.sin(incidence)
    s_part = np.vstack([s_z, horizontal])
    s_part *= s_to_p / max(np.abs(s_part[1:]).max(), 1e-12)
    wave += np.vstack([_shifted(row, s_index, n) for row in s_part])

    decay = _uniform(rng, cfg.coda_decay_s)
    for onset, amp in ((p_index, 0.3), (s_index, 0.3 * s_to_p)):
        coda = np.vstack([_wavelet(rng, n, rate, s_band, decay) for _ in range(3)])
        coda *= amp * rng.uniform(0.5, 1.0, size=(3, 1))
        wave += np.vstack([_shifted(row, onset, n) for row in coda])

    snr_db = _uniform(rng, cfg.snr_db)
    exponent = _uniform(rng, cfg.noise_exponent)
    noise = coloured_noise(rng, (3, n), exponent, rate) * 10 ** (-snr_db / 20.0)
    waveform = (wave + noise).astype(np.float32)
    return WaveformSample(
        waveform=waveform,
        sampling_rate=rate,
        channel_order="ZNE",
        p_index=p_index,
        s_index=s_index if s_index < n else None,
        trace_id=f"synthetic_event_{int(rng.integers(1 << 62)):x}",
        station="XX.SYN",
        start_time=None,
        source={
            "synthetic": True,
            "source_distance_km": distance,
            "back_azimuth_deg": float(np.rad2deg(baz)),
            "snr_db": snr_db,
            "s_to_p": s_to_p,
            "noise_exponent": exponent,
        },
    )


def synthetic_noise(rng: np.random.Generator, config: SyntheticConfig | None = None) -> WaveformSample:
    """A noise-only recording (coloured noise, sometimes with a microseism band), channels Z, N, E, no picks."""
    cfg = config or SyntheticConfig()
    n, rate = cfg.n_samples, cfg.sampling_rate
    exponent = _uniform(rng, cfg.noise_exponent)
    noise = coloured_noise(rng, (3, n), exponent, rate)
    if rng.random() < 0.5:
        sos = signal.butter(2, [0.1, 0.4], btype="bandpass", fs=rate, output="sos")
        pad = int(20 * rate)  # let the filter settle: no transient at the trace start
        micro = signal.sosfilt(sos, rng.standard_normal((3, n + pad)), axis=-1)[:, pad:]
        noise += rng.uniform(0.5, 3.0) * micro / max(micro.std(), 1e-12)
    return WaveformSample(
        waveform=(noise * rng.uniform(0.01, 0.3)).astype(np.float32),
        sampling_rate=rate,
        channel_order="ZNE",
        p_index=None,
        s_index=None,
        trace_id=f"synthetic_noise_{int(rng.integers(1 << 62)):x}",
        station="XX.SYN",
        start_time=None,
        source={"synthetic": True, "noise_exponent": exponent},
    )


def synthetic_samples(
    count: int, seed: int = 0, noise_fraction: float = 0.0, config: SyntheticConfig | None = None
) -> Iterator[WaveformSample]:
    """``count`` samples from one seeded generator; each is noise-only with probability ``noise_fraction``."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        yield synthetic_noise(rng, config) if rng.random() < noise_fraction else synthetic_event(rng, config)
