"""Event and noise samples for detectors, in numpy only (so that `seispick evaluate` needs no torch)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from seispick.training.data.augment import crop
from seispick.training.data.samples import WaveformSample

__all__ = ["coordinates", "detector_noise", "detector_test_samples", "pre_p_noise_samples"]


def coordinates(sample: WaveformSample) -> tuple[float, float] | None:
    """(latitude, longitude) of the sample's source when both are known numbers, else None."""
    lat, lon = sample.source.get("source_latitude"), sample.source.get("source_longitude")
    if isinstance(lat, int | float) and isinstance(lon, int | float) and np.isfinite([lat, lon]).all():
        return float(lat), float(lon)
    return None


def pre_p_noise_samples(
    samples: Sequence[WaveformSample], min_samples: int, margin: int = 100
) -> list[WaveformSample]:
    """Noise-only samples cut from the data before each sample's first pick (less ``margin`` samples), where at
    least ``min_samples`` long; their path gains a ``[pre-P]`` suffix."""
    out = []
    for s in samples:
        picks = [i for _, i in s.picks()]
        end = (min(picks) - margin) if picks else s.n_samples
        if end >= min_samples:
            piece = crop(s, 0, end)
            out.append(piece.replace(path=f"{s.where()}[pre-P]", trace_id=f"{s.trace_id}_noise"))
    return out


def detector_noise(
    samples: Sequence[WaveformSample], window: int, extra: Sequence[WaveformSample] = ()
) -> list[WaveformSample]:
    """Noise records for a detector: noise-only samples, the data before each P, and ``extra`` records."""
    return [s for s in samples if s.is_noise] + pre_p_noise_samples(samples, window) + list(extra)


def detector_test_samples(samples: Sequence[WaveformSample], window: int) -> list[WaveformSample]:
    """Test set for a detector: the event samples, the noise-only samples and noise cut before each P."""
    return [s for s in samples if not s.is_noise] + detector_noise(samples, window)
