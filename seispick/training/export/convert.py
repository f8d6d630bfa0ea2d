"""Weight converters into the PyTorch PhaseNet: the original TF checkpoint and SeisBench checkpoints."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from seispick.training.export.pickled import load_pickled_module
from seispick.training.networks.phasenet import PhaseNet
from seispick.training.networks.phasenet_light import PhaseNetLight


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


class SeisBenchImportError(ValueError):
    """A SeisBench checkpoint that cannot be imported; the message names what was found."""


# model_args of SeisBench's PhaseNet / PhaseNetLight that the import understands.
KNOWN_MODEL_ARGS = {
    "component_order", "phases", "norm", "sampling_rate", "in_channels", "classes", "filter_factor",
    "norm_amp_per_comp", "norm_detrend", "in_samples", "grouping", "filter_args", "filter_kwargs",
}  # fmt: skip


def _read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], str]:
    """(state_dict, attributes of a pickled module, what the file was) of a checkpoint file."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # a whole pickled module: read without its classes
        try:
            pickled = load_pickled_module(path)
        except ValueError as exc:
            raise SeisBenchImportError(
                f"{path}: not a torch checkpoint: neither a state_dict nor a pickled module ({exc})"
            ) from exc
        return pickled.state_dict, pickled.attributes, f"pickled module {pickled.class_name}"
    except (RuntimeError, OSError, EOFError) as exc:
        raise SeisBenchImportError(f"{path}: not a torch checkpoint ({exc})") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SeisBenchImportError(f"{path}: holds a {type(state).__name__}, not a PhaseNet state_dict")
    return dict(state), {}, "state_dict"


def _widths_modern(state: dict[str, torch.Tensor]) -> list[int]:
    depth = len({k.split(".")[1] for k in state if k.startswith("down_branch.")})
    return [int(state[f"down_branch.{i}.0.weight"].shape[0]) for i in range(depth)]


def _widths_early(state: dict[str, torch.Tensor]) -> list[int]:
    levels = sum(f"conv{i}.conv.weight" in state for i in range(1, 64))
    return [int(state["inc.weight"].shape[0])] + [
        int(state[f"conv{i}.conv.weight"].shape[0]) for i in range(1, levels + 1)
    ]


def seisbench_network(state: dict[str, torch.Tensor], where: str = "checkpoint") -> tuple[nn.Module, str]:
    """A PhaseNet of the layout, widths and depth found in a SeisBench state_dict, with those weights loaded;
    and the layout's name ("phasenet" or "phasenet-early")."""
    keys = sorted(state)
    try:
        if "down_branch.0.0.weight" in state and "inc.weight" in state:
            widths, layout = _widths_modern(state), "phasenet"
            model: nn.Module = PhaseNet(
                in_channels=int(state["inc.weight"].shape[1]),
                classes=int(state["out.weight"].shape[0]),
                variant="seisbench",
                depth=len(widths),
                widths=widths,
            )
        elif "conv1.conv.weight" in state and "inc.weight" in state:
            widths, layout = _widths_early(state), "phasenet-early"
            model = PhaseNetLight(
                in_channels=int(state["inc.weight"].shape[1]),
                classes=int(state["out.weight"].shape[1]),
                widths=widths,
            )
        else:
            raise SeisBenchImportError(
                f"{where}: not a SeisBench PhaseNet (no inc/down_branch or inc/conv1 layers; found "
                f"{', '.join(keys[:6])}{', ...' if len(keys) > 6 else ''})"
            )
        model.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError, KeyError) as exc:
        if isinstance(exc, SeisBenchImportError):
            raise
        raise SeisBenchImportError(f"{where}: weights do not form a PhaseNet ({exc})") from exc
    return model.eval(), layout


def load_seisbench_checkpoint(
    weights_path: str | Path, metadata_path: str | Path | None = None
) -> tuple[nn.Module, dict]:
    """A SeisBench PhaseNet checkpoint (``*.pt.vN`` + ``*.json.vN``) from disk; returns the network and metadata.

    Handles today's layout (widths and depth read from the weights, so any ``filter_factor``), the early layout
    (PhaseNetLight: filters 8, 11, 16, 22, 32), and weights saved as a whole pickled module (read without its
    classes; its component order, labels and default arguments fill in what the JSON does not say). The
    metadata gains ``layout``, ``weights_format`` and, from a pickled module, ``model_args`` it lacked.
    Anything else raises :class:`SeisBenchImportError` naming what was found.
    """
    weights_path = Path(weights_path)
    try:
        metadata = json.loads(Path(metadata_path).read_text()) if metadata_path else {}
    except (OSError, json.JSONDecodeError) as exc:
        raise SeisBenchImportError(f"{metadata_path}: not a readable SeisBench JSON ({exc})") from exc
    if not isinstance(metadata, dict):
        raise SeisBenchImportError(
            f"{metadata_path}: expected a JSON object, found {type(metadata).__name__}"
        )
    state, attributes, found = _read_weights(weights_path)
    args = dict(metadata.get("model_args") or {})
    unknown = sorted(set(args) - KNOWN_MODEL_ARGS)
    if unknown:
        raise SeisBenchImportError(f"{metadata_path}: model_args {unknown} are not supported by the import")
    if args.get("norm_amp_per_comp") or args.get("norm_detrend"):
        raise SeisBenchImportError(f"{metadata_path}: PickBlue normalisation options are not supported")
    if args.get("filter_args") or args.get("filter_kwargs"):
        raise SeisBenchImportError(
            f"{metadata_path}: the model filters its input ({args.get('filter_args')}, "
            f"{args.get('filter_kwargs')}), which seispick's runtime does not do"
        )
    if args.get("grouping", "instrument") != "instrument":
        raise SeisBenchImportError(
            f"{metadata_path}: grouping {args['grouping']!r} (seispick groups by instrument)"
        )
    if int(args.get("in_samples", 3001)) != 3001:
        raise SeisBenchImportError(
            f"{metadata_path}: in_samples {args['in_samples']} (variable-length PhaseNet)"
        )
    model, layout = seisbench_network(state, str(weights_path))
    if "component_order" not in args and isinstance(attributes.get("_component_order"), str):
        args["component_order"] = attributes["_component_order"]
    if "phases" not in args and isinstance(attributes.get("labels"), str | list):
        args["phases"] = "".join(attributes["labels"])
    for key in ("sampling_rate", "norm"):
        if key not in args and isinstance(attributes.get(key), int | float | str):
            args[key] = attributes[key]
    _check_shape(args, model, weights_path, metadata_path)
    return model, {**metadata, "model_args": args, "layout": layout, "weights_format": found}


def _check_shape(args: dict[str, Any], model: nn.Module, weights: Path, metadata: Any) -> None:
    """The JSON's channel and class counts must match the weights'."""
    n_in, n_out = model.in_channels, model.classes
    order = str(args.get("component_order", "ZNE"))
    phases = str(args.get("phases") or "NPS")
    problems = []
    if int(args.get("in_channels", n_in)) != n_in or len(order) != n_in:
        problems.append(f"the weights take {n_in} channels, the JSON says {args.get('in_channels', order)!r}")
    if int(args.get("classes", n_out)) != n_out or len(phases) != n_out:
        problems.append(f"the weights give {n_out} classes, the JSON's phases are {phases!r}")
    elif "N" not in phases:
        problems.append(f"phases {phases!r} have no noise class N")
    factor = args.get("filter_factor")
    widths = getattr(model, "widths", [])
    if factor is not None and isinstance(model, PhaseNet) and widths[0] != 8 * int(factor):
        problems.append(f"filter_factor {factor} but the weights start with {widths[0]} filters")
    if problems:
        raise SeisBenchImportError(f"{weights} with {metadata or 'no JSON'}: " + "; ".join(problems))
