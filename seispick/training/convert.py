"""Weight converters into the PyTorch PhaseNet: the original TF checkpoint and SeisBench checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .phasenet import PhaseNet


def _conv(kernel: np.ndarray) -> torch.Tensor:
    """TF (k, 1, in, out) conv or (k, 1, out, in) transposed-conv kernel -> PyTorch (out|in, in|out, k)."""
    return torch.from_numpy(np.ascontiguousarray(kernel[:, 0].transpose(2, 1, 0))).float()


def _bn(weights: dict, scope: str, prefix: str) -> dict[str, torch.Tensor]:
    t = lambda key: torch.from_numpy(np.asarray(weights[f"{scope}/{key}"], dtype=np.float32))  # noqa: E731
    return {
        f"{prefix}.weight": t("gamma"),
        f"{prefix}.bias": t("beta"),
        f"{prefix}.running_mean": t("moving_mean"),
        f"{prefix}.running_var": t("moving_variance"),
        f"{prefix}.num_batches_tracked": torch.tensor(0),
    }


def state_dict_from_tf(weights: dict, depth: int = 5) -> dict[str, torch.Tensor]:
    """Map the original PhaseNet's TF variables (``weights.npz``) onto SeisBench's PhaseNet layer names."""
    sd: dict[str, torch.Tensor] = {
        "inc.weight": _conv(weights["Input/input_conv/kernel"]),
        "inc.bias": torch.from_numpy(np.asarray(weights["Input/input_conv/bias"], dtype=np.float32)),
        **_bn(weights, "Input/input_bn", "in_bn"),
    }
    for i in range(depth):
        scope, n = f"DownConv_{i}", i + 1
        sd[f"down_branch.{i}.0.weight"] = _conv(weights[f"{scope}/down_conv1_{n}/kernel"])
        sd.update(_bn(weights, f"{scope}/down_bn1_{n}", f"down_branch.{i}.1"))
        if i < depth - 1:
            sd[f"down_branch.{i}.2.weight"] = _conv(weights[f"{scope}/down_conv3_{n}/kernel"])
            sd.update(_bn(weights, f"{scope}/down_bn3_{n}", f"down_branch.{i}.3"))
    for j in range(depth - 1):
        d = depth - 2 - j  # up_branch[0] is the deepest TF UpConv
        scope, n = f"UpConv_{d}", d + 1
        sd[f"up_branch.{j}.0.weight"] = _conv(weights[f"{scope}/up_conv0_{n}/kernel"])
        sd.update(_bn(weights, f"{scope}/up_bn0_{n}", f"up_branch.{j}.1"))
        sd[f"up_branch.{j}.2.weight"] = _conv(weights[f"{scope}/up_conv1_{n}/kernel"])
        sd.update(_bn(weights, f"{scope}/up_bn1_{n}", f"up_branch.{j}.3"))
    sd["out.weight"] = _conv(weights["Output/output_conv/kernel"])
    sd["out.bias"] = torch.from_numpy(np.asarray(weights["Output/output_conv/bias"], dtype=np.float32))
    return sd


def load_original_phasenet(weights_npz: str | Path) -> PhaseNet:
    """The original PhaseNet (TF padding, 3000 samples, E,N,Z) with its published weights, in eval mode."""
    weights = dict(np.load(weights_npz))
    model = PhaseNet(variant="tf")
    model.load_state_dict(state_dict_from_tf(weights))
    return model.eval()


def load_seisbench_checkpoint(
    weights_path: str | Path, metadata_path: str | Path | None = None
) -> tuple[PhaseNet, dict]:
    """A SeisBench PhaseNet checkpoint (``*.pt.vN`` state_dict + ``*.json.vN``) from disk; returns model and metadata.

    Only the default PhaseNet layout (3 channels, filter_factor 1) is accepted; other model_args raise.
    """
    metadata = json.loads(Path(metadata_path).read_text()) if metadata_path else {}
    args = metadata.get("model_args", {})
    if args.get("filter_factor", 1) != 1:
        raise ValueError(f"{weights_path}: filter_factor {args['filter_factor']} is not supported")
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    model = PhaseNet(
        in_channels=args.get("in_channels", 3), classes=args.get("classes", 3), variant="seisbench"
    )
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{weights_path}: not a SeisBench PhaseNet state_dict (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return model.eval(), metadata
