"""Stacking of overlapping window predictions into continuous traces (SeisBench's avg and max semantics)."""

from __future__ import annotations

import numpy as np


def stack_windows(
    predictions: np.ndarray, offsets: np.ndarray, n_samples: int, method: str = "avg"
) -> np.ndarray:
    """Combine window predictions (windows, classes, window) placed at ``offsets`` into (classes, n_samples).

    ``avg`` averages every window that covers a sample, ``max`` takes the largest value; samples beyond
    ``n_samples`` (zero padding of a short segment) are dropped.
    """
    n_windows, n_classes, window = predictions.shape
    length = max(n_samples, int(offsets.max()) + window)
    if method == "avg":
        stacked = np.zeros((n_classes, length), dtype=np.float32)  # float32 sums, as SeisBench's C stacker
        count = np.zeros(length, dtype=np.float32)
        for pred, offset in zip(predictions, offsets):
            stacked[:, offset : offset + window] += pred
            count[offset : offset + window] += 1
        stacked /= np.maximum(count, 1)
    elif method == "max":
        stacked = np.full((n_classes, length), -np.inf, dtype=np.float32)
        for pred, offset in zip(predictions, offsets):
            np.maximum(stacked[:, offset : offset + window], pred, out=stacked[:, offset : offset + window])
    else:
        raise ValueError(f"unknown stacking method {method!r}; use 'avg' or 'max'")
    return stacked[:, :n_samples]
