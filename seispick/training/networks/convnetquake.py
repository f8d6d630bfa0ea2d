"""ConvNetQuake (Perol et al. 2018): event detection and location-cell classification on 10 s windows.

Input (batch, 3, 1000): 10 s of 3-component data at 100 Hz. Eight convolutions (32 channels, kernel 3,
stride 2, padding 1, ReLU) shrink 1000 samples to 4; a fully connected layer maps the 128 features to
1 + K classes: class 0 is noise, class k (1..K) an event in location cell k - 1 of :func:`location_cells`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn
from scipy.cluster.vq import ClusterError, kmeans2

CITATION = (
    "Perol, T., Gharbi, M., & Denolle, M. (2018). Convolutional neural network for earthquake detection and "
    "location. Science Advances, 4(2), e1700578. https://doi.org/10.1126/sciadv.1700578"
)

WINDOW_SAMPLES = 1000
SAMPLING_RATE = 100.0
NOISE_CLASS = 0

__all__ = [
    "CITATION",
    "SAMPLING_RATE",
    "WINDOW_SAMPLES",
    "ConvNetQuake",
    "MergeCells",
    "assign_cells",
    "location_cells",
]


class ConvNetQuake(nn.Module):
    """ConvNetQuake classifier; ``forward`` returns logits (batch, 1 + n_cells)."""

    def __init__(
        self,
        n_cells: int = 6,
        in_channels: int = 3,
        n_samples: int = WINDOW_SAMPLES,
        n_layers: int = 8,
        filters: int = 32,
    ):
        super().__init__()
        if n_cells < 1:
            raise ValueError(f"n_cells must be >= 1, got {n_cells}")
        self.n_cells, self.in_channels, self.n_samples = n_cells, in_channels, n_samples
        layers: list[nn.Module] = []
        channels, length = in_channels, n_samples
        for _ in range(n_layers):
            layers += [nn.Conv1d(channels, filters, kernel_size=3, stride=2, padding=1), nn.ReLU()]
            channels, length = filters, (length - 1) // 2 + 1
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(filters * length, n_cells + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (batch, 1 + n_cells) for input (batch, in_channels, n_samples)."""
        return self.classifier(torch.flatten(self.features(x), 1))

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities (softmax over logits); column 0 is noise."""
        return torch.softmax(self(x), dim=1)

    def probability_model(self, merge_cells: bool = False) -> nn.Module:
        """This network followed by softmax, e.g. to export an ONNX model that outputs probabilities; with
        ``merge_cells`` the cells are summed into one event class (output: noise, event)."""
        return nn.Sequential(self, nn.Softmax(dim=1), *([MergeCells()] if merge_cells else []))


class MergeCells(nn.Module):
    """(batch, 1 + K) class probabilities -> (batch, 2): noise and any event, for a detector without cells."""

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        return torch.stack([p[:, 0], 1.0 - p[:, 0]], dim=1)


def _unit_vectors(latitudes: Sequence[float], longitudes: Sequence[float]) -> np.ndarray:
    lat = np.deg2rad(np.asarray(latitudes, dtype=np.float64))
    lon = np.deg2rad(np.asarray(longitudes, dtype=np.float64))
    if lat.shape != lon.shape or lat.ndim != 1:
        raise ValueError("latitudes and longitudes must be 1-D and of equal length")
    return np.column_stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])


def _to_degrees(xyz: np.ndarray) -> np.ndarray:
    xyz = xyz / np.linalg.norm(xyz, axis=1, keepdims=True)
    return np.column_stack([np.rad2deg(np.arcsin(xyz[:, 2])), np.rad2deg(np.arctan2(xyz[:, 1], xyz[:, 0]))])


def location_cells(
    latitudes: Sequence[float], longitudes: Sequence[float], k: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster epicentres into ``k`` cells by k-means (k-means++ start, seeded).

    Points are clustered as unit vectors on the sphere (chord distance grows with great-circle distance).
    Returns ``labels`` (n,) int in 0..k-1 and ``centroids`` (k, 2) as (latitude, longitude) in degrees; cells are
    numbered by increasing centroid latitude, then longitude. The ConvNetQuake class of an event is label + 1.
    """
    xyz = _unit_vectors(latitudes, longitudes)
    if not 1 <= k <= len(np.unique(xyz.round(12), axis=0)):
        raise ValueError(f"k = {k} needs 1..{len(xyz)} distinct epicentres")
    rng = np.random.default_rng(seed)
    try:
        try:
            centroids, labels = kmeans2(xyz, k, iter=100, minit="++", missing="raise", rng=rng)
        except TypeError:  # scipy < 1.15 names the generator `seed`
            centroids, labels = kmeans2(xyz, k, iter=100, minit="++", missing="raise", seed=rng)
    except ClusterError as exc:
        raise ValueError(f"k-means left a cell empty with k = {k}; try fewer cells or another seed") from exc
    degrees = _to_degrees(centroids)
    order = np.lexsort((degrees[:, 1], degrees[:, 0]))
    relabel = np.empty(k, dtype=np.int64)
    relabel[order] = np.arange(k)
    return relabel[labels], degrees[order]


def assign_cells(
    latitudes: Sequence[float], longitudes: Sequence[float], centroids: np.ndarray
) -> np.ndarray:
    """Index of the nearest cell centroid (by great-circle distance) for each epicentre."""
    xyz = _unit_vectors(latitudes, longitudes)
    cxyz = _unit_vectors(centroids[:, 0], centroids[:, 1])
    return np.argmax(xyz @ cxyz.T, axis=1).astype(np.int64)
