"""Window placement on the absolute time grid, as data arrive or for a whole segment.

A window starts where the absolute sample index (round(epoch seconds x rate)) is a multiple of the stride, so
the windows and therefore the picks do not depend on where the data happen to start. The data before the
first grid point are covered by a head window aligned to the segment start, and, once the segment has ended,
the data after the last grid window by a tail window aligned to its end, so no sample goes unannotated. A
segment shorter than the window gets one window at its start (zero-padded).

``WindowPlacement`` places the windows of one segment incrementally (the stream asks as records arrive);
``window_offsets`` is the same placement over a whole segment at once.
"""

from __future__ import annotations

import numpy as np


class WindowPlacement:
    """The windows of one gap-free segment starting at absolute sample ``start``, placed as data arrive."""

    def __init__(self, start: int, window: int, stride: int) -> None:
        if stride <= 0:
            raise ValueError(f"stride must be positive, got {stride}")
        self.start, self.window, self.stride = start, window, stride
        self.next_grid = start + (-start) % stride  # the next grid window to place
        self.head_done = start % stride == 0  # a segment starting on the grid needs no head window
        self.last: int | None = None  # start of the latest window placed
        self.closed_end: int | None = None

    def extend(self, ready_end: int) -> np.ndarray:
        """Absolute starts of the windows data now cover up to ``ready_end`` (exclusive): head and grid."""
        if self.closed_end is not None:
            return np.zeros(0, dtype=np.int64)
        head_due = not self.head_done and ready_end - self.start >= self.window
        if not head_due and self.next_grid > ready_end - self.window:  # most records: no window yet
            return np.zeros(0, dtype=np.int64)
        head = []
        if head_due:
            head, self.head_done = [self.start], True
        grid = np.arange(self.next_grid, ready_end - self.window + 1, self.stride, dtype=np.int64)
        if grid.size:
            self.next_grid = int(grid[-1]) + self.stride
        return self._placed(np.concatenate([np.asarray(head, dtype=np.int64), grid]))

    def close(self, end: int) -> np.ndarray:
        """The segment ends at ``end`` (exclusive): starts of the windows still to place (grid windows not yet
        placed, the head window, the tail window), or the one padded window of a segment shorter than a window."""
        if self.closed_end is not None:
            return np.zeros(0, dtype=np.int64)
        self.closed_end = end
        if end - self.start <= self.window:
            starts = [] if self.last is not None else [self.start]
            return self._placed(np.asarray(starts, dtype=np.int64))
        grid = np.arange(self.next_grid, end - self.window + 1, self.stride, dtype=np.int64)
        starts = grid.tolist()
        if not self.head_done:
            starts.append(self.start)
        last = max([*starts, *([] if self.last is None else [self.last])])
        if last + self.window < end:
            starts.append(end - self.window)
        self.head_done = True
        return self._placed(np.sort(np.asarray(starts, dtype=np.int64)))

    def earliest_future(self, any_end: int) -> int | None:
        """The lowest start a window not yet placed can have (None once closed), data covering up to
        ``any_end``: the next grid window, the head window, or a tail window ending at ``any_end`` or later."""
        if self.closed_end is not None:
            return None
        limit = min(any_end - self.window, self.next_grid)
        return limit if self.head_done else min(limit, self.start)

    def _placed(self, starts: np.ndarray) -> np.ndarray:
        if starts.size:
            self.last = max(int(starts.max()), -1 if self.last is None else self.last)
        return starts


def window_offsets(start_index: int, n_samples: int, window: int, stride: int) -> np.ndarray:
    """Offsets (relative to the segment start) of the windows covering ``n_samples`` from ``start_index``.

    A segment shorter than the window gets a single window at offset 0 (to be zero-padded).
    """
    placement = WindowPlacement(start_index, window, stride)
    return placement.close(start_index + n_samples) - start_index


def cut_windows(data: np.ndarray, offsets: np.ndarray, window: int) -> np.ndarray:
    """Windows (len(offsets), channels, window) cut from ``data`` (channels, samples), zero-padded at the end."""
    need = int(np.max(offsets)) + window if len(offsets) else window
    if data.shape[-1] < need:
        padded = np.zeros(data.shape[:-1] + (need,), dtype=data.dtype)
        padded[..., : data.shape[-1]] = data
        data = padded
    views = np.lib.stride_tricks.sliding_window_view(data, window, axis=-1)  # (channels, positions, window)
    out = np.empty((len(offsets), data.shape[0], window), dtype=np.float32)
    for channel in range(data.shape[0]):
        out[:, channel] = views[channel, offsets]
    return out
