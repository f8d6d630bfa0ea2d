"""Training targets for phase picking: soft P and S labels around the picks, noise as the remainder."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from seispick.training.data.samples import WaveformSample

__all__ = ["LabelConfig", "CLASSES", "pick_label", "make_labels", "sample_labels"]

CLASSES = ("N", "P", "S")  # row order of the label array: noise, P, S (as PhaseNet's output)


@dataclass
class LabelConfig:
    """Shape of the soft label: ``"gaussian"`` with std ``sigma`` samples, or ``"triangle"`` of half-width
    ``2 * sigma`` samples (same support as the Gaussian's +/- 2 sigma). ``s_sigma`` gives S its own width
    (default ``sigma``): analyst S picks scatter more than P picks."""

    sigma: float = 10.0
    shape: str = "gaussian"
    s_sigma: float | None = None

    def width(self, row: int) -> float:
        """Sigma of label row ``row`` (1 = P, 2 = S)."""
        return self.s_sigma if row == 2 and self.s_sigma is not None else self.sigma


def pick_label(n: int, index: float, sigma: float = 10.0, shape: str = "gaussian") -> np.ndarray:
    """(n,) float32 label peaking at 1 on ``index`` (which may lie outside 0..n-1: only the tail shows)."""
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    x = np.arange(n, dtype=np.float64) - index
    if shape == "gaussian":
        y = np.exp(-0.5 * (x / sigma) ** 2)
    elif shape == "triangle":
        y = np.clip(1.0 - np.abs(x) / (2.0 * sigma), 0.0, None)
    else:
        raise ValueError(f"unknown label shape {shape!r} (gaussian or triangle)")
    return y.astype(np.float32)


def make_labels(
    n: int,
    p_indices: Iterable[float | None] = (),
    s_indices: Iterable[float | None] = (),
    config: LabelConfig | None = None,
) -> np.ndarray:
    """(3, n) float32 targets in order N, P, S.

    P (and S) is the maximum of the per-pick labels; where P + S exceeds 1 (overlapping picks) both are scaled
    down so that P + S = 1. Noise is 1 - P - S, so every column sums to 1.
    """
    cfg = config or LabelConfig()
    out = np.zeros((3, n), dtype=np.float32)
    for row, indices in ((1, p_indices), (2, s_indices)):
        for idx in indices:
            if idx is not None:
                np.maximum(out[row], pick_label(n, idx, cfg.width(row), cfg.shape), out=out[row])
    total = out[1] + out[2]
    over = total > 1.0
    out[1:, over] /= total[over]
    out[0] = np.clip(1.0 - out[1] - out[2], 0.0, 1.0)
    return out


def sample_labels(sample: WaveformSample, config: LabelConfig | None = None) -> np.ndarray:
    """Targets for a sample: its P and S picks plus ``other_picks`` (e.g. a superposed second event)."""
    picks = sample.picks()
    return make_labels(
        sample.n_samples,
        [i for phase, i in picks if phase == "P"],
        [i for phase, i in picks if phase == "S"],
        config,
    )
