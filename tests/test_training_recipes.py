"""The shipped PhaseNet's recipe: its settings reach `seispick finetune` and cross-validation unchanged."""

from __future__ import annotations

from seispick.cli.training_cmd import _config, finetune, train
from seispick.training.fitting.config import FINETUNE_DEFAULTS, TrainConfig
from seispick.training.recipes.shipped_models import (
    DETECTOR_ARGS,
    PHASENET_SETTINGS,
    cv_config,
    detector_config,
    finetune_args,
    finetune_config,
)


def test_recipe_settings_parse_as_finetune_options():
    ctx = finetune.make_context("finetune", ["data", "--out", "runs/x", *finetune_args(PHASENET_SETTINGS)])
    for key, value in PHASENET_SETTINGS.items():
        assert ctx.params[key] == value, key
    assert ctx.params["base"] == "phasenet-original"


def test_false_flags_become_no_options():
    args = finetune_args({"freeze_batchnorm": False, "lr": 1e-4})
    assert "--no-freeze-batchnorm" in args and args[-2:] == ["--lr", "0.0001"]
    ctx = finetune.make_context("finetune", ["d", "--out", "o", *args])
    assert ctx.params["freeze_batchnorm"] is False


def test_cross_validation_trains_what_the_cli_trains():
    config = TrainConfig(**cv_config(PHASENET_SETTINGS))
    assert (
        config.val_windows_per_sample == config.windows_per_sample == PHASENET_SETTINGS["windows_per_sample"]
    )
    assert config.distill_weight == PHASENET_SETTINGS["distill_weight"]


def test_the_recipes_train_what_their_recorded_commands_train():
    """The recipes call the training functions directly; their settings are those the commands parse to."""
    ctx = finetune.make_context(
        "finetune", ["d", "--replay", "r", "--out", "o", *finetune_args(PHASENET_SETTINGS)]
    )
    assert finetune_config(PHASENET_SETTINGS) == _config(
        ctx, ctx.params, FINETUNE_DEFAULTS, replay_fraction=ctx.params["replay_fraction"]
    )
    ctx = train.make_context("train", ["d", "--out", "o", *DETECTOR_ARGS, "--cells", "0"])
    assert detector_config() == _config(ctx, ctx.params, {})
