"""Per-window normalisation, exactly as the model card says the network was trained."""

from __future__ import annotations

import numpy as np

from seispick.models.card import Normalisation


def normalise_windows(windows: np.ndarray, norm: Normalisation) -> np.ndarray:
    """Normalise (batch, channels, samples) windows channel by channel, in float32, in place when possible."""
    x = np.asarray(windows, dtype=np.float32)
    if norm.demean:
        x -= x.mean(axis=-1, keepdims=True)
    if norm.scale == "std":
        scale = x.std(axis=-1, keepdims=True, ddof=norm.ddof)
    elif norm.scale == "peak":
        scale = np.abs(x).max(axis=-1, keepdims=True)
    else:
        return x
    x /= scale + np.float32(norm.eps)
    return x
