"""An independent numpy forward pass of the original PhaseNet TensorFlow graph, for checking conversions.

Written from the TF 1 model (Zhu & Beroza 2019, PhaseNet repository ``model.py``): NHWC tensors with W=1,
``tf.layers.conv2d`` / ``conv2d_transpose`` with "same" padding and ``crop_and_concat`` skips, batch norm in
inference mode with epsilon 1e-3. It reads the TF variable names of ``weights.npz`` directly and shares no
code with the PyTorch module.
"""

from __future__ import annotations

import numpy as np

BN_EPS = 1e-3


def _same_pads(n_in: int, n_out: int, kernel: int, stride: int) -> tuple[int, int]:
    total = max((n_out - 1) * stride + kernel - n_in, 0)
    return total // 2, total - total // 2


def conv_same(
    x: np.ndarray, kernel: np.ndarray, stride: int = 1, bias: np.ndarray | None = None
) -> np.ndarray:
    """TF conv2d, padding "same", on (time, in) with a (k, 1, in, out) kernel; returns (time_out, out)."""
    k = kernel.shape[0]
    n = x.shape[0]
    n_out = -(-n // stride)
    before, after = _same_pads(n, n_out, k, stride)
    xp = np.pad(x, ((before, after), (0, 0)))
    w = kernel[:, 0]  # (k, in, out)
    out = np.zeros((n_out, w.shape[2]))
    for j in range(k):
        out += xp[j : j + (n_out - 1) * stride + 1 : stride] @ w[j]
    return out if bias is None else out + bias


def conv_transpose_same(x: np.ndarray, kernel: np.ndarray, stride: int) -> np.ndarray:
    """TF conv2d_transpose, padding "same" (output = stride x input), kernel stored (k, 1, out, in)."""
    k = kernel.shape[0]
    n = x.shape[0]
    n_out = n * stride
    w = kernel[:, 0]  # (k, out, in)
    full = np.zeros(((n - 1) * stride + k, w.shape[1]))
    for j in range(k):
        full[j : j + (n - 1) * stride + 1 : stride] += x @ w[j].T
    before, _ = _same_pads(n_out, n, k, stride)
    return full[before : before + n_out]


def batch_norm(x: np.ndarray, weights: dict, scope: str) -> np.ndarray:
    gamma, beta = weights[f"{scope}/gamma"], weights[f"{scope}/beta"]
    mean, var = weights[f"{scope}/moving_mean"], weights[f"{scope}/moving_variance"]
    return gamma * (x - mean) / np.sqrt(var + BN_EPS) + beta


def crop_and_concat(skip: np.ndarray, up: np.ndarray) -> np.ndarray:
    offset = (up.shape[0] - skip.shape[0]) // 2
    return np.concatenate([skip, up[offset : offset + skip.shape[0]]], axis=1)


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def normalise(window: np.ndarray) -> np.ndarray:
    """The original PhaseNet normalisation of a (time, channels) window: demean, divide by std (ddof 0)."""
    x = window - window.mean(axis=0, keepdims=True)
    std = x.std(axis=0, keepdims=True)
    std[std == 0] = 1.0
    return x / std


def forward(window: np.ndarray, weights: dict, depths: int = 5, stride: int = 4) -> np.ndarray:
    """Probabilities (time, 3: noise, P, S) for one normalised (3000, 3) E,N,Z window."""
    w = weights
    x = relu(
        batch_norm(
            conv_same(window, w["Input/input_conv/kernel"], bias=w["Input/input_conv/bias"]),
            w,
            "Input/input_bn",
        )
    )
    skips = []
    for d in range(depths):
        scope = f"DownConv_{d}"
        x = relu(
            batch_norm(conv_same(x, w[f"{scope}/down_conv1_{d + 1}/kernel"]), w, f"{scope}/down_bn1_{d + 1}")
        )
        skips.append(x)
        if d < depths - 1:
            x = conv_same(x, w[f"{scope}/down_conv3_{d + 1}/kernel"], stride=stride)
            x = relu(batch_norm(x, w, f"{scope}/down_bn3_{d + 1}"))
    for d in range(depths - 2, -1, -1):
        scope = f"UpConv_{d}"
        x = conv_transpose_same(x, w[f"{scope}/up_conv0_{d + 1}/kernel"], stride)
        x = relu(batch_norm(x, w, f"{scope}/up_bn0_{d + 1}"))
        x = crop_and_concat(skips[d], x)
        x = relu(
            batch_norm(conv_same(x, w[f"{scope}/up_conv1_{d + 1}/kernel"]), w, f"{scope}/up_bn1_{d + 1}")
        )
    logits = conv_same(x, w["Output/output_conv/kernel"], bias=w["Output/output_conv/bias"])
    return softmax(logits)
