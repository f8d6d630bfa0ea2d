"""PyTorch dataset of picking windows: random placement, augmentation, soft labels, the runtime's normalisation.

Windows are drawn afresh every epoch from a generator seeded by (seed, epoch, index), so a run is
reproducible with any number of workers and any batch order. Normalisation is
``seispick.picking.preprocess.normalise_windows`` with the model card's settings: the network is trained on
exactly what the runtime will feed it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np
import torch
from torch.utils.data import Dataset

from seispick.models.card import Normalisation
from seispick.picking.preprocess import normalise_windows
from seispick.training.data.augment import (
    Compose,
    add_gap,
    add_noise,
    crop,
    gain,
    polarity_flip,
    pre_event_noise,
    superpose_event,
    vertical_only,
)
from seispick.training.data.labels import LabelConfig, sample_labels
from seispick.training.data.samples import WaveformSample, reorder

__all__ = ["PickingWindows", "place_window", "training_augmentation"]


def place_window(
    sample: WaveformSample,
    rng: np.random.Generator,
    length: int,
    margin: int = 20,
    p_weight: float = 0.6,
    edge_probability: float = 0.0,
) -> WaveformSample:
    """Cut ``length`` samples so that one pick (P with probability ``p_weight`` when both exist) lies uniformly
    in [margin, length - margin); the other pick may fall outside, so S-only windows occur as in continuous
    data. Noise-only samples get a uniform offset; samples shorter than ``length`` are zero-padded at the end.

    With ``edge_probability`` the window is instead aligned with the start or the end of the record, as the
    runtime aligns one window with each end of every record it annotates (tapers and filter transients at
    record edges then are seen as noise).
    """
    if sample.n_samples < length:
        wave = np.zeros((sample.waveform.shape[0], length), dtype=np.float32)
        wave[:, : sample.n_samples] = sample.waveform
        sample = sample.replace(waveform=wave)
    n = sample.n_samples
    lo, hi = 0, n - length
    if edge_probability and rng.random() < edge_probability:
        return crop(sample, 0 if rng.random() < 0.5 else hi, length)
    picks = sample.picks()
    if picks:
        p_picks = [i for ph, i in picks if ph == "P"]
        s_picks = [i for ph, i in picks if ph != "P"]
        if p_picks and s_picks:
            pool = p_picks if rng.random() < p_weight else s_picks
        else:
            pool = p_picks or s_picks
        anchor = pool[int(rng.integers(len(pool)))]
        a, b = max(lo, anchor - (length - 1 - margin)), min(hi, anchor - margin)
        if a <= b:
            lo, hi = a, b
    return crop(sample, int(rng.integers(lo, hi + 1)), length)


def training_augmentation(samples: Sequence[WaveformSample], length: int, strength: float = 1.0) -> Compose:
    """Augmentations applied after windowing (a second event is superposed before): real or coloured noise,
    per-channel gain, vertical-only, gaps and polarity flips; ``strength`` scales every probability."""
    pool = pre_event_noise(samples, min_length=length)
    p = lambda x: min(1.0, x * strength)  # noqa: E731
    return Compose(
        [
            (partial(add_noise, pool=pool or None), p(0.3)),
            (partial(gain, low=0.5, high=2.0, per_channel=True), p(0.2)),
            (vertical_only, p(0.05)),
            (add_gap, p(0.05)),
            (polarity_flip, p(0.5)),
        ]
    )


class PickingWindows(Dataset):
    """(normalised window, soft N/P/S labels) pairs drawn from labelled samples.

    ``len`` is ``len(samples) * windows_per_sample``; item i uses sample ``i % len(samples)``. A window is placed
    around S instead of P with ``s_window_probability`` (records with both), and the S target has std
    ``s_label_sigma`` samples (default ``label_sigma``). ``extra`` samples
    (e.g. other stations replayed while fine-tuning) add ``extra_windows`` windows per epoch, spread evenly over
    them.
    """

    def __init__(
        self,
        samples: Sequence[WaveformSample],
        window: int,
        channel_order: str,
        normalisation: Normalisation,
        label_sigma: float = 10.0,
        windows_per_sample: int = 1,
        s_label_sigma: float | None = None,
        s_window_probability: float = 0.4,
        seed: int = 0,
        augment: bool = False,
        superpose_probability: float = 0.1,
        edge_probability: float = 0.1,
        extra: Sequence[WaveformSample] = (),
        extra_windows: int = 0,
    ) -> None:
        if not samples:
            raise ValueError("no samples to draw windows from")
        self.samples = [reorder(s, channel_order) for s in samples]
        self.extra = [reorder(s, channel_order) for s in extra]
        self.extra_windows = extra_windows if self.extra else 0
        self.window = window
        self.normalisation = normalisation
        self.labels = LabelConfig(sigma=label_sigma, s_sigma=s_label_sigma)
        self.p_weight = 1.0 - s_window_probability
        self.windows_per_sample = windows_per_sample
        self.seed = seed
        self.epoch = 0
        self.augment = training_augmentation(self.samples, window) if augment else None
        self.superpose_probability = superpose_probability if augment else 0.0
        self.edge_probability = edge_probability

    def set_epoch(self, epoch: int) -> None:
        """Draw the windows of ``epoch`` (validation sets keep epoch 0 and so the same windows)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples) * self.windows_per_sample + self.extra_windows

    def sample_window(self, index: int) -> WaveformSample:
        """The (augmented) window of item ``index`` as a sample, before normalisation."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        own = len(self.samples) * self.windows_per_sample
        if index < own:
            sample = self.samples[index % len(self.samples)]
        else:  # a fresh choice of extra samples every epoch
            sample = self.extra[int(rng.integers(len(self.extra)))]
        if self.superpose_probability and rng.random() < self.superpose_probability:
            sample = superpose_event(sample, rng, self.samples)
        sample = place_window(
            sample, rng, self.window, p_weight=self.p_weight, edge_probability=self.edge_probability
        )
        if self.augment is not None:
            sample = self.augment(sample, rng)
        return sample

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        sample = self.sample_window(index)
        x = normalise_windows(sample.waveform[None].astype(np.float32), self.normalisation)[0]
        y = sample_labels(sample, self.labels)
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)
