"""Model cards as shown (``seispick models show``, ``GET /v1/models/{name}``) hold no absolute paths of the
machine a model was built on: paths inside the package are shown relative to it, others by their names."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

import seispick
from seispick.cli.main import cli
from seispick.models.registry import ModelRegistry
from tests.service_harness import ServiceHarness

# A path that starts at the root: "/work/...", "/tmp/..." (not "0.87/0.94" or a URL).
ABSOLUTE = re.compile(r"(?<![\w.:/~-])/[\w.+@%-]+")
PACKAGE_DIR = Path(seispick.__file__).resolve().parent
NAMES = [entry.card.name for entry in ModelRegistry().entries()]


def test_the_shipped_cards_were_built_with_absolute_paths():
    """The check below is not vacuous: the card files name /work/... and /tmp/... folders."""
    found = {entry.card.name for entry in ModelRegistry().entries() if ABSOLUTE.search(entry.card.provenance)}
    assert {"phasenet-ta109c", "convnetquake-ta109c"} <= found


@pytest.mark.parametrize("name", NAMES)
def test_models_show_prints_no_absolute_path(name):
    result = CliRunner().invoke(cli, ["models", "show", name])
    assert result.exit_code == 0, result.output
    assert not ABSOLUTE.findall(result.output), ABSOLUTE.findall(result.output)
    card = json.loads(result.output)
    if name == "phasenet-ta109c":  # the names are kept: what data and which folders, not where they were
        assert (
            "finetune stead_ta109c --out runs/phasenet-ta109c --model-out phasenet-ta109c"
            in card["provenance"]
        )
        assert "--replay ncedc_phasenet" in card["provenance"]
        assert "https://doi.org/10.1093/gji/ggy423" in card["citation"]


def test_the_service_shows_cards_without_absolute_paths():
    with ServiceHarness() as service:
        for name in NAMES:
            response = service.get(f"/v1/models/{name}")
            assert response.status_code == 200
            assert not ABSOLUTE.findall(response.text), (name, ABSOLUTE.findall(response.text))


def test_paths_in_the_package_are_shown_relative_to_it(tmp_path):
    entry = ModelRegistry().get("phasenet-original")
    text = (
        f"written to {PACKAGE_DIR / 'models' / 'mine'} from {tmp_path / 'runs' / 'x'}/ with F1 0.87/0.94 "
        "(see https://doi.org/10.1/x)"
    )
    card = entry.card.model_copy(update={"provenance": text, "split": {"data": {"folder": str(tmp_path)}}})
    shown = card.for_display()
    assert (
        shown.provenance
        == "written to seispick/models/mine from x with F1 0.87/0.94 (see https://doi.org/10.1/x)"
    )
    assert shown.split == {"data": {"folder": tmp_path.name}}
    assert card.provenance == text  # the card itself (and its file) keep them
