"""`seispick pick` on real traces: accuracy against analyst picks, output formats and the plot."""

from __future__ import annotations

import csv
import io
import json

import obspy
from click.testing import CliRunner

from seispick.cli.main import cli
from seispick.models.registry import DEFAULT_MODEL
from tests.streams import REAL


def run_pick(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["pick", *args])
    return result.exit_code, result.stdout, result.stderr


def test_p_picks_within_0_1_s_of_analyst_picks(real_picks):
    # the original model: the fine-tuned default was trained on some of these TA.109C events
    code, out, err = run_pick(str(REAL), "--quiet", "--model", "phasenet-original")
    assert code == 0, err
    picks = list(csv.DictReader(io.StringIO(out)))
    labelled_p = [p for p in real_picks if p["phase"] == "P"]
    hits = 0
    for label in labelled_p:
        residuals = [
            abs(obspy.UTCDateTime(p["peak_time"]) - label["time"])
            for p in picks
            if p["trace_id"] == label["trace_id"] and p["phase"] == "P"
        ]
        hits += bool(residuals) and min(residuals) <= 0.1
    assert len(labelled_p) >= 30
    assert hits / len(labelled_p) >= 0.9, f"only {hits}/{len(labelled_p)} P picks within 0.1 s"


def test_formats_parse_and_agree(tmp_path):
    files = [str(p) for p in sorted(REAL.glob("BK*.mseed"))[:3]]
    code, out_csv, err = run_pick(*files, "--quiet", "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out_csv)))
    assert rows and set(rows[0]) >= {
        "trace_id",
        "phase",
        "peak_time",
        "probability",
        "start_time",
        "end_time",
        "model",
    }

    code, out_json, _ = run_pick(*files, "--quiet", "--format", "json")
    body = json.loads(out_json)
    assert [p["peak_time"] for p in body["picks"]] == [r["peak_time"] for r in rows]
    assert body["model"] == DEFAULT_MODEL and len(body["model_sha256"]) == 64

    qml = tmp_path / "picks.xml"
    code, _, _ = run_pick(*files, "--quiet", "--format", "quakeml", "--output", str(qml))
    assert code == 0
    catalog = obspy.read_events(str(qml))
    qml_picks = catalog[0].picks
    assert len(qml_picks) == len(rows)
    assert {p.phase_hint for p in qml_picks} == {r["phase"] for r in rows}
    p_pick = next(p for p in qml_picks if p.phase_hint == "P")
    assert p_pick.waveform_id.channel_code.endswith("Z")


def test_plot_and_summary(tmp_path):
    png = tmp_path / "picks.png"
    code, _, err = run_pick(
        str(sorted(REAL.glob("BG*.mseed"))[0]), "--plot", str(png), "-o", str(tmp_path / "p.csv")
    )
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert "picks (P: 1, S: 1)" in err


def test_unknown_model_is_a_clear_error():
    code, _, err = run_pick(str(REAL), "--model", "no-such-model")
    assert code != 0 and "unknown model 'no-such-model'" in err and "phasenet-original" in err
