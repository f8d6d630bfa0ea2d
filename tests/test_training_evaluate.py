"""`evaluate` runs shipped ONNX models through the models/ runtime on labelled samples and scores the picks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from seispick.cli.main import cli
from seispick.models.registry import ModelRegistry
from seispick.picking.annotate import annotate
from seispick.training.data.datasets import load_dataset
from seispick.training.data.sample_streams import REFERENCE_START, sample_start, sample_stream
from seispick.training.evaluation.evaluate import evaluate, write_report
from tests.streams import DATA


@pytest.fixture(scope="module")
def ncedc():
    return load_dataset(DATA / "ncedc")


@pytest.fixture(scope="module")
def original_report(ncedc):
    return evaluate("phasenet-original", ncedc)


def test_original_phasenet_on_ncedc_samples_gives_sensible_scores(original_report):
    p = original_report["scores"]["P"]
    s = original_report["scores"]["S"]
    assert original_report["n_labels"] == {"P": 4, "S": 4}
    assert p["0.5"]["recall"] >= 0.8 and p["0.5"]["precision"] >= 0.5
    assert s["0.5"]["recall"] >= 0.5
    assert abs(p["0.5"]["residual_mean"]) < 0.1 and p["0.5"]["residual_std"] < 0.1
    # the 0.1 s tolerance is stricter than 0.5 s
    assert p["0.1"]["tp"] <= p["0.5"]["tp"] and s["0.1"]["tp"] <= s["0.5"]["tp"]
    assert all(abs(r) <= 0.5 for r in original_report["residuals"]["P"])


def test_scores_are_the_runtime_picks(ncedc, original_report):
    """Evaluation has no inference code of its own: its picks are those of annotate() on the sample's stream."""
    model = ModelRegistry().load("phasenet-original", prefer_gpu=False)
    n_pred = 0
    for sample in ncedc:
        result = annotate(sample_stream(sample), model)
        n_pred += sum(p.phase == "P" for p in result.picks)
    assert n_pred == original_report["scores"]["P"]["0.5"]["n_pred"]


def test_threshold_sweep_is_monotonic_in_recall(original_report):
    rows = original_report["threshold_sweep"]["P"]["0.5"]
    recalls = [r["recall"] for r in rows]
    assert len(rows) >= 10 and all(a >= b - 1e-9 for a, b in zip(recalls, recalls[1:]))


def test_report_files(original_report, tmp_path):
    write_report(original_report, tmp_path / "r.json", tmp_path / "r.png")
    again = json.loads((tmp_path / "r.json").read_text())
    assert again["scores"]["P"]["0.1"]["f1"] == pytest.approx(original_report["scores"]["P"]["0.1"]["f1"])
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_sample_streams(ncedc):
    vertical = next(s for s in ncedc if "_" not in s.source["channels"])
    stream = sample_stream(vertical)
    assert [tr.stats.channel for tr in stream] == ["EHZ"]  # zero E/N channels are left out
    assert stream[0].stats.starttime == sample_start(vertical)
    assert REFERENCE_START <= sample_start(vertical) < REFERENCE_START + 60
    three = next(s for s in ncedc if s.source["channels"].startswith("HH"))
    assert [tr.stats.channel for tr in sample_stream(three)] == ["HHE", "HHN", "HHZ"]
    assert sample_stream(three)[0].stats.network == three.station.split(".")[0]
    np.testing.assert_array_equal(sample_stream(three)[2].data, three.waveform[2])


def test_stead_samples_keep_their_start_times():
    stead = load_dataset(DATA / "stead")
    assert sample_start(stead[0]) == stead[0].start_time
    report = evaluate("phasenet-original", stead)
    assert report["scores"]["S"]["0.5"]["recall"] >= 0.75


def test_cli_evaluate_prints_a_table_and_rejects_bad_input(tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        cli, ["evaluate", "--model", "phasenet-original", "--data", str(DATA / "ncedc"), "--split", "all"]
    )
    assert result.exit_code == 0, result.output
    assert "P      0.1s" in result.output and "precision" in result.output
    result = runner.invoke(cli, ["evaluate", "--data", str(tmp_path / "missing")])
    assert result.exit_code != 0 and "does not exist" in result.output
    result = runner.invoke(cli, ["evaluate", "--model", "nope", "--data", str(DATA / "ncedc")])
    assert result.exit_code != 0 and "unknown model" in result.output
