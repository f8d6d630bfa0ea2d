"""Training and fine-tuning PhaseNet: a tiny run lowers the validation loss and exports a model the runtime
runs; fine-tuning with a frozen encoder changes only the decoder; runs are reproducible; `seispick train` and
`finetune` refuse bad data before any epoch, naming the file."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from seispick.cli.main import cli
from seispick.models.card import ModelCard
from seispick.models.inference import load_model_dir
from seispick.picking.annotate import annotate
from seispick.training.data.inputs import DataSplit, load_split
from seispick.training.data.picking_data import PickingWindows, place_window
from seispick.training.data.sample_streams import sample_stream
from seispick.training.data.samples import reorder
from seispick.training.data.splits import Split
from seispick.training.data.synthetic_waveforms import SyntheticConfig, synthetic_samples
from seispick.training.export.cards import phasenet_card
from seispick.training.export.convert import load_original_phasenet
from seispick.training.fitting.checkpoint import load_base, load_checkpoint, read_meta
from seispick.training.fitting.config import RunConfig, TrainConfig
from seispick.training.fitting.loop import fit
from seispick.training.fitting.train import (
    FinetuneOptions,
    encoder_modules,
    finetune_phasenet,
    picking_loss,
    train_phasenet,
)
from seispick.training.networks.phasenet import PhaseNet
from tests.streams import DATA

WEIGHTS = DATA / "phasenet_original" / "weights.npz"
TINY = TrainConfig(
    epochs=2, batch_size=8, lr=3e-3, windows_per_sample=1, val_windows_per_sample=1, patience=3
)


def synthetic_split(n: int = 24, seed: int = 1) -> DataSplit:
    samples = list(synthetic_samples(n, seed=seed, config=SyntheticConfig(n_samples=4000)))
    for i, s in enumerate(samples):
        s.station = f"XX.S{i % 6}"
    a, b = int(n * 0.6), int(n * 0.8)
    split = DataSplit()
    split.add("synthetic", Split(samples[:a], samples[a:b], samples[b:], {"method": "manual"}))
    return split


def test_tiny_synthetic_run_lowers_validation_loss_and_exports_a_working_model(tmp_path):
    started = time.monotonic()
    run = train_phasenet(
        synthetic_split(), phasenet_card("tiny"), RunConfig(tmp_path / "run", TINY, progress=False)
    )
    losses = [h["val_loss"] for h in run.fit.history]
    assert len(losses) == 3 and min(losses[1:]) < losses[0]
    for name in ("model.pt", "config.json", "history.json", "learning_curve.png", "evaluation_test.json"):
        assert (run.checkpoint_dir / name).is_file(), name
    model = load_model_dir(run.model_dir)
    assert model.card.name == "tiny" and model.card.metrics["onnx_vs_torch_max_abs_diff"] <= 1e-5
    assert model.card.split["synthetic"]["method"] == "manual"
    assert model.card.metrics["test"]["P"]["n_labels"] == 5
    result = annotate(sample_stream(synthetic_split().test[0]), model)
    assert result.annotations[0].probabilities.shape[0] == 3
    assert np.allclose(result.annotations[0].probabilities.sum(axis=0), 1.0, atol=1e-4)
    assert time.monotonic() - started < 60


def test_runs_are_reproducible_on_cpu():
    split = synthetic_split(12, seed=3)
    histories, weights = [], []
    norm = phasenet_card("x").normalisation
    cfg = TrainConfig(epochs=1, batch_size=4, windows_per_sample=1, val_windows_per_sample=1, seed=7)
    for _ in range(2):
        torch.manual_seed(cfg.seed)
        model = PhaseNet(variant="tf")
        data = PickingWindows(split.train, 3000, "ENZ", norm, seed=cfg.seed, augment=True)
        val = PickingWindows(split.val, 3000, "ENZ", norm, seed=cfg.seed + 1)
        result = fit(model, picking_loss, data, val, cfg, progress=False)
        histories.append(result.history)
        weights.append(model.out.weight.detach().clone())
    assert histories[0] == histories[1]
    torch.testing.assert_close(weights[0], weights[1], rtol=0, atol=0)


def test_window_placement_moves_the_pick():
    sample = next(synthetic_samples(1, seed=0))
    rng = np.random.default_rng(0)
    positions = {place_window(sample, rng, 3000).p_index for _ in range(40)}
    assert len(positions - {None}) > 20  # P lands all over the window, not at one position


def test_finetune_with_frozen_encoder_changes_only_the_decoder(tmp_path):
    split = load_split([DATA / "stead"], "time", (0.5, 0.25, 0.25))
    cfg = TrainConfig(epochs=1, batch_size=4, lr=1e-3, windows_per_sample=2, val_windows_per_sample=1)
    cfg.freeze_encoder = True
    cfg.patience = 1
    cfg.min_delta = -1.0  # keep the epoch-1 weights whatever the validation loss, to compare them
    run = finetune_phasenet(
        split, WEIGHTS, RunConfig(tmp_path / "ft", cfg, progress=False), FinetuneOptions(name="ft-test")
    )
    before = load_original_phasenet(WEIGHTS).state_dict()
    after, meta = load_checkpoint(run.checkpoint_dir)
    encoder = {name for module in encoder_modules(after) for name, _ in module.named_parameters()}
    assert encoder
    changed = {k for k, v in after.state_dict().items() if not torch.equal(v, before[k])}
    encoder_keys = {k for k in before if k.startswith(("inc.", "in_bn.", "down_branch."))}
    assert not changed & encoder_keys, sorted(changed & encoder_keys)[:5]
    assert any(k.startswith(("up_branch.", "out.")) for k in changed)
    assert meta.train["freeze_encoder"] is True and meta.base == str(WEIGHTS)
    card = ModelCard.read(run.model_dir)
    assert card.window_samples == 3000 and card.channel_order == "ENZ" and card.normalisation.ddof == 0
    assert "fine-tuned" in card.description.lower()


def test_base_resolution(monkeypatch):
    monkeypatch.setenv("SEISPICK_ORIGINAL_WEIGHTS", str(WEIGHTS))  # the test copy, not the shared data
    model, card, origin = load_base("phasenet-original")
    assert isinstance(model, PhaseNet) and card.name == "phasenet-original" and "phasenet-original" in origin
    from seispick.training.fitting.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="unknown base"):
        load_base("no-such-model")
    with pytest.raises(CheckpointError, match="cannot give torch weights back"):
        load_base("convnetquake-ta109c")


# --- the command line ----------------------------------------------------------------------------------------


def invoke(*args) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [*map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.output


def write_phasenet_folder(folder: Path, samples, tweak=None) -> Path:
    """Samples in PhaseNet's npz + csv layout; ``tweak(i, data, row)`` may spoil one of them."""
    (folder / "waveform_train").mkdir(parents=True)
    rows = ["fname,itp,its,channels"]
    for i, s in enumerate(samples):
        data = reorder(s, "ENZ").waveform.T.astype(np.float64).copy()
        row = {"itp": str(s.p_index), "its": str(s.s_index if s.s_index is not None else "")}
        if tweak:
            data = tweak(i, data, row)
        name = f"XX_S{i % 5}_20{10 + i:02d}0101000000.npz"
        np.savez(folder / "waveform_train" / name, data=data)
        rows.append(f"{name},{row['itp']},{row['its']},HHE_HHN_HHZ")
    (folder / "waveform.csv").write_text("\n".join(rows) + "\n")
    return folder


def tiny_samples(n: int = 10):
    return list(synthetic_samples(n, seed=4, config=SyntheticConfig(n_samples=3500)))


def test_cli_train_export_and_evaluate(tmp_path):
    data = write_phasenet_folder(tmp_path / "data", tiny_samples())
    out = tmp_path / "run"
    code, output = invoke(
        "train", data, "--out", out, "--epochs", "1", "--windows-per-sample", "1", "--batch-size", "8", "-q"
    )
    assert code == 0, output
    assert "model:" in output and (out / "model" / "card.json").is_file()
    meta = read_meta(out)
    assert meta.command.startswith("seispick train") and "--epochs 1" in meta.command
    code, output = invoke("export", out, "--out", tmp_path / "exported", "--name", "exported-tiny")
    assert code == 0 and "exported-tiny" in output
    assert load_model_dir(tmp_path / "exported").card.name == "exported-tiny"
    report = tmp_path / "report.json"
    code, output = invoke(
        "evaluate",
        "--model",
        out / "model",
        "--data",
        data,
        "--split",
        "all",
        "--out",
        report,
        "--plot",
        tmp_path / "r.png",
    )
    assert code == 0, output
    assert json.loads(report.read_text())["n_samples"] == 10 and (tmp_path / "r.png").stat().st_size > 0
    code, output = invoke("export", tmp_path / "nothing", "--out", tmp_path / "x")
    assert code != 0 and "does not exist" in output and "Traceback" not in output


def _nan(i, data, row):
    if i == 3:
        data[100:110, 2] = np.nan
    return data


def _unlabelled(i, data, row):
    if i == 3:
        row["itp"], row["its"] = "", ""
    return data


def _outside(i, data, row):
    if i == 3:
        row["its"] = "99999"
    return data


def _two_channels(i, data, row):
    return data[:, :2] if i == 3 else data


@pytest.mark.parametrize(
    ("tweak", "message"),
    [
        (_nan, "NaN"),
        (_unlabelled, "unlabelled"),
        (_outside, "outside the trace"),
        (_two_channels, "mismatched channel count"),
    ],
)
@pytest.mark.parametrize("command", ["train", "finetune"])
def test_bad_data_fails_before_training_naming_the_file(tmp_path, tweak, message, command):
    data = write_phasenet_folder(tmp_path / "data", tiny_samples(6), tweak)
    out = tmp_path / "run"
    code, output = invoke(command, data, "--out", out, "--epochs", "1", "-q")
    assert code != 0 and message in output, output
    assert "XX_S3_20130101000000.npz" in output and "Traceback" not in output
    assert not out.exists()  # nothing trained, nothing written


@pytest.mark.parametrize("command", ["train", "finetune"])
def test_missing_and_empty_folders(tmp_path, command):
    code, output = invoke(command, tmp_path / "nope", "--out", tmp_path / "run")
    assert code != 0 and "does not exist" in output and "nope" in output
    (tmp_path / "empty").mkdir()
    code, output = invoke(command, tmp_path / "empty", "--out", tmp_path / "run")
    assert code != 0 and "empty" in output
    code, output = invoke(command, "--out", tmp_path / "run")
    assert code != 0 and "at least one dataset folder" in output
    assert not (tmp_path / "run").exists()


def test_finetune_unknown_base_is_a_clear_error(tmp_path):
    data = write_phasenet_folder(tmp_path / "data", tiny_samples(6))
    code, output = invoke("finetune", data, "--base", "nothing-like-it", "--out", tmp_path / "run", "-q")
    assert code != 0 and "unknown base" in output and "Traceback" not in output
