"""`seispick evaluate --catalog`: analyst picks of a QuakeML catalogue against models' picks on continuous data,
threshold calibration over time blocks, and `seispick models tune` writing the calibrated copy of a model.

The catalogue is built with ObsPy from the analyst picks of tests/data/real (picks.csv), with one pick removed and
one moved by 0.3 s; the expected counts are counted here, straight from those picks and the picking core's picks
on each file, without the module under test.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys

import obspy
import pytest
from click.testing import CliRunner
from obspy.core.event import Catalog, Event, Pick, WaveformStreamID

from seispick.cli.main import cli
from seispick.events import catalog_evaluation as ce
from seispick.models.registry import ModelRegistry
from seispick.picking.annotate import annotate
from seispick.picking.waveforms import read_waveform_file
from tests.streams import REAL

PICKERS = ["phasenet-original", "phasenet-ta109c"]  # every shipped picker (convnetquake-ta109c is a detector)
REMOVED = ("BK.BKS..HH", "S")  # the analyst pick taken out of the catalogue
MOVED = ("NC.BJOB..HN", "P")  # the analyst pick moved by +0.3 s
SHIFT = 0.3


# -- the pure parts --------------------------------------------------------------------------------------------


def test_match_is_one_to_one_and_greedy_by_smallest_residual():
    # model 0.08 is 0.08 from reference 0 and 0.07 from reference 0.15: it goes to the nearer one
    pairs, missed, false = ce.match([0.0, 0.15], [0.08], 0.1)
    assert [(i, j) for i, j, _ in pairs] == [(1, 0)] and missed == [0] and false == []
    # two model picks near one reference: the nearer is the match, the other a false pick
    pairs, missed, false = ce.match([10.0, 20.0], [10.05, 9.92, 19.96, 30.0], 0.1)
    assert [(i, j) for i, j, _ in pairs] == [(0, 0), (1, 2)]
    assert missed == [] and false == [1, 3]
    assert pairs[0][2] == pytest.approx(0.05) and pairs[1][2] == pytest.approx(-0.04)
    # a residual of exactly the tolerance counts
    assert len(ce.match([1.0], [1.1], 0.1)[0]) == 1 and len(ce.match([1.0], [1.1001], 0.1)[0]) == 0


def test_score_counts_per_station_and_phase_residuals_and_false_picks_per_hour():
    spans = [ce.Span("XX.A", 0.0, 3600.0), ce.Span("XX.B", 0.0, 1800.0), ce.Span("XX.B", 1800.0, 3600.0)]
    ref = [
        ce.RefPick("XX.A", "P", 100.0),
        ce.RefPick("XX.A", "S", 110.0),
        ce.RefPick("XX.B", "P", 200.0),
        ce.RefPick("XX.B", "P", 5000.0),  # outside the data: not scored
        ce.RefPick("XX.C", "P", 100.0),  # a station without data: not scored
    ]
    picks = [
        ce.ModelPick("XX.A", "P", 100.04),
        ce.ModelPick("XX.A", "S", 110.3),  # within 0.5 s only
        ce.ModelPick("XX.B", "P", 200.0),
        ce.ModelPick("XX.B", "S", 300.0),  # false
        ce.ModelPick("XX.A", "P", 1000.0),  # false
    ]
    s = ce.score("m", ref, picks, spans)
    assert s.n_outside == 2 and s.hours == pytest.approx(2.0)  # XX.B's two spans join into one hour
    p1 = s.row("P", 0.1)
    assert (p1.tp, p1.fp, p1.fn, p1.n_reference, p1.n_model) == (2, 1, 0, 2, 3)
    assert p1.false_per_hour == pytest.approx(0.5)
    assert p1.residual_median == pytest.approx(0.02) and p1.residual_mad == pytest.approx(0.02)
    s1, s5 = s.row("S", 0.1), s.row("S", 0.5)
    assert (s1.tp, s1.fp, s1.fn) == (0, 2, 1) and (s5.tp, s5.fp, s5.fn) == (1, 1, 0)
    assert math.isnan(s1.residual_median) and s5.residual_median == pytest.approx(0.3)
    a = s.row("P", 0.1, "XX.A")
    assert (a.tp, a.fp, a.fn, a.hours) == (1, 1, 0, pytest.approx(1.0))
    assert a.precision == 0.5 and a.recall == 1.0 and a.f1 == pytest.approx(2 / 3)
    assert s.row("S", 0.5, "XX.B").fp == 1 and s.row("S", 0.5, "XX.B").n_reference == 0


def test_reference_picks_from_quakeml_take_manual_p_and_s_picks_once(tmp_path):
    t0 = obspy.UTCDateTime("2024-01-01T00:00:00")
    wid = WaveformStreamID("XX", "A", "00", "HHZ")

    def pick(dt, hint, mode="manual", w=wid):
        return Pick(time=t0 + dt, phase_hint=hint, evaluation_mode=mode, waveform_id=w)

    first = Event(
        picks=[pick(1, "Pg"), pick(3, "Sn"), pick(5, "pP"), pick(6, "AML"), pick(2, "P", "automatic")]
    )
    second = Event(picks=[pick(1, "Pg"), pick(4, "S", w=WaveformStreamID("XX", "B", "", "HHN"))])
    path = tmp_path / "events.xml"
    Catalog([first, second]).write(str(path), format="QUAKEML")
    found = ce.reference_picks(ce.read_catalog(path))
    assert [(p.station, p.phase, p.time - t0.timestamp) for p in found.picks] == [
        ("XX.A", "P", 1.0),
        ("XX.A", "S", 3.0),
        ("XX.B", "S", 4.0),
    ]
    assert found.n_events == 2 and len(found.notes) == 3  # automatic, not P/S, listed twice
    everything = ce.reference_picks(ce.read_catalog(path), manual_only=False)
    assert len(everything.picks) == 4
    with pytest.raises(ce.CatalogError, match="events.txt"):
        ce.read_catalog(tmp_path / "events.txt")


def test_calibration_chooses_on_other_blocks_and_scores_the_held_out_block():
    # three blocks, one reference P per block; at 0.3 the model adds a false pick in every block, at 0.5 none,
    # at 0.7 it misses the first block's pick
    spans = [ce.Span("XX.A", 0.0, 100.0), ce.Span("XX.A", 1000.0, 1100.0), ce.Span("XX.A", 2000.0, 2100.0)]
    ref = [ce.RefPick("XX.A", "P", t) for t in (50.0, 1050.0, 2050.0)]
    good = [ce.ModelPick("XX.A", "P", t + 0.01) for t in (50.0, 1050.0, 2050.0)]
    noisy = good + [ce.ModelPick("XX.A", "P", t + 20) for t in (50.0, 1050.0, 2050.0)]
    by_t = {0.3: noisy, 0.5: good, 0.7: good[1:]}
    starts = ce.time_blocks(spans, 3)
    assert starts == [0.0, 1000.0, 2000.0] and ce.block_of(starts, 1500.0) == 1
    cal = ce.calibrate_phase("P", ref, by_t, 0.3, starts)
    assert cal.fold_thresholds == [0.5, 0.5, 0.5] and cal.threshold == 0.5 and cal.recommended == 0.5
    assert cal.held_out_f1_card == pytest.approx(2 * 3 / (2 * 3 + 3))
    assert cal.held_out_f1_calibrated == 1.0
    # a grid choice that does not beat the card's on held-out blocks leaves the card's threshold in use
    same = ce.calibrate_phase("P", ref, {0.3: good, 0.5: good}, 0.3, starts)
    assert same.recommended == 0.3 and same.threshold == 0.3  # ties go to the card's threshold


# -- against shipped data --------------------------------------------------------------------------------------


def _analyst_rows(real_picks):
    rows = []
    for r in real_picks:
        if (r["trace_id"], r["phase"]) == REMOVED:
            continue
        time = r["time"] + (SHIFT if (r["trace_id"], r["phase"]) == MOVED else 0.0)
        rows.append({"trace_id": r["trace_id"], "phase": r["phase"], "time": time})
    return rows


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory, real_picks):
    """QuakeML of the analyst picks, one event per recording, as an FDSN event service would give them."""
    rows = _analyst_rows(real_picks)
    by_trace: dict[str, list[dict]] = {}
    for r in rows:
        by_trace.setdefault(r["trace_id"], []).append(r)
    catalog = Catalog()
    for trace_id, picks in by_trace.items():
        net, sta, loc, bi = trace_id.split(".")
        event = Event()
        for r in picks:
            channel = bi + ("Z" if r["phase"] == "P" else "E")
            event.picks.append(
                Pick(
                    time=r["time"],
                    phase_hint=r["phase"],
                    evaluation_mode="manual",
                    waveform_id=WaveformStreamID(net, sta, loc, channel),
                )
            )
        catalog.append(event)
    path = tmp_path_factory.mktemp("catalog") / "events.xml"
    catalog.write(str(path), format="QUAKEML")
    return path, rows


def _hand_count(model, files, analyst_rows) -> dict[tuple[str, float], tuple[int, int, int]]:
    """TP/FP/FN per (phase, tolerance), file by file: each recording holds at most one analyst pick per phase,
    and its model picks come straight from the picking core at the card's thresholds."""
    out = {(ph, tol): [0, 0, 0] for ph in "PS" for tol in (0.1, 0.5)}
    for path in files:
        stream = read_waveform_file(path)
        result = annotate(stream, model)
        start, end = min(tr.stats.starttime for tr in stream), max(tr.stats.endtime for tr in stream)
        instrument = {".".join(p.trace_id.split(".")[:2]) for p in result.picks}
        stations = {f"{tr.stats.network}.{tr.stats.station}" for tr in stream} | instrument
        for phase in "PS":
            analyst = [
                r["time"]
                for r in analyst_rows
                if r["phase"] == phase
                and ".".join(r["trace_id"].split(".")[:2]) in stations
                and start <= r["time"] <= end
            ]
            assert len(analyst) <= 1
            mine = [p.peak_time for p in result.picks if p.phase == phase]
            for tol in (0.1, 0.5):
                hit = int(bool(analyst) and any(abs(t - analyst[0]) <= tol + 1e-6 for t in mine))
                counts = out[(phase, tol)]
                counts[0] += hit
                counts[1] += len(mine) - hit
                counts[2] += len(analyst) - hit
    return {k: tuple(v) for k, v in out.items()}


@pytest.fixture(scope="module")
def evaluated(catalogue, tmp_path_factory):
    path, _ = catalogue
    out = tmp_path_factory.mktemp("evaluation")
    args = ["evaluate", "--catalog", str(path), "--waveforms", str(REAL), "-o", str(out / "scores.csv")]
    args += [a for name in PICKERS for a in ("--model", name)]
    args += ["--plot", str(out / "residuals.png"), "--calibrate", "--blocks", "3"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    with open(out / "scores.csv") as handle:
        rows = list(csv.DictReader(handle))
    calibration = json.loads((out / "scores.calibration.json").read_text())
    return result.output, rows, calibration, out


@pytest.mark.parametrize("name", PICKERS)
def test_catalog_counts_equal_a_hand_count(name, catalogue, evaluated, real_picks, real_files):
    _, analyst = catalogue
    output, rows, _, _ = evaluated
    model = ModelRegistry().load(name, prefer_gpu=False)
    expected = _hand_count(model, real_files, analyst)
    for (phase, tol), (tp, fp, fn) in expected.items():
        row = next(
            r
            for r in rows
            if r["model"] == name
            and r["station"] == "all"
            and r["phase"] == phase
            and float(r["tolerance"]) == tol
        )
        assert (int(row["tp"]), int(row["fp"]), int(row["fn"])) == (tp, fp, fn), (phase, tol)
    # the perturbation is visible: one analyst S fewer; the moved P misses at 0.1 s but matches at 0.5 s
    unperturbed = _hand_count(model, real_files, [dict(r) for r in real_picks])
    assert sum(expected[("S", 0.5)][::2]) == sum(unperturbed[("S", 0.5)][::2]) - 1
    assert expected[("P", 0.1)][0] == unperturbed[("P", 0.1)][0] - 1
    assert expected[("P", 0.5)] == unperturbed[("P", 0.5)]
    assert name in output and "false/h" in output


def test_catalog_evaluation_writes_per_station_rows_and_figures(evaluated):
    _, rows, _, out = evaluated
    stations = {r["station"] for r in rows}
    assert {"all", "NC.BJOB", "TA.109C", "BK.BKS"} <= stations
    bjob = next(
        r for r in rows if r["station"] == "NC.BJOB" and r["phase"] == "P" and r["tolerance"] == "0.1"
    )
    assert (bjob["tp"], bjob["fn"]) == ("0", "1")  # the pick moved by 0.3 s
    assert (out / "residuals.png").stat().st_size > 10_000


def _f1_of_rows(rows, name, phase, stations) -> float:
    """F1 within 0.1 s pooled over the per-station CSV rows of ``stations``."""
    tp = fp = fn = 0
    for r in rows:
        if (
            r["model"] == name
            and r["station"] in stations
            and r["phase"] == phase
            and r["tolerance"] == "0.1"
        ):
            tp, fp, fn = tp + int(r["tp"]), fp + int(r["fp"]), fn + int(r["fn"])
    return ce.f1_of(tp, fp, fn)


def test_calibration_is_no_worse_than_the_card_on_held_out_blocks(evaluated):
    output, rows, calibration, _ = evaluated
    assert calibration["kind"] == "seispick-catalog-calibration" and calibration["n_files"] == 32
    for name in PICKERS:
        record = calibration["models"][name]
        card = ModelRegistry().get(name).card
        assert record["model_sha256"] == card.onnx_sha256
        stations = {r["station"] for r in rows if r["model"] == name and r["station"] != "all"}
        # the recordings' vertical-only stations (no horizontal trace in their files) are calibrated apart
        vertical = set(record["calibration"]["vertical_only"]["stations"])
        assert (
            vertical == {"NC.BVL", "NC.HTU", "NC.MCM", "NN.MGN"}
            and "TA.109C" not in vertical
            and "BK.BKS" not in vertical
        )
        groups = [(record["calibration"]["phases"], stations - vertical, card.default_thresholds)]
        vertical_card = {**card.default_thresholds, **card.vertical_only_thresholds}
        groups.append((record["calibration"]["vertical_only"]["phases"], vertical, vertical_card))
        for phases, group, thresholds in groups:
            for phase, c in phases.items():
                assert c["card_threshold"] == thresholds[phase]
                # the card's threshold on all held-out blocks is its F1 on all the group's data, as reported
                assert c["held_out_f1_card"] == pytest.approx(_f1_of_rows(rows, name, phase, group), abs=1e-4)
        # the triggers' off ratio, chosen at the card's thresholds over all stations: the card's ratio (0.5)
        # on all held-out blocks is the reported F1
        ratios = record["calibration"]["off_ratio"]
        for phase, c in ratios["phases"].items():
            assert c["card_threshold"] == 0.5 and set(c["f1_by_threshold"]) >= {"0.3", "0.5", "0.8"}
            assert c["held_out_f1_card"] == pytest.approx(record["f1"][f"{phase}@0.1s"], abs=1e-4)
            assert ratios["recommended"][phase] in (c["threshold"], 0.5)
            assert len(c["fold_thresholds"]) == 3 and 0.1 <= c["threshold"] <= 0.9
            used = (
                c["held_out_f1_calibrated"]
                if c["recommended"] != c["card_threshold"]
                else c["held_out_f1_card"]
            )
            assert used >= c["held_out_f1_card"]
            print(
                f"{name} {phase}: card {c['card_threshold']} held-out F1 {c['held_out_f1_card']:.3f}; "
                f"calibrated {c['threshold']} (folds {c['fold_thresholds']}) {c['held_out_f1_calibrated']:.3f}; "
                f"use {c['recommended']}"
            )
    assert "threshold calibration" in output


def test_models_tune_writes_a_calibrated_copy_the_registry_loads(evaluated, tmp_path, monkeypatch):
    monkeypatch.setenv("SEISPICK_USER_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.delenv("SEISPICK_MODEL_DIRS", raising=False)
    _, _, calibration, out = evaluated
    path = out / "scores.calibration.json"
    runner = CliRunner()
    result = runner.invoke(
        cli, ["models", "tune", "phasenet-ta109c", "--from-calibration", str(path), "--name", "ta109c-tuned"]
    )
    assert result.exit_code == 0, result.output
    source = ModelRegistry().get("phasenet-ta109c").card
    entry = ModelRegistry().get("ta109c-tuned")
    assert entry.folder == tmp_path / "models" / "ta109c-tuned" and not entry.shipped
    recommended = calibration["models"]["phasenet-ta109c"]["calibration"]["recommended"]
    card = entry.card
    assert {k: card.default_thresholds[k] for k in "PS"} == recommended
    assert card.onnx_sha256 == source.onnx_sha256 and card.held_out == {}
    tuning = card.metrics["threshold_tuning"]
    assert tuning["catalog_sha256"] == calibration["catalog_sha256"] and tuning["source_model"] == source.name
    assert tuning["calibration"]["phases"]["S"]["held_out_f1_card"] >= 0
    assert "TA.109C" in card.split["threshold_calibration"]["val"]["stations"]
    model = ModelRegistry().load("ta109c-tuned", prefer_gpu=False)  # sha256 checked on load
    assert model.name == "ta109c-tuned"
    # by hand, and a name already taken is refused
    hand = runner.invoke(
        cli, ["models", "tune", "phasenet-original", "--p-threshold", "0.45", "--name", "original-p45"]
    )
    assert hand.exit_code == 0, hand.output
    tuned = ModelRegistry().get("original-p45").card
    assert tuned.default_thresholds["P"] == 0.45 and tuned.scope == "general"
    assert tuned.metrics["threshold_tuning"]["source"] == "set by hand"
    again = runner.invoke(
        cli, ["models", "tune", "phasenet-original", "--p-threshold", "0.4", "--name", "original-p45"]
    )
    assert again.exit_code != 0 and "exists" in again.output


def test_catalog_evaluation_needs_no_torch(catalogue, tmp_path):
    path, _ = catalogue
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['seisbench'] = None\n"
        "from seispick.cli.main import cli\n"
        f"cli(['evaluate', '--catalog', {str(path)!r}, '--waveforms', {str(REAL / 'BK_BKS_2017071510492061.mseed')!r}])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "phasenet-original" in done.stdout


def test_catalog_mode_refuses_a_detector_and_missing_waveforms(catalogue):
    path, _ = catalogue
    runner = CliRunner()
    detector = runner.invoke(
        cli, ["evaluate", "--catalog", str(path), "--waveforms", str(REAL), "--model", "convnetquake-ta109c"]
    )
    assert detector.exit_code != 0 and "detector" in detector.output
    missing = runner.invoke(cli, ["evaluate", "--catalog", str(path)])
    assert missing.exit_code != 0 and "--waveforms" in missing.output
    neither = runner.invoke(cli, ["evaluate"])
    assert neither.exit_code != 0 and "--data" in neither.output


def test_the_readme_script_writes_the_shipped_picks_as_a_catalogue(tmp_path):
    from scripts.picks_to_quakeml import catalog_from_rows

    with open(REAL / "picks.csv") as handle:
        rows = list(csv.DictReader(handle))
    path = tmp_path / "real-events.xml"
    catalog_from_rows(rows).write(str(path), format="QUAKEML")
    found = ce.reference_picks(ce.read_catalog(path))
    assert found.n_events == 31 and len(found.picks) == len(rows) == 64 and not found.notes


def test_calibration_beats_a_bad_card_on_held_out_blocks(catalogue, tmp_path, monkeypatch):
    """A copy of the default model with thresholds far off (0.9) calibrated on the catalogue: on the held-out
    time blocks the thresholds chosen on the other blocks beat the card's for P and S, the recommendation takes
    them, and `models tune --from-calibration` writes them into a copy the picking then uses."""
    monkeypatch.setenv("SEISPICK_USER_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.delenv("SEISPICK_MODEL_DIRS", raising=False)
    runner = CliRunner()
    args = ["models", "tune", "phasenet-original", "--p-threshold", "0.9", "--s-threshold", "0.9"]
    assert runner.invoke(cli, [*args, "--name", "original-bad"]).exit_code == 0
    path, _ = catalogue
    out = tmp_path / "bad.csv"
    result = runner.invoke(
        cli,
        ["evaluate", "--catalog", str(path), "--waveforms", str(REAL), "-m", "original-bad", "--calibrate"]
        + ["--blocks", "3", "-o", str(out)],
    )
    assert result.exit_code == 0, result.output
    record = json.loads(out.with_suffix(".calibration.json").read_text())["models"]["original-bad"]
    for phase, c in record["calibration"]["phases"].items():
        assert c["card_threshold"] == 0.9
        assert c["held_out_f1_calibrated"] > c["held_out_f1_card"] + 0.05, (phase, c)
        assert c["recommended"] == c["threshold"] != 0.9
    tuned = runner.invoke(
        cli,
        ["models", "tune", "original-bad", "--from-calibration", str(out.with_suffix(".calibration.json"))]
        + ["--name", "original-calibrated"],
    )
    assert tuned.exit_code == 0, tuned.output
    card = ModelRegistry().get("original-calibrated").card
    assert {ph: card.default_thresholds[ph] for ph in "PS"} == record["calibration"]["recommended"]
