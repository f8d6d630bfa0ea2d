"""Fine-tuning that adapts P and S: checkpoints chosen on validation pick F1 through the runtime, S-aware
targets, windows and loss weights, the epoch-size rule, k-fold selection, station folds, and `seispick finetune`
with its defaults, provenance of only the options given, its LICENSE and the closing base-vs-fine-tuned table."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import TensorDataset  # noqa: E402

from seispick.cli.main import cli  # noqa: E402
from seispick.cli.training_cmd import _command_line, _config, finetune, train  # noqa: E402
from seispick.models.card import ModelCard  # noqa: E402
from seispick.training.data.folds import station_folds  # noqa: E402
from seispick.training.data.inputs import load_folder  # noqa: E402
from seispick.training.data.labels import LabelConfig, make_labels  # noqa: E402
from seispick.training.data.picking_data import place_window  # noqa: E402
from seispick.training.data.synthetic_waveforms import synthetic_samples  # noqa: E402
from seispick.training.evaluation.evaluate import load_model  # noqa: E402
from seispick.training.export.convert import load_original_phasenet  # noqa: E402
from seispick.training.fitting.config import FINETUNE_DEFAULTS, TrainConfig  # noqa: E402
from seispick.training.fitting.loop import fit  # noqa: E402
from seispick.training.fitting.phasenet_fit import picking_loss, weighted_picking_loss  # noqa: E402
from seispick.training.fitting.selection import calibrate_thresholds, pick_f1, torch_runtime  # noqa: E402
from tests.streams import DATA  # noqa: E402

WEIGHTS = DATA / "phasenet_original" / "weights.npz"


def finetune_context(*args: str):
    return finetune.make_context("seispick finetune", ["data", "--out", "runs/x", *args])


def test_finetune_cli_defaults_are_the_documented_defaults():
    ctx = finetune_context()
    config = _config(ctx, ctx.params, FINETUNE_DEFAULTS, replay_fraction=0.0)
    expected = TrainConfig(**{**FINETUNE_DEFAULTS, "replay_fraction": 0.0})
    assert config == expected
    assert config.select_on == "f1" and config.epoch_windows and config.calibrate_thresholds
    assert config.s_window_probability >= 0.5 and config.warmup_epochs >= 1


def test_a_given_windows_per_sample_replaces_the_epoch_size_rule():
    ctx = finetune_context("--windows-per-sample", "6")
    config = _config(ctx, ctx.params, FINETUNE_DEFAULTS)
    assert config.windows_per_sample == 6 and config.epoch_windows is None and config.windows_for(500) == 6


def test_provenance_lists_only_the_options_given():
    assert _command_line(finetune_context()) == "seispick finetune data --out runs/x"
    line = _command_line(
        finetune_context("--lr", str(FINETUNE_DEFAULTS["lr"]), "--no-calibrate-thresholds", "-q")
    )
    assert line.startswith("seispick finetune data --out runs/x")
    assert f"--lr {FINETUNE_DEFAULTS['lr']}" in line  # given, even though it equals the default
    assert "--no-calibrate-thresholds" in line and "--quiet" in line
    for absent in ("--no-augment", "--epochs", "--freeze-batchnorm", "--select-on", "--class-weights"):
        assert absent not in line, (absent, line)
    given = train.make_context("seispick train", ["d", "--out", "o", "--no-augment"])
    assert _command_line(given) == "seispick train d --out o --no-augment"
    weighted = finetune_context("--class-weights", "1,1,2", "--replay", "a", "--replay", "b")
    assert _command_line(weighted).endswith("--class-weights 1,1,2 --replay a --replay b")


def test_epoch_size_rule_fits_50_to_500_records():
    config = TrainConfig(epoch_windows=800)
    assert [config.windows_for(n) for n in (50, 100, 500, 2000, 5)] == [16, 8, 2, 1, 32]
    with pytest.raises(ValueError, match="epoch_windows"):
        TrainConfig(epoch_windows=0)
    with pytest.raises(ValueError, match="class_weights"):
        TrainConfig(class_weights=(1.0, 1.0))
    with pytest.raises(ValueError, match="select_on"):
        TrainConfig(select_on="auc")


def _tiny_fit(scores: list[float], select_on: str = "loss", patience: int = 10):
    """Fit a 1-parameter model for len(scores)-1 epochs; the validation 'score' of epoch e is scores[e]."""
    torch.manual_seed(0)
    model = nn.Linear(1, 1)
    data = TensorDataset(torch.ones(8, 1), torch.full((8, 1), 3.0))
    loss = lambda m, batch: ((m(batch[0]) - batch[1]) ** 2).mean()  # noqa: E731
    calls = iter(scores)
    seen = []

    def score_fn(m):
        seen.append(float(m.weight.detach()))
        return {"score": next(calls), "val_f1_P": 0.0}

    config = TrainConfig(epochs=len(scores) - 1, batch_size=4, lr=0.1, patience=patience, select_on=select_on)
    result = fit(model, loss, data, data, config, score_fn=score_fn, progress=False)
    return result, model, seen


def test_checkpoints_are_chosen_on_the_validation_score_not_the_loss():
    result, model, seen = _tiny_fit([0.5, 0.6, 0.9, 0.7, 0.8], select_on="f1")
    assert result.best_epoch == 2 and result.best_score == 0.9 and result.selected_on == "score"
    assert float(model.weight.detach()) == pytest.approx(seen[2])  # the weights of epoch 2 are kept
    assert [h["val_f1_P"] for h in result.history] == [0.0] * 5
    early, _, _ = _tiny_fit([0.5, 0.6, 0.9, 0.7, 0.7, 0.7, 0.95], select_on="f1", patience=2)
    assert early.stopped_early and early.best_epoch == 2 and len(early.history) == 5


def test_equal_scores_keep_the_lower_loss_and_last_keeps_the_last_epoch():
    tied, _, _ = _tiny_fit([0.5, 0.5, 0.5])  # loss keeps falling: ties go to the later, lower-loss epoch
    assert tied.best_epoch == 2
    never, _, _ = _tiny_fit([0.9, 0.5, 0.5])
    assert never.best_epoch == 0  # fine-tuning never ends worse on validation than its base
    last, model, seen = _tiny_fit([0.9, 0.5, 0.1], select_on="last")
    assert last.best_epoch == 2 and float(model.weight.detach()) == pytest.approx(seen[2])


def test_s_targets_can_be_wider_than_p():
    labels = make_labels(400, [100], [300], LabelConfig(sigma=10, s_sigma=20))
    width = lambda row: int((row > 0.5).sum())  # noqa: E731
    assert width(labels[2]) > 1.8 * width(labels[1])
    assert labels[1].argmax() == 100 and labels[2].argmax() == 300


def test_class_weights_weigh_the_s_term():
    x = torch.randn(2, 3, 3000)
    y = torch.from_numpy(np.stack([make_labels(3000, [1000], [2000])] * 2))
    model = load_original_phasenet(WEIGHTS)
    plain = picking_loss(model, (x, y))
    assert torch.isclose(weighted_picking_loss((1.0, 1.0, 1.0))(model, (x, y)), plain)
    assert weighted_picking_loss((1.0, 1.0, 3.0))(model, (x, y)) > plain


def test_windows_can_be_placed_around_s():
    sample = next(s for s in synthetic_samples(3, seed=1) if s.s_index is not None)
    rng = np.random.default_rng(0)
    placed = [place_window(sample, rng, 3000, p_weight=0.0) for _ in range(30)]
    assert all(20 <= w.s_index < 2980 for w in placed)
    assert len({w.s_index for w in placed}) > 10


def test_validation_f1_uses_the_runtime_and_equals_the_exported_model():
    samples = load_folder(DATA / "ncedc")
    torch_model = load_original_phasenet(WEIGHTS)
    onnx = load_model("phasenet-original")
    runtime = torch_runtime(torch_model, onnx.card)
    assert pick_f1(runtime, samples) == pick_f1(onnx, samples)
    calibration = calibrate_thresholds(runtime, samples)
    for phase in "PS":
        assert calibration["f1_after"][phase] >= calibration["f1_before"][phase]
        assert 0.2 <= calibration["thresholds"][phase] <= 0.7


def test_station_folds_hold_out_whole_stations_once():
    samples = list(synthetic_samples(30, seed=3))
    for i, s in enumerate(samples):
        s.station = f"XX.S{i % 12:02d}"
    folds = station_folds(samples, 4)
    tested = [id(s) for f in folds for s in f.test]
    assert sorted(tested) == sorted(id(s) for s in samples)
    for fold in folds:
        test_stations = {s.station for s in fold.test}
        train_stations = {s.station for s in fold.train}
        val_stations = {s.station for s in fold.val}
        assert test_stations and train_stations and val_stations
        assert not (
            test_stations & train_stations or test_stations & val_stations or train_stations & val_stations
        )
        assert len(fold.train) + len(fold.val) + len(fold.test) == 30
    with pytest.raises(ValueError, match="cannot make"):
        station_folds(samples[:5], 4)


def test_finetune_ends_with_a_table_and_writes_licence_and_provenance(tmp_path):
    out = tmp_path / "run"
    args = ["finetune", str(DATA / "stead"), "--out", str(out), "--epochs", "1"]
    result = CliRunner().invoke(cli, [*args, "--epoch-windows", "8", "-q"])
    assert result.exit_code == 0, result.output
    assert "(base) vs" in result.output and "change" in result.output
    rows = [line for line in result.output.splitlines() if line.startswith(("P ", "S "))]
    assert len(rows) == 4  # P and S at 0.1 s and 0.5 s
    card = ModelCard.read(out / "model")
    assert (out / "model" / "LICENSE").is_file() and "MIT License" in (out / "model" / "LICENSE").read_text()
    assert card.provenance.endswith(f"--out {out} --epochs 1 --epoch-windows 8 --quiet")
    assert "--no-augment" not in card.provenance
    assert card.metrics["training"]["selected_on"] == "score"
    assert card.metrics["threshold_calibration"]["on"] == "validation split"


def test_k_fold_selection_chooses_epochs_and_thresholds(tmp_path):
    out = tmp_path / "kfold"
    args = ["finetune", str(DATA / "stead"), "--out", str(out), "--epochs", "1"]
    result = CliRunner().invoke(cli, [*args, "--epoch-windows", "8", "--select-folds", "3", "-q"])
    assert result.exit_code == 0, result.output
    card = ModelCard.read(out / "model")
    choice = card.metrics["fold_selection"]
    assert choice["folds"] == 3 and choice["by"] == "time"
    assert [e["epoch"] for e in choice["per_epoch"]] == [0, 1]
    assert choice["epochs"] in (0, 1)
    assert card.default_thresholds["P"] == choice["thresholds"]["P"]
    assert card.default_thresholds["S"] == choice["thresholds"]["S"]
    bad = CliRunner().invoke(cli, [*args, "--select-folds", "2"])
    assert bad.exit_code != 0 and "at least 3 folds" in bad.output
