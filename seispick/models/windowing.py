"""Window placement on the absolute time grid.

A window starts where the absolute sample index (round(epoch seconds x rate)) is a multiple of the stride, so
the windows and therefore the picks do not depend on where the data happen to start. The data before the
first grid point are covered by a window aligned to the data start, and the data after the last grid window
by one aligned to the data end, so no sample goes unannotated.
"""

from __future__ import annotations

import numpy as np


def window_offsets(start_index: int, n_samples: int, window: int, stride: int) -> np.ndarray:
    """Offsets (relative to the segment start) of the windows covering ``n_samples`` from ``start_index``.

    A segment shorter than the window gets a single window at offset 0 (to be zero-padded).
    """
    if stride <= 0:
        raise ValueError(f"stride must be positive, got {stride}")
    if n_samples <= window:
        return np.zeros(1, dtype=np.int64)
    first = (-start_index) % stride
    offsets = np.arange(first, n_samples - window + 1, stride, dtype=np.int64)
    extra = []
    if offsets.size == 0 or offsets[0] > 0:
        extra.append(0)
    last = offsets[-1] if offsets.size else 0
    if last + window < n_samples:
        extra.append(n_samples - window)
    if extra:
        offsets = np.unique(np.concatenate([offsets, np.asarray(extra, dtype=np.int64)]))
    return offsets


def cut_windows(data: np.ndarray, offsets: np.ndarray, window: int) -> np.ndarray:
    """Windows (len(offsets), channels, window) cut from ``data`` (channels, samples), zero-padded at the end."""
    if data.shape[-1] < window:
        padded = np.zeros(data.shape[:-1] + (window,), dtype=data.dtype)
        padded[..., : data.shape[-1]] = data
        data = padded
    views = np.lib.stride_tricks.sliding_window_view(data, window, axis=-1)  # (channels, positions, window)
    out = np.empty((len(offsets), data.shape[0], window), dtype=np.float32)
    for channel in range(data.shape[0]):
        out[:, channel] = views[channel, offsets]
    return out
