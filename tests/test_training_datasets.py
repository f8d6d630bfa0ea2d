"""Dataset readers, format detection, validation before training, and deterministic splits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from obspy import Stream, Trace, UTCDateTime
from obspy.core.event import Catalog, Event, Magnitude, Origin, Pick, WaveformStreamID

from seispick.training.data.datasets import (
    DatasetError,
    detect_format,
    load_dataset,
    read_mseed_picks,
    read_seisbench,
    split_by_station,
    split_by_time,
    validate_dataset,
)
from seispick.training.data.samples import WaveformSample, reorder
from seispick.training.data.synthetic_waveforms import synthetic_samples

DATA = Path(__file__).parent / "data"
NCEDC, STEAD, SEISBENCH = DATA / "ncedc", DATA / "stead", DATA / "seisbench"


# --- readers on copies of the shared data --------------------------------------------------------------------------


def test_phasenet_npz_reader_reads_the_ncedc_copy():
    fmt, _ = detect_format(NCEDC)
    samples = load_dataset(NCEDC)
    assert fmt == "phasenet"
    assert [s.trace_id for s in samples] == [
        "NC_MEM_2017100709282692",
        "NC_MTU_2014071807051236_02",
        "NC_GDXB_2008072815280414",
        "NN_OMMB_2012062718271748",
    ]
    first = samples[0]
    assert first.waveform.shape == (3, 9001) and first.waveform.dtype == np.float32
    assert first.channel_order == "ENZ" and first.sampling_rate == 100.0
    assert (first.p_index, first.s_index) == (3000, 3287)
    assert first.station == "NC.MEM"
    assert first.source["file_time"] == UTCDateTime("2017-10-07T09:28:26.92")
    with np.load(NCEDC / "waveform_train" / "NC_MEM_2017100709282692.npz") as npz:
        np.testing.assert_array_equal(first.waveform, npz["data"].T.astype(np.float32))
    vertical = samples[1]  # channels EHZ: E and N stored as zeros
    assert vertical.source["channels"] == "EHZ"
    assert not vertical.waveform[:2].any() and vertical.waveform[2].any()


def test_stead_reader_reads_the_ta109c_copy():
    fmt, _ = detect_format(STEAD)
    samples = load_dataset(STEAD)
    assert fmt == "stead" and len(samples) == 4
    s = samples[0]
    assert s.trace_id == "109C.TA_20060723155859_EV" and s.station == "TA.109C"
    assert s.waveform.shape == (3, 6000) and s.channel_order == "ENZ"
    assert (s.p_index, s.s_index) == (700, 1894)
    assert s.start_time == UTCDateTime("2006-07-23T15:59:00.96")
    assert s.source["origin_time"] == UTCDateTime("2006-07-23T15:58:50.88")
    assert s.source["event_id"] == "8556349"
    assert s.source["source_latitude"] == pytest.approx(33.7496)
    assert s.source["source_magnitude"] == pytest.approx(3.6)
    assert "earthquake/local/109C.TA_20060723155859_EV" in s.path
    with h5py.File(STEAD / "waveforms.hdf5") as f:
        np.testing.assert_array_equal(s.waveform, f["earthquake/local"][s.trace_id][()].T)


def test_seisbench_reader_reads_a_dataset_written_by_seisbench():
    """The fixture was written by seisbench.data.WaveformDataWriter (bucket0$i,:3,:1000 and single traces)."""
    fmt, _ = detect_format(SEISBENCH)
    samples = load_dataset(SEISBENCH)
    assert fmt == "seisbench"
    assert [s.trace_id for s in samples] == [f"synthetic_{i}" for i in range(4)]
    assert [s.n_samples for s in samples] == [1000, 1200, 800, 1000]
    assert all(s.channel_order == "ZNE" and s.sampling_rate == 100.0 for s in samples)
    assert samples[0].station == "XX.S0" and samples[0].source["event_id"] == "ev0"
    assert samples[0].source["source_latitude"] == pytest.approx(33.0)
    # trace 2 has trace_P_arrival_sample and a later trace_Pg_arrival_sample: the first P-type arrival wins
    assert samples[2].p_index == 100
    with h5py.File(SEISBENCH / "waveforms.hdf5") as f:
        np.testing.assert_array_equal(samples[3].waveform, f["data/bucket0"][1, :3, :1000])


def test_seisbench_reader_removes_bucket_padding_and_handles_wc_order(tmp_path):
    rng = np.random.default_rng(0)
    short, long = rng.normal(size=(500, 3)), rng.normal(size=(800, 3))
    block = np.zeros((2, 800, 3), dtype=np.float32)  # dimension order "WC": samples first
    block[0, :500], block[1] = short, long
    with h5py.File(tmp_path / "waveforms.hdf5", "w") as f:
        f.create_dataset("data/bucket7", data=block)
        f.create_dataset("data_format/dimension_order", data="WC")
        f.create_dataset("data_format/component_order", data="ENZ")
    (tmp_path / "metadata.csv").write_text(
        "trace_name,trace_sampling_rate_hz,trace_p_arrival_sample,trace_s_arrival_sample,station_code\n"
        '"bucket7$0,:500,:3",50,10,,AAA\n'
        '"bucket7$1,:800,:3",40,,300,BBB\n'
    )
    a, b = read_seisbench(tmp_path)
    assert a.waveform.shape == (3, 500) and a.channel_order == "ENZ" and a.sampling_rate == 50.0
    np.testing.assert_allclose(a.waveform, short.T.astype(np.float32))
    assert (a.p_index, a.s_index, a.station) == (10, None, "AAA")
    assert (b.p_index, b.s_index, b.n_samples) == (None, 300, 800)


def _write_mseed(folder: Path, start: UTCDateTime, station: str = "STA1", n: int = 6000) -> None:
    rng = np.random.default_rng(1)
    traces = []
    for comp in "ZNE":
        header = {"network": "XX", "station": station, "location": "", "channel": f"HH{comp}"}
        header.update(sampling_rate=100.0, starttime=start)
        traces.append(Trace(rng.normal(size=n).astype(np.float32), header=header))
    Stream(traces).write(str(folder / f"{station}.mseed"), format="MSEED")


def test_mseed_reader_cuts_windows_around_csv_picks(tmp_path):
    t0 = UTCDateTime("2021-03-04T05:06:00")
    _write_mseed(tmp_path, t0)
    (tmp_path / "picks.csv").write_text(
        "station,phase,time\n"
        f"XX.STA1,P,{t0 + 20.0}\n"
        f"XX.STA1,S,{t0 + 25.5}\n"
        f"XX.STA1,Pg,{t0 + 40.0}\n"
        f"XX.STA1,PcP,{t0 + 41.0}\n"  # not a first-arrival phase: ignored
    )
    assert detect_format(tmp_path)[0] == "mseed"
    samples = list(read_mseed_picks(tmp_path, pre_s=5.0, post_s=5.0))
    assert len(samples) == 2  # the second P starts a new group
    first, second = samples
    assert first.channel_order == "ZNE" and first.station == "XX.STA1"
    assert first.start_time == t0 + 15.0 and first.n_samples == 1551  # 5 s before P to 5 s after S
    assert (first.p_index, first.s_index) == (500, 1050)
    assert (second.p_index, second.s_index) == (500, None)
    assert validate_dataset(samples) == []


def test_mseed_reader_uses_quakeml_picks_and_event_metadata(tmp_path):
    t0 = UTCDateTime("2021-03-04T05:06:00")
    _write_mseed(tmp_path, t0)
    wid = WaveformStreamID(network_code="XX", station_code="STA1", location_code="", channel_code="HHZ")
    event = Event(
        origins=[Origin(time=t0 + 10, latitude=33.5, longitude=-117.25, depth=8000.0)],
        magnitudes=[Magnitude(mag=2.5, magnitude_type="ML")],
        picks=[
            Pick(time=t0 + 20.0, phase_hint="P", waveform_id=wid),
            Pick(time=t0 + 23.0, phase_hint="S", waveform_id=wid),
        ],
    )
    Catalog([event]).write(str(tmp_path / "events.xml"), format="QUAKEML")
    (sample,) = load_dataset(tmp_path)
    assert (sample.p_index, sample.s_index) == (2000, 2300)  # 30 s before P wanted, data start at 20 s before
    assert sample.start_time == t0
    assert sample.source["source_latitude"] == 33.5 and sample.source["source_depth_km"] == 8.0
    assert sample.source["source_magnitude"] == 2.5 and sample.source["origin_time"] == t0 + 10


def test_mseed_reader_names_the_pick_file_when_waveforms_are_missing(tmp_path):
    _write_mseed(tmp_path, UTCDateTime("2021-03-04T05:06:00"))
    (tmp_path / "picks.csv").write_text("trace_id,phase,time\nXX.OTHER..HHZ,P,2021-03-04T05:06:20\n")
    with pytest.raises(DatasetError, match="picks.csv.*XX.OTHER"):
        load_dataset(tmp_path)
    assert list(read_mseed_picks(tmp_path, missing="skip")) == []


# --- validation before training ------------------------------------------------------------------------------------


def test_missing_and_empty_folders_are_reported(tmp_path):
    with pytest.raises(DatasetError, match=r"nowhere.*does not exist"):
        load_dataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"empty.*is empty"):
        load_dataset(tmp_path / "empty")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("hello")
    with pytest.raises(DatasetError, match="unrecognised"):
        load_dataset(tmp_path / "junk")


@pytest.fixture
def ncedc_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "ncedc"
    shutil.copytree(NCEDC, folder)
    return folder


def _rewrite(folder: Path, fname: str, itp: str | None = None, its: str | None = None, data=None) -> Path:
    path = folder / "waveform_train" / fname
    if data is not None:
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
        arrays["data"] = data(arrays["data"])
        np.savez(path, **arrays)
    lines = (folder / "waveform.csv").read_text().splitlines()
    for i, line in enumerate(lines):
        parts = line.split(",")
        if parts[0] == fname:
            parts[1] = parts[1] if itp is None else itp
            parts[2] = parts[2] if its is None else its
            lines[i] = ",".join(parts)
    (folder / "waveform.csv").write_text("\n".join(lines) + "\n")
    return path


BAD_CASES = {
    "unlabelled": ({"itp": "", "its": ""}, "unlabelled trace"),
    "label outside": ({"its": "9500"}, "S label at sample 9500 lies outside"),
    "negative label": ({"itp": "-3"}, "P label at sample -3 lies outside"),
    "nan": ({"data": lambda d: np.where(np.arange(len(d))[:, None] == 100, np.nan, d)}, "3 NaN and 0 Inf"),
    "inf": ({"data": lambda d: np.where(np.arange(len(d))[:, None] == 7, np.inf, d)}, "0 NaN and 3 Inf"),
    "channels": ({"data": lambda d: d[:, :2]}, "mismatched channel count: waveform has 2 channels"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_trace_gives_dataset_error_naming_the_file(ncedc_copy, case):
    changes, message = BAD_CASES[case]
    fname = "NC_GDXB_2008072815280414.npz"
    path = _rewrite(ncedc_copy, fname, **changes)
    with pytest.raises(DatasetError) as info:
        load_dataset(ncedc_copy)
    text = str(info.value)
    assert message in text
    assert f"{path}: " in text
    assert len(info.value.problems) == 1  # the three good files raise nothing


def test_validation_passes_good_data_and_allows_noise_when_asked():
    events_and_noise = list(synthetic_samples(6, seed=3, noise_fraction=0.5))
    assert any(s.is_noise for s in events_and_noise)
    assert validate_dataset(events_and_noise, allow_noise=True) == []
    problems = validate_dataset(events_and_noise)
    assert problems and all("unlabelled" in p for p in problems)
    assert validate_dataset([]) == ["dataset contains no samples"]


def test_csv_listing_a_missing_npz_names_it(ncedc_copy):
    (ncedc_copy / "waveform_train" / "NN_OMMB_2012062718271748.npz").unlink()
    with pytest.raises(
        DatasetError, match="NN_OMMB_2012062718271748.npz: listed in .*waveform.csv but missing"
    ):
        load_dataset(ncedc_copy)


def test_reorder_moves_channels_and_fills_missing_ones():
    wave = np.arange(12, dtype=np.float32).reshape(3, 4)
    s = WaveformSample(wave, 100.0, "ENZ", 1, 2, "t", "XX.A")
    z = reorder(s, "ZNE")
    np.testing.assert_array_equal(z.waveform, wave[[2, 1, 0]])
    one_two = reorder(s.replace(channel_order="21Z"), "ZNE")  # 1 = N, 2 = E
    np.testing.assert_array_equal(one_two.waveform, wave[[2, 1, 0]])
    only_z = reorder(s.replace(waveform=wave[2:], channel_order="Z"), "ZNE")
    assert only_z.waveform.shape == (3, 4) and not only_z.waveform[1:].any()


# --- splits ------------------------------------------------------------------------------------------------------


def _fake(station: str, time: str, event: str | None = None) -> WaveformSample:
    source = {"origin_time": UTCDateTime(time), "event_id": event}
    return WaveformSample(
        np.zeros((3, 10), np.float32), 100.0, "ZNE", 1, 5, f"{station}_{time}", station, None, source
    )


def test_split_by_station_keeps_stations_apart_and_is_deterministic():
    samples = [_fake(f"XX.S{i % 20:02d}", f"2020-01-01T00:{i % 60:02d}:00") for i in range(200)]
    split = split_by_station(samples, (0.7, 0.15, 0.15), seed=5)
    stations = [{s.station for s in part} for part in (split.train, split.val, split.test)]
    assert not (stations[0] & stations[1] or stations[0] & stations[2] or stations[1] & stations[2])
    assert [len(p) for p in (split.train, split.val, split.test)] == [140, 30, 30]
    again = split_by_station(list(reversed(samples)), (0.7, 0.15, 0.15), seed=5)
    assert again.description == split.description
    other = split_by_station(samples, (0.7, 0.15, 0.15), seed=6)
    assert other.description["test"]["stations"] != split.description["test"]["stations"]
    described = json.loads(split.to_json())
    assert described["method"] == "by_station" and described["seed"] == 5
    assert sorted(described["val"]["stations"]) == sorted(stations[1])


def test_split_by_station_never_leaves_a_part_empty():
    samples = [_fake("XX.BIG", "2020-01-01")] * 50 + [
        _fake("XX.A", "2020-01-02"),
        _fake("XX.B", "2020-01-03"),
    ]
    split = split_by_station(samples, seed=0)
    assert all(len(p) > 0 for p in (split.train, split.val, split.test))
    with pytest.raises(ValueError, match="cannot split 1 group"):
        split_by_station([_fake("XX.ONE", "2020-01-01")] * 5)


def test_split_by_time_is_chronological_and_keeps_events_together():
    samples = [
        _fake(f"XX.S{i % 3}", f"2020-01-{1 + i // 3:02d}T12:00:00", event=f"ev{i // 3}") for i in range(30)
    ]
    split = split_by_time(samples[::-1], (0.6, 0.2, 0.2))
    assert [len(p) for p in (split.train, split.val, split.test)] == [18, 6, 6]
    latest_train = max(s.source["origin_time"] for s in split.train)
    assert latest_train < min(s.source["origin_time"] for s in split.val)
    assert max(s.source["origin_time"] for s in split.val) < min(s.source["origin_time"] for s in split.test)
    events = [{s.source["event_id"] for s in p} for p in (split.train, split.val, split.test)]
    assert not (events[0] & events[1] or events[1] & events[2] or events[0] & events[2])
    assert split.description["train"]["end"] == "2020-01-06T12:00:00.000000Z"
    assert split.description["test"]["start"] == "2020-01-09T12:00:00.000000Z"
    fixed = split_by_time(samples, boundaries=(UTCDateTime("2020-01-03"), UTCDateTime("2020-01-05")))
    assert [len(p) for p in (fixed.train, fixed.val, fixed.test)] == [6, 6, 18]


def test_split_by_time_on_the_stead_copy_uses_origin_times():
    split = split_by_time(load_dataset(STEAD), (0.5, 0.25, 0.25))
    assert [s.trace_id[-17:-3] for s in split.train] == ["20060723155859", "20070109140205"]
    assert split.description["test"]["start"].startswith("2007-08-05")
