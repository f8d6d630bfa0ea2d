"""PhaseNet (Zhu & Beroza 2019) in PyTorch, with SeisBench's layer names so its state_dicts load as they are.

Two padding variants share every weight:

- ``"seisbench"``: 3001-sample windows, the manual paddings of ``seisbench.models.PhaseNet``.
- ``"tf"``: 3000-sample windows, TensorFlow "same" padding of the original PhaseNet (strided convolutions pad
  ``total // 2`` before and the rest after), so the original checkpoint gives the original probabilities.

Transposed convolutions are cropped as TF's "same" transposed convolution does (drop 1 sample before, keep
``stride * n``), then centre-cropped onto the skip connection, in both variants.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

CITATION = (
    "Zhu, W., & Beroza, G. C. (2019). PhaseNet: a deep-neural-network-based seismic arrival-time picking "
    "method. Geophysical Journal International, 216(1), 261-273. https://doi.org/10.1093/gji/ggy423"
)

Variant = Literal["seisbench", "tf"]
WINDOW_SAMPLES: dict[str, int] = {"seisbench": 3001, "tf": 3000}
# SeisBench pads the strided convolutions of depths 1-3 by hand; depth 0 uses padding=kernel//2 = 3.
_SEISBENCH_DOWN_PADDING = {0: (3, 3), 1: (2, 3), 2: (1, 3), 3: (2, 3)}


def tf_same_padding(length: int, kernel: int, stride: int) -> tuple[int, int]:
    """Padding (before, after) of TensorFlow's "same" convolution on ``length`` samples."""
    out = -(-length // stride)
    total = max((out - 1) * stride + kernel - length, 0)
    return total // 2, total - total // 2


class PhaseNet(nn.Module):
    """PhaseNet U-Net: input (batch, 3, window), output probabilities (batch, 3, window) in label order."""

    def __init__(
        self,
        in_channels: int = 3,
        classes: int = 3,
        variant: Variant = "seisbench",
        filters_root: int = 8,
        depth: int = 5,
        kernel_size: int = 7,
        stride: int = 4,
        widths: Sequence[int] | None = None,
    ) -> None:
        """``widths``: filters per depth (default ``filters_root * 2**i``), e.g. SeisBench's ``filter_factor``
        layouts read from a checkpoint."""
        super().__init__()
        if variant not in WINDOW_SAMPLES:
            raise ValueError(f"unknown PhaseNet variant {variant!r}; use 'seisbench' or 'tf'")
        widths = list(widths) if widths is not None else [2**i * filters_root for i in range(depth)]
        if len(widths) != depth:
            raise ValueError(f"{len(widths)} widths for depth {depth}")
        if variant == "seisbench" and depth != len(_SEISBENCH_DOWN_PADDING) + 1:
            raise ValueError(
                f"SeisBench's PhaseNet has depth {len(_SEISBENCH_DOWN_PADDING) + 1}, not {depth}"
            )
        self.variant = variant
        self.in_channels = in_channels
        self.classes = classes
        self.depth = depth
        self.kernel_size = kernel_size
        self.stride = stride
        self.window_samples = WINDOW_SAMPLES[variant]

        self.widths = widths
        self.inc = nn.Conv1d(in_channels, widths[0], kernel_size, padding="same")
        self.in_bn = nn.BatchNorm1d(widths[0], eps=1e-3)

        self.down_branch = nn.ModuleList()
        last = widths[0]
        for i in range(depth):
            filters = widths[i]
            conv_same = nn.Conv1d(last, filters, kernel_size, padding="same", bias=False)
            last = filters
            bn1 = nn.BatchNorm1d(filters, eps=1e-3)
            if i == depth - 1:
                conv_down, bn2 = None, None
            else:
                conv_down = nn.Conv1d(filters, filters, kernel_size, stride, padding=0, bias=False)
                bn2 = nn.BatchNorm1d(filters, eps=1e-3)
            self.down_branch.append(nn.ModuleList([conv_same, bn1, conv_down, bn2]))

        self.up_branch = nn.ModuleList()
        for i in range(depth - 1):
            filters = widths[depth - 2 - i]
            conv_up = nn.ConvTranspose1d(last, filters, kernel_size, stride, bias=False)
            last = filters
            bn1 = nn.BatchNorm1d(filters, eps=1e-3)
            conv_same = nn.Conv1d(2 * filters, filters, kernel_size, padding="same", bias=False)
            bn2 = nn.BatchNorm1d(filters, eps=1e-3)
            self.up_branch.append(nn.ModuleList([conv_up, bn1, conv_same, bn2]))

        self.out = nn.Conv1d(last, classes, 1, padding="same")

    def _down_padding(self, level: int, length: int) -> tuple[int, int]:
        if self.variant == "tf":
            return tf_same_padding(length, self.kernel_size, self.stride)
        return _SEISBENCH_DOWN_PADDING[level]

    def forward(self, x: torch.Tensor, logits: bool = False) -> torch.Tensor:
        """Probabilities (or logits) per class and sample. Shapes are static per window length (ONNX export)."""
        x = F.relu(self.in_bn(self.inc(x)))
        skips = []
        for i, (conv_same, bn1, conv_down, bn2) in enumerate(self.down_branch):
            x = F.relu(bn1(conv_same(x)))
            if conv_down is not None:
                skips.append(x)
                x = F.pad(x, self._down_padding(i, int(x.shape[-1])))
                x = F.relu(bn2(conv_down(x)))
        for (conv_up, bn1, conv_same, bn2), skip in zip(self.up_branch, skips[::-1]):
            x = F.relu(bn1(conv_up(x)))
            x = x[..., 1:-2]
            offset = (int(x.shape[-1]) - int(skip.shape[-1])) // 2  # static at export
            x = torch.cat([skip, x[..., offset : offset + skip.shape[-1]]], dim=1)
            x = F.relu(bn2(conv_same(x)))
        x = self.out(x)
        return x if logits else torch.softmax(x, dim=1)
