"""Fine-tuning from a catalogue: windows cut from continuous waveforms around a QuakeML catalogue's analyst picks
(labels at the picks' samples, picks without data left out and counted), and `seispick finetune --catalog
EVENTS.xml --waveforms DIR` running a short fine-tuning on them."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402
from obspy import Stream, Trace, UTCDateTime  # noqa: E402
from obspy.core.event import Catalog, Event, Origin, Pick, WaveformStreamID  # noqa: E402

from seispick.cli.main import cli  # noqa: E402
from seispick.training.data.catalog_windows import catalog_samples  # noqa: E402
from seispick.training.data.labels import sample_labels  # noqa: E402
from seispick.training.data.synthetic_waveforms import SyntheticConfig, synthetic_samples  # noqa: E402

RATE = 100.0
START = UTCDateTime(2024, 3, 1, 0, 0, 0)
STATIONS = ("S1", "S2")
N_EVENTS = 5
EVENT_EVERY_S = 100.0


def write_archive(folder, n_events: int = N_EVENTS):
    """Continuous 3-component days (one file per station) with synthetic events pasted in, and a catalogue of
    their P and S picks (manual), plus a pick on a station without data. Returns (catalogue path, picks)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    events = list(synthetic_samples(n_events * len(STATIONS), seed=5, config=SyntheticConfig(n_samples=3000)))
    n = int((n_events + 1) * EVENT_EVERY_S * RATE)
    catalog, truth = Catalog(), []
    for k, sta in enumerate(STATIONS):
        data = {c: rng.normal(0, 1e-3, n).astype(np.float32) for c in "ZNE"}
        for j in range(n_events):
            ev = events[k * n_events + j]
            at = int((30 + j * EVENT_EVERY_S) * RATE)  # first sample of the pasted event
            for row, comp in enumerate(ev.channel_order):
                data[comp][at : at + ev.n_samples] += ev.waveform[row] * 1e-2
            for phase, index in (("P", ev.p_index), ("S", ev.s_index)):
                truth.append((sta, j, phase, START + (at + index) / RATE))
        Stream(
            [Trace(data[c], header={"network": "XX", "station": sta, "channel": f"HH{c}",
                                    "sampling_rate": RATE, "starttime": START}) for c in "ZNE"]
        ).write(str(folder / f"XX.{sta}.mseed"), format="MSEED")  # fmt: skip
    for j in range(n_events):
        event = Event(origins=[Origin(time=START + 25 + j * EVENT_EVERY_S, latitude=0, longitude=0)])
        for sta, jj, phase, time in truth:
            if jj == j:
                channel = "HHZ" if phase == "P" else "HHE"
                event.picks.append(
                    Pick(time=time, phase_hint=phase + "g", evaluation_mode="manual",
                         waveform_id=WaveformStreamID("XX", sta, "", channel))
                )  # fmt: skip
        if j == 0:  # a station the archive has no data of
            event.picks.append(
                Pick(time=START + 33, phase_hint="P", evaluation_mode="manual",
                     waveform_id=WaveformStreamID("XX", "GONE", "", "HHZ"))
            )  # fmt: skip
        catalog.append(event)
    path = folder.parent / "events.xml"
    catalog.write(str(path), format="QUAKEML")
    return path, truth


def test_catalogue_windows_carry_labels_at_the_picked_samples(tmp_path):
    catalog, truth = write_archive(tmp_path / "archive")
    found = catalog_samples(catalog, [tmp_path / "archive"])
    assert len(found.samples) == N_EVENTS * len(STATIONS)
    assert found.n_events == N_EVENTS and found.n_picks == len(truth) + 1
    assert any("1 of" in note and "no waveform data" in note for note in found.notes)
    stream = Stream()
    for sta in STATIONS:
        from obspy import read

        stream += read(str(tmp_path / "archive" / f"XX.{sta}.mseed"))
    for sta, j, phase, time in truth:
        [sample] = [
            s
            for s in found.samples
            if s.station == f"XX.{sta}" and abs(s.start_time + 30 - truth_time(truth, sta, j, "P")) < 0.02
        ]
        index = sample.p_index if phase == "P" else sample.s_index
        assert index is not None
        assert abs(sample.start_time + index / RATE - time) < 0.5 / RATE  # the label sits at the pick
        # and the window's data there is the archive's data at that time (Z first)
        z = stream.select(station=sta, channel="HHZ")[0]
        at = int(round((time - z.stats.starttime) * RATE))
        assert sample.channel_order == "ZNE" and sample.waveform[0, index] == pytest.approx(z.data[at])
        labels = sample_labels(sample)
        row = 1 if phase == "P" else 2
        assert abs(int(np.argmax(labels[row])) - index) <= 1
        assert sample.source["origin_time"] == UTCDateTime(START + 25 + j * EVENT_EVERY_S)


def truth_time(truth, sta, j, phase):
    return next(t for s, jj, ph, t in truth if (s, jj, ph) == (sta, j, phase))


def test_finetune_from_a_catalogue_runs_a_short_training(tmp_path):
    catalog, _ = write_archive(tmp_path / "archive")
    out = tmp_path / "run"
    result = CliRunner().invoke(
        cli,
        ["finetune", "--catalog", str(catalog), "--waveforms", str(tmp_path / "archive"), "--out", str(out)]
        + ["--epochs", "1", "--windows-per-sample", "1", "--batch-size", "4", "--no-calibrate-thresholds"],
    )
    assert result.exit_code == 0, result.output
    assert "10 windows from 21 picks of 5 events" in result.output
    assert "split by time: 6 train, 2 validation, 2 test" in result.output
    card = json.loads((out / "model" / "card.json").read_text())
    assert "events.xml" in card["training_data"]
    assert "test split" in result.output


def test_catalogue_options_need_each_other(tmp_path):
    result = CliRunner().invoke(cli, ["finetune", "--waveforms", str(tmp_path), "--out", str(tmp_path / "r")])
    assert result.exit_code != 0 and "--catalog" in result.output


def test_a_phase_picked_twice_under_one_event_is_labelled_twice():
    from seispick.training.data.datasets import PickRecord, samples_from_picks

    stream = Stream(
        [Trace(np.zeros(12000, np.float32), header={"network": "XX", "station": "S1", "channel": f"HH{c}",
                                                     "sampling_rate": RATE, "starttime": START}) for c in "ZNE"]
    )  # fmt: skip
    picks = [
        PickRecord("XX.S1", "P", START + 40, "XX.S1..HHZ", "ev1"),
        PickRecord("XX.S1", "S", START + 45, "XX.S1..HHE", "ev1"),
        PickRecord("XX.S1", "P", START + 52, "XX.S1..HHZ", "ev1"),  # a second arrival under the same event
    ]
    [sample] = samples_from_picks(stream, picks, "events.xml", "archive")
    assert (sample.p_index, sample.s_index) == (3000, 3500) and sample.other_picks == [("P", 4200)]
