"""The early SeisBench PhaseNet layout (before SeisBench 0.3; ``PhaseNetLight`` in today's SeisBench).

Strided "same" convolutions straight down (filters 8, 11, 16, 22, 32 in the published weights), transposed
convolutions back up with the skip connections, a 1x1 input convolution and a 1x1 transposed output
convolution; batch norm with PyTorch's default epsilon. Layer names are SeisBench's (``inc``, ``in_bn``,
``conv1.conv``, ``bnd1``, ..., ``up1``, ``bnu1``, ..., ``out``), so its state_dicts load as they are. Widths and
depth are parameters so that they can be read from a checkpoint's weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn

__all__ = ["EARLY_WIDTHS", "PhaseNetLight"]

EARLY_WIDTHS = (8, 11, 16, 22, 32)
WINDOW = 3001


class Conv1dSame(nn.Module):
    """SeisBench's ``Conv1dSame``: a convolution padded by ``ceil((1 - stride + dilation * (k - 1)) / 2) + 1``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        self.padding = math.ceil((1 - stride + (kernel_size - 1)) / 2)
        self.cut_last_element = kernel_size % 2 == 0 and stride == 1
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, padding=self.padding + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return x[:, :, :-1] if self.cut_last_element else x


class PhaseNetLight(nn.Module):
    """Early-layout PhaseNet on 3001-sample windows; output probabilities (or logits) per class and sample.

    ``widths``: filters of the input convolution and of each strided level (``len(widths) - 1`` levels). The
    transposed convolutions pad 2 samples (the last one 3) and take the output padding that gives back each
    skip connection's length, which reproduces SeisBench's hand-set paddings for the published layout.
    """

    def __init__(
        self,
        in_channels: int = 3,
        classes: int = 3,
        widths: Sequence[int] = EARLY_WIDTHS,
        kernel_size: int = 7,
        stride: int = 4,
    ) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        if len(widths) < 2:
            raise ValueError(f"need an input width and at least one level, got widths {widths}")
        self.in_channels, self.classes, self.widths = in_channels, classes, widths
        self.window_samples = WINDOW
        self.variant = "seisbench-early"
        levels = len(widths) - 1
        self.inc = nn.Conv1d(in_channels, widths[0], 1)
        self.in_bn = nn.BatchNorm1d(widths[0])
        lengths = [WINDOW]
        for i in range(1, levels + 1):
            conv = Conv1dSame(widths[i - 1], widths[i], kernel_size, stride)
            setattr(self, f"conv{i}", conv)
            setattr(self, f"bnd{i}", nn.BatchNorm1d(widths[i]))
            pad = conv.padding + 1
            lengths.append((lengths[-1] + 2 * pad - kernel_size) // stride + 1)
        for j in range(1, levels + 1):
            level = levels - j  # the skip this up level lands on (0 = the input convolution's output)
            in_width = widths[-1] if j == 1 else 2 * widths[level + 1]
            padding = 3 if level == 0 else getattr(self, f"conv{level + 1}").padding
            natural = (lengths[level + 1] - 1) * stride - 2 * padding + kernel_size
            output_padding = lengths[level] - natural
            if not 0 <= output_padding < stride:
                raise ValueError(f"widths {widths} give no consistent up-sampling at level {level}")
            up = nn.ConvTranspose1d(
                in_width, widths[level], kernel_size, stride, padding=padding, output_padding=output_padding
            )
            setattr(self, f"up{j}", up)
            setattr(self, f"bnu{j}", nn.BatchNorm1d(widths[level]))
        self.levels = levels
        self.out = nn.ConvTranspose1d(2 * widths[0], classes, 1)

    def forward(self, x: torch.Tensor, logits: bool = False) -> torch.Tensor:
        x = torch.relu(self.in_bn(self.inc(x)))
        skips = [x]
        for i in range(1, self.levels + 1):
            x = torch.relu(getattr(self, f"bnd{i}")(getattr(self, f"conv{i}")(x)))
            skips.append(x)
        x = skips.pop()
        for j in range(1, self.levels + 1):
            x = torch.relu(getattr(self, f"bnu{j}")(getattr(self, f"up{j}")(x)))
            x = torch.cat([x, skips.pop()], dim=1)
        x = self.out(x)
        return x if logits else torch.softmax(x, dim=1)
