"""ConvNetQuake training windows: event windows around P with location-cell targets, and noise windows.

Targets: 0 noise, k + 1 an event in cell k, and :data:`UNKNOWN_CELL` (-1) an event whose epicentre is not known
(e.g. PhaseNet's NCEDC files): such windows train only the event/noise decision (the loss is the negative log
of the summed cell probabilities), never a made-up cell.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch.utils.data import Dataset

from seispick.models.card import Normalisation
from seispick.picking.preprocess import normalise_windows
from seispick.training.data.augment import Compose, add_noise, crop, gain, pre_event_noise, vertical_only
from seispick.training.data.detector_samples import coordinates, pre_p_noise_samples
from seispick.training.data.samples import WaveformSample, reorder

__all__ = [
    "UNKNOWN_CELL",
    "DetectionWindows",
    "EventExample",
    "amplitude_modulation",
    "coordinates",
    "pre_p_noise_samples",
]

UNKNOWN_CELL = -1


@dataclass
class EventExample:
    """A labelled event recording and its class target (cell + 1, or :data:`UNKNOWN_CELL`)."""

    sample: WaveformSample
    target: int


def amplitude_modulation(
    sample: WaveformSample, rng: np.random.Generator, depth: tuple[float, float] = (0.5, 4.0)
) -> WaveformSample:
    """Multiply by a slowly varying envelope (1 + depth * smooth bump), as of wind or traffic noise."""
    n = sample.n_samples
    t = np.arange(n) / n
    centre, width = rng.uniform(0, 1), rng.uniform(0.05, 0.5)
    bump = np.exp(-0.5 * ((t - centre) / width) ** 2)
    envelope = 1.0 + rng.uniform(*depth) * bump
    return sample.replace(waveform=(sample.waveform * envelope).astype(np.float32))


class DetectionWindows(Dataset):
    """(normalised window, target) pairs: ``windows_per_event`` windows per event and ``noise_ratio`` times as
    many noise windows, cut at random from ``noise`` records; drawn afresh every epoch from (seed, epoch, i).

    An event window puts P uniformly within ``p_range`` samples of the window start (0.5 s to 0.5 s plus the
    detector's window stride, so that on the runtime's grid every event has a window like that).
    """

    def __init__(
        self,
        events: Sequence[EventExample],
        noise: Sequence[WaveformSample],
        window: int,
        channel_order: str,
        normalisation: Normalisation,
        windows_per_event: int = 1,
        noise_ratio: float = 1.0,
        p_range: tuple[int, int] = (50, 600),
        seed: int = 0,
        augment: bool = False,
    ) -> None:
        self.events = [EventExample(reorder(e.sample, channel_order), e.target) for e in events]
        self.noise = [reorder(s, channel_order) for s in noise if s.n_samples >= window]
        if not self.events or not self.noise:
            raise ValueError(
                f"need event and noise recordings ({len(self.events)} events, {len(self.noise)} noise)"
            )
        self.window, self.normalisation, self.p_range = window, normalisation, p_range
        self.seed, self.epoch = seed, 0
        self.n_event_items = len(self.events) * windows_per_event
        self.n_noise_items = int(round(self.n_event_items * noise_ratio))
        pool = [s.waveform for s in self.noise] + pre_event_noise([e.sample for e in self.events], window)
        self.event_augment = (
            Compose(
                [
                    (partial(add_noise, pool=pool, level=(0.05, 0.7)), 0.4),
                    (partial(gain, per_channel=True), 0.2),
                    (vertical_only, 0.05),
                ]
            )
            if augment
            else None
        )
        self.noise_augment = (
            Compose(
                [(amplitude_modulation, 0.3), (partial(gain, per_channel=True), 0.2), (vertical_only, 0.05)]
            )
            if augment
            else None
        )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n_event_items + self.n_noise_items

    def targets(self) -> np.ndarray:
        """Target of every item (they do not change between epochs)."""
        events = [self.events[i % len(self.events)].target for i in range(self.n_event_items)]
        return np.asarray(events + [0] * self.n_noise_items, dtype=np.int64)

    def item_window(self, index: int) -> tuple[WaveformSample, int]:
        """Item ``index`` as a raw window sample and its target."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if index < self.n_event_items:
            example = self.events[index % len(self.events)]
            s = example.sample
            p = s.p_index if s.p_index is not None else min(i for _, i in s.picks())
            lo, hi = max(0, p - self.p_range[1]), min(s.n_samples - self.window, p - self.p_range[0])
            offset = (
                int(rng.integers(lo, hi + 1))
                if lo <= hi
                else int(np.clip(p - self.p_range[0], 0, s.n_samples - self.window))
            )
            piece = crop(s, offset, self.window)
            if self.event_augment is not None:
                piece = self.event_augment(piece, rng)
            return piece, example.target
        record = self.noise[(index - self.n_event_items) % len(self.noise)]
        offset = int(rng.integers(0, record.n_samples - self.window + 1))
        piece = crop(record, offset, self.window)
        if self.noise_augment is not None:
            piece = self.noise_augment(piece, rng)
        return piece, 0

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        piece, target = self.item_window(index)
        x = normalise_windows(piece.waveform[None].astype(np.float32), self.normalisation)[0]
        return torch.from_numpy(np.ascontiguousarray(x)), torch.tensor(target, dtype=torch.int64)
