"""Checks run on a dataset before training, with messages that name the offending file."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from seispick.training.data.samples import WaveformSample

__all__ = ["DatasetError", "validate_dataset", "check_dataset"]

MAX_LISTED = 20


class DatasetError(ValueError):
    """A dataset cannot be used for training; ``problems`` lists every reason found."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems if problems is not None else [message]


def _sample_problems(sample: WaveformSample, allow_noise: bool, n_channels: int) -> list[str]:
    where = sample.where()
    problems = []
    wave = np.asarray(sample.waveform)
    if wave.ndim != 2:
        return [f"{where}: waveform has shape {wave.shape}, expected (channels, samples)"]
    n_chan, n = wave.shape
    if n_chan != len(sample.channel_order) or n_chan != n_channels:
        problems.append(
            f"{where}: mismatched channel count: waveform has {n_chan} channels, channel order "
            f"'{sample.channel_order}' names {len(sample.channel_order)}, expected {n_channels}"
        )
    if n == 0:
        problems.append(f"{where}: waveform has no samples")
    if not np.isfinite(sample.sampling_rate) or sample.sampling_rate <= 0:
        problems.append(f"{where}: invalid sampling rate {sample.sampling_rate}")
    n_nan = int(np.isnan(wave).sum())
    n_inf = int(np.isinf(wave).sum())
    if n_nan or n_inf:
        problems.append(f"{where}: waveform contains {n_nan} NaN and {n_inf} Inf values")
    picks = sample.picks()
    if not picks and not allow_noise:
        problems.append(f"{where}: unlabelled trace (no P and no S pick)")
    for phase, idx in picks:
        if not 0 <= idx < n:
            problems.append(f"{where}: {phase} label at sample {idx} lies outside the trace (0..{n - 1})")
    if sample.p_index is not None and sample.s_index is not None and sample.s_index < sample.p_index:
        problems.append(
            f"{where}: S label (sample {sample.s_index}) before P label (sample {sample.p_index})"
        )
    return problems


def validate_dataset(
    samples: Iterable[WaveformSample], *, allow_noise: bool = False, n_channels: int = 3
) -> list[str]:
    """List every problem that makes ``samples`` unfit for training (empty list when fine).

    Checked: an empty dataset, channel count vs. channel order (and ``n_channels``), empty waveforms, sampling
    rate, NaN/Inf values, unlabelled traces (unless ``allow_noise``), labels outside the trace, S before P.
    """
    problems: list[str] = []
    count = 0
    for sample in samples:
        count += 1
        problems.extend(_sample_problems(sample, allow_noise, n_channels))
    if count == 0:
        problems.append("dataset contains no samples")
    return problems


def check_dataset(
    samples: Iterable[WaveformSample], *, allow_noise: bool = False, n_channels: int = 3
) -> list[WaveformSample]:
    """Return ``samples`` as a list, or raise :class:`DatasetError` listing the problems found."""
    samples = list(samples)
    problems = validate_dataset(samples, allow_noise=allow_noise, n_channels=n_channels)
    if problems:
        shown = problems[:MAX_LISTED]
        more = len(problems) - len(shown)
        text = f"{len(problems)} problem(s) in dataset:\n  " + "\n  ".join(shown)
        if more:
            text += f"\n  ... and {more} more"
        raise DatasetError(text, problems)
    return samples
