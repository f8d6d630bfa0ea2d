"""Bad input to `seispick pick`: a clear message or a correct result, never a traceback or silent empty output."""

from __future__ import annotations

import csv
import io

import numpy as np
import obspy
from click.testing import CliRunner

from seispick.cli.main import cli
from tests.streams import REAL


def pick(*args) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["pick", *map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def rows(out: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(out)))


def event_file() -> obspy.Stream:
    return obspy.read(str(sorted(REAL.glob("BK*.mseed"))[0]))


def analyst_p(stream: obspy.Stream) -> obspy.UTCDateTime:
    return stream[0].stats.starttime + 20.0  # the test traces have P at 20 s


def p_error(out: str, stream: obspy.Stream) -> float:
    p = [r for r in rows(out) if r["phase"] == "P"]
    return min(abs(obspy.UTCDateTime(r["peak_time"]) - analyst_p(stream)) for r in p) if p else np.inf


def test_empty_file(tmp_path):
    path = tmp_path / "empty.mseed"
    path.write_bytes(b"")
    code, _, err = pick(path)
    assert code != 0 and "empty file" in err and "Traceback" not in err


def test_not_miniseed(tmp_path):
    path = tmp_path / "notes.mseed"
    path.write_text("this is not a seismogram\n" * 20)
    code, _, err = pick(path)
    assert code != 0 and "not a miniSEED" in err


def test_missing_path(tmp_path):
    code, _, err = pick(tmp_path / "nope")
    assert code != 0 and "no such file" in err


def test_nans_become_gaps(tmp_path):
    st = event_file()
    for tr in st:
        tr.data = tr.data.astype(np.float32)
        tr.data[4500:4600] = np.nan  # 45-46 s, after the event
    path = tmp_path / "nan.mseed"
    st.write(str(path), format="MSEED", encoding="FLOAT32")
    code, out, err = pick(path)
    assert code == 0 and "NaN/Inf samples" in err and "treated as gaps" in err
    assert p_error(out, st) <= 0.1


def test_only_gaps_file(tmp_path):
    st = event_file()
    for tr in st:
        tr.data = np.full(tr.stats.npts, np.nan, dtype=np.float32)
    path = tmp_path / "gaps.mseed"
    st.write(str(path), format="MSEED", encoding="FLOAT32")
    code, _, err = pick(path)
    assert code != 0 and "no usable data" in err and "NaN/Inf" in err


def test_resampled_250_hz_with_note(tmp_path):
    st = event_file()
    st.resample(250.0)
    for tr in st:
        tr.data = tr.data.astype(np.float32)
    path = tmp_path / "fast.mseed"
    st.write(str(path), format="MSEED", encoding="FLOAT32")
    code, out, err = pick(path)
    assert code == 0 and "resampled from 250 Hz" in err
    assert p_error(out, st) <= 0.1


def test_resampled_20_hz_with_note(tmp_path):
    st = event_file()
    st.filter("lowpass", freq=8.0, zerophase=True)
    st.decimate(5, no_filter=True)
    for tr in st:
        tr.data = tr.data.astype(np.float32)
    path = tmp_path / "slow.mseed"
    st.write(str(path), format="MSEED", encoding="FLOAT32")
    code, out, err = pick(path)
    assert code == 0 and "resampled from 20 Hz" in err
    assert "trace_id" in out  # a result (header at least), and the summary says how many picks
    assert "picks (P:" in err


def test_single_channel_station(tmp_path):
    st = event_file().select(component="Z")
    path = tmp_path / "z.mseed"
    st.write(str(path), format="MSEED", encoding="FLOAT32")
    code, out, _ = pick(path)
    assert code == 0 and p_error(out, st) <= 0.1


def test_overlapping_duplicate_records(tmp_path):
    st = event_file()
    once = tmp_path / "once.mseed"
    st.write(str(once), format="MSEED", encoding="FLOAT32", reclen=512)
    twice = tmp_path / "twice.mseed"
    twice.write_bytes(once.read_bytes() + once.read_bytes())
    shifted = st.copy()
    for tr in shifted:  # an overlapping, partly duplicated second copy
        tr.trim(tr.stats.starttime + 10, tr.stats.endtime)
    shifted.write(str(tmp_path / "part.mseed"), format="MSEED", encoding="FLOAT32", reclen=512)
    _, out_once, _ = pick(once)
    code, out_twice, err = pick(twice, tmp_path / "part.mseed")
    assert code == 0
    strip = lambda out: [(r["phase"], r["peak_time"]) for r in rows(out)]  # noqa: E731
    assert strip(out_twice) == strip(out_once) and strip(out_once)


def test_conflicting_overlap_is_noted(tmp_path):
    st = event_file()
    other = st.copy()
    for tr in other:
        tr.data = tr.data * 2
    (st + other).write(str(tmp_path / "conflict.mseed"), format="MSEED", encoding="FLOAT32")
    code, out, err = pick(tmp_path / "conflict.mseed")
    assert code == 0 and "overlapping records with different samples" in err and rows(out)


def test_no_picks_is_said(tmp_path):
    rng = np.random.default_rng(0)
    tr = obspy.Trace(
        rng.standard_normal(6000).astype(np.float32), header={"station": "QUIET", "channel": "HHZ"}
    )
    tr.stats.sampling_rate = 100.0
    tr.write(str(tmp_path / "quiet.mseed"), format="MSEED")
    code, out, err = pick(tmp_path / "quiet.mseed", "--p-threshold", "0.99", "--s-threshold", "0.99")
    assert code == 0 and rows(out) == [] and "no picks" in err


def test_huge_samples_become_gaps(tmp_path):
    st = event_file()
    for tr in st:
        tr.data = tr.data.astype(np.float64)
        tr.data[4500:4600] = 1e300  # finite, but beyond what float32 normalisation can square
    path = tmp_path / "huge.mseed"
    st.write(str(path), format="MSEED", encoding="FLOAT64")
    code, out, err = pick(path)
    assert code == 0 and "treated as gaps" in err
    assert p_error(out, st) <= 0.1 and "nan" not in out.lower()
