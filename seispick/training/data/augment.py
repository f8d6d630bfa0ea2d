"""Augmentations: each takes a sample and a numpy Generator and returns a new sample, picks kept consistent.

Bind parameters with ``functools.partial`` and chain with :class:`Compose`, e.g.::

    pipeline = Compose([partial(random_window, length=3001), (polarity_flip, 0.5), (vertical_only, 0.1)])
    sample = pipeline(sample, rng)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from seispick.training.data.samples import WaveformSample, reorder
from seispick.training.data.synthetic_waveforms import coloured_noise

__all__ = [
    "Augmentation",
    "Compose",
    "add_gap",
    "add_noise",
    "crop",
    "gain",
    "polarity_flip",
    "pre_event_noise",
    "random_window",
    "superpose_event",
    "vertical_only",
]

Augmentation = Callable[[WaveformSample, np.random.Generator], WaveformSample]


def _shift_picks(sample: WaveformSample, offset: int, n: int) -> dict:
    """Pick fields after moving the window start by ``offset`` samples; picks falling outside become None."""

    def move(idx: int | None) -> int | None:
        return None if idx is None or not 0 <= idx - offset < n else idx - offset

    others = [(ph, i - offset) for ph, i in sample.other_picks if 0 <= i - offset < n]
    return {"p_index": move(sample.p_index), "s_index": move(sample.s_index), "other_picks": others}


def crop(sample: WaveformSample, start: int, length: int) -> WaveformSample:
    """Window [start, start + length) of the sample (must lie inside it); picks are re-indexed."""
    if start < 0 or start + length > sample.n_samples:
        raise ValueError(f"{sample.where()}: window {start}..{start + length} outside 0..{sample.n_samples}")
    start_time = None if sample.start_time is None else sample.start_time + start / sample.sampling_rate
    return sample.replace(
        waveform=sample.waveform[:, start : start + length].copy(),
        start_time=start_time,
        **_shift_picks(sample, start, length),
    )


def random_window(
    sample: WaveformSample, rng: np.random.Generator, length: int = 3001, margin: int = 0
) -> WaveformSample:
    """Cut ``length`` samples at a random offset so the first pick lands anywhere in [margin, length - margin).

    The pick position is uniform over what the trace allows, so a model cannot learn a fixed pick position
    (in PhaseNet's NCEDC files P always sits at sample 3000). Noise-only samples get a uniform offset.
    """
    n = sample.n_samples
    if length > n:
        raise ValueError(f"{sample.where()}: trace has {n} samples, window needs {length}")
    lo, hi = 0, n - length
    picks = [i for _, i in sample.picks()]
    if picks:
        first = min(picks)
        lo, hi = max(lo, first - (length - 1 - margin)), min(hi, first - margin)
        if lo > hi:
            raise ValueError(f"{sample.where()}: pick at {first} cannot sit {margin} samples inside a window")
    return crop(sample, int(rng.integers(lo, hi + 1)), length)


def add_noise(
    sample: WaveformSample,
    rng: np.random.Generator,
    level: tuple[float, float] = (0.05, 0.5),
    pool: Sequence[np.ndarray] | None = None,
    exponent: tuple[float, float] = (0.0, 2.0),
) -> WaveformSample:
    """Add noise of std ``level`` (drawn uniformly) times each channel's std.

    With ``pool`` (arrays (channels, m), m >= n: real noise records) a random piece of one record is used;
    otherwise coloured noise with spectral exponent drawn from ``exponent``.
    """
    wave = sample.waveform
    c, n = wave.shape
    if pool:
        record = np.asarray(pool[int(rng.integers(len(pool)))], dtype=np.float64)
        if record.shape[0] != c or record.shape[1] < n:
            raise ValueError(f"noise record of shape {record.shape} cannot cover ({c}, {n})")
        start = int(rng.integers(record.shape[1] - n + 1))
        noise = record[:, start : start + n]
        noise = noise - noise.mean(axis=1, keepdims=True)
        std = noise.std(axis=1, keepdims=True)
        noise = noise / np.where(std > 0, std, 1.0)
    else:
        noise = coloured_noise(rng, (c, n), float(rng.uniform(*exponent)), sample.sampling_rate)
    scale = rng.uniform(*level) * wave.std(axis=1, keepdims=True)
    return sample.replace(waveform=(wave + scale * noise).astype(np.float32))


def pre_event_noise(samples: Sequence[WaveformSample], min_length: int, margin: int = 50) -> list[np.ndarray]:
    """Real noise records for :func:`add_noise`: each sample's data before its first pick (less ``margin``
    samples), or all of a noise-only sample; records shorter than ``min_length`` are left out."""
    pool = []
    for s in samples:
        picks = [i for _, i in s.picks()]
        end = min(picks) - margin if picks else s.n_samples
        if end >= min_length:
            pool.append(s.waveform[:, :end])
    return pool


def gain(
    sample: WaveformSample,
    rng: np.random.Generator,
    low: float = 0.5,
    high: float = 2.0,
    per_channel: bool = False,
) -> WaveformSample:
    """Multiply by a log-uniform factor in [low, high] (one per channel with ``per_channel``)."""
    size = (sample.waveform.shape[0], 1) if per_channel else None
    factor = np.exp(rng.uniform(np.log(low), np.log(high), size=size))
    return sample.replace(waveform=(sample.waveform * factor).astype(np.float32))


def vertical_only(sample: WaveformSample, rng: np.random.Generator | None = None) -> WaveformSample:
    """Zero every channel except Z, as for a vertical-only station."""
    if "Z" not in sample.channel_order.upper():
        raise ValueError(f"{sample.where()}: no Z channel in '{sample.channel_order}'")
    wave = sample.waveform.copy()
    for i, comp in enumerate(sample.channel_order.upper()):
        if comp != "Z":
            wave[i] = 0.0
    return sample.replace(waveform=wave)


def add_gap(
    sample: WaveformSample, rng: np.random.Generator, min_length: int = 10, max_length: int = 500
) -> WaveformSample:
    """Zero one random segment of ``min_length``..``max_length`` samples on all channels (a data gap)."""
    n = sample.n_samples
    length = int(rng.integers(min_length, min(max_length, n) + 1))
    start = int(rng.integers(0, n - length + 1))
    wave = sample.waveform.copy()
    wave[:, start : start + length] = 0.0
    return sample.replace(waveform=wave)


def polarity_flip(sample: WaveformSample, rng: np.random.Generator | None = None) -> WaveformSample:
    """Multiply all channels by -1."""
    return sample.replace(waveform=-sample.waveform)


def superpose_event(
    sample: WaveformSample,
    rng: np.random.Generator,
    pool: Sequence[WaveformSample],
    scale: tuple[float, float] = (0.2, 1.0),
    min_separation: int = 100,
) -> WaveformSample:
    """Add a second event from ``pool`` whose first pick lands at a random sample at least ``min_separation``
    from the existing picks; its amplitude is ``scale`` (uniform) times this sample's peak. Its picks that fall
    in the window go to ``other_picks``, so :func:`~seispick.training.data.labels.sample_labels` labels them too.
    """
    labelled = [s for s in pool if s.p_index is not None or s.s_index is not None]
    if not labelled:
        raise ValueError("superpose_event needs a pool with at least one labelled sample")
    other = reorder(labelled[int(rng.integers(len(labelled)))], sample.channel_order)
    n = sample.n_samples
    first = min(i for _, i in other.picks())
    taken = np.array([i for _, i in sample.picks()])
    candidates = np.arange(n)
    if taken.size:
        candidates = candidates[np.abs(candidates[:, None] - taken[None, :]).min(axis=1) >= min_separation]
    if candidates.size == 0:
        return sample
    shift = int(rng.choice(candidates)) - first  # other's sample i goes to i + shift
    added = np.zeros_like(sample.waveform)
    src_lo, src_hi = max(0, -shift), min(other.n_samples, n - shift)
    if src_hi > src_lo:
        added[:, src_lo + shift : src_hi + shift] = other.waveform[:, src_lo:src_hi]
    peak_other = float(np.abs(other.waveform).max()) or 1.0
    peak_self = float(np.abs(sample.waveform).max()) or 1.0
    factor = rng.uniform(*scale) * peak_self / peak_other
    new_picks = [(ph, i + shift) for ph, i in other.picks() if 0 <= i + shift < n]
    return sample.replace(
        waveform=(sample.waveform + factor * added).astype(np.float32),
        other_picks=list(sample.other_picks) + new_picks,
    )


@dataclass
class Compose:
    """Apply steps in order; a step is an augmentation or (augmentation, probability)."""

    steps: Sequence[Augmentation | tuple[Augmentation, float]]

    def __call__(self, sample: WaveformSample, rng: np.random.Generator) -> WaveformSample:
        for step in self.steps:
            func, prob = step if isinstance(step, tuple) else (step, 1.0)
            if prob >= 1.0 or rng.random() < prob:
                sample = func(sample, rng)
        return sample
