"""Stacking of overlapping window predictions into continuous traces (SeisBench's avg and max semantics).

``Stack`` places window outputs on absolute sample positions in any order and hands out samples once they are
final; ``stack_windows`` stacks a whole set of windows at once through it.
"""

from __future__ import annotations

import numpy as np

METHODS = ("avg", "max")


class Stack:
    """Window outputs (classes, window) summed (``avg``) or maxed (``max``) from absolute sample ``start`` on.

    ``avg`` divides each sample's sum (float32, as SeisBench's C stacker) by the number of windows covering
    it; ``max`` keeps the largest value. ``capacity`` pre-allocates that many samples (it grows as needed).
    """

    def __init__(self, n_classes: int, method: str, start: int, capacity: int = 0) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown stacking method {method!r}; use 'avg' or 'max'")
        self.method = method
        self.base = start  # absolute index of column 0
        self._fill = -np.inf if method == "max" else 0.0
        self.sums = np.full((n_classes, capacity), self._fill, dtype=np.float32)
        self.count = np.zeros(capacity, dtype=np.float32)

    def add(self, start: int, output: np.ndarray) -> None:
        """Stack one window's output (classes, window) whose first sample is absolute index ``start``."""
        a = start - self.base
        if a < 0:
            raise ValueError(f"window at {start} starts before the stack's first held sample {self.base}")
        b = a + output.shape[-1]
        if b > self.count.size:
            grow = max(b - self.count.size, self.count.size // 2, output.shape[-1])
            filler = np.full((self.sums.shape[0], grow), self._fill, dtype=np.float32)
            self.sums = np.concatenate([self.sums, filler], axis=1)
            self.count = np.concatenate([self.count, np.zeros(grow, dtype=np.float32)])
        part = self.sums[:, a:b]
        if self.method == "max":
            np.maximum(part, output, out=part)
        else:
            part += output
        self.count[a:b] += 1

    def final(self, start: int, stop: int) -> np.ndarray:
        """Stacked values (classes, stop - start) of absolute samples start..stop, which no window may be added
        to any more: averaged in place, returned as a view (asked once per sample)."""
        a, b = start - self.base, stop - self.base
        part = self.sums[:, a:b]
        if self.method == "avg":
            part /= np.maximum(self.count[a:b], 1)
        return part

    def drop(self, until: int) -> None:
        """Forget samples before absolute index ``until`` (they are final and consumed)."""
        cut = until - self.base
        if cut > 0:
            self.sums, self.count = self.sums[:, cut:], self.count[cut:]
            self.base = until

    @property
    def nbytes(self) -> int:
        return self.sums.nbytes + self.count.nbytes


def stack_windows(
    predictions: np.ndarray, offsets: np.ndarray, n_samples: int, method: str = "avg"
) -> np.ndarray:
    """Combine window predictions (windows, classes, window) placed at ``offsets`` into (classes, n_samples).

    ``avg`` averages every window that covers a sample, ``max`` takes the largest value; samples beyond
    ``n_samples`` (zero padding of a short segment) are dropped.
    """
    n_windows, n_classes, window = predictions.shape
    stack = Stack(n_classes, method, 0, capacity=max(n_samples, int(offsets.max()) + window))
    for prediction, offset in zip(predictions, offsets.tolist()):
        stack.add(offset, prediction)
    return stack.final(0, n_samples)
