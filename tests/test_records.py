"""Per-record decoding through libmseed (pymseed) gives exactly what ObsPy's reader gives, also miniSEED 3."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import obspy
import pymseed
import pytest

from seispick.miniseed.decode import (
    RecordError,
    decode_record,
    is_record_header,
    read_mseed_bytes,
    record_length,
    record_source_id,
)
from seispick.miniseed.pack import load_records, text_records

REAL = sorted((Path(__file__).parent / "data" / "real").glob("*.mseed"))


def test_every_real_record_decodes_as_obspy_reads_it() -> None:
    records = [r.data for r in load_records(REAL)]
    assert len(records) > 1000
    for data in records:
        ours = decode_record(data)
        theirs = read_mseed_bytes(data)[0]
        assert ours is not None
        assert ours.id == theirs.id
        assert ours.stats.starttime == theirs.stats.starttime
        assert ours.stats.sampling_rate == theirs.stats.sampling_rate
        assert ours.data.dtype == theirs.data.dtype
        np.testing.assert_array_equal(ours.data, theirs.data)


def test_record_traces_are_the_traces_obspy_builds() -> None:
    """decode_record builds its Trace without ObsPy's per-key Stats bookkeeping: the same Stats (derived
    delta, endtime and npts included), and a Trace that behaves as one (copy, new data, pickling)."""
    for data in [r.data for r in load_records(REAL)][:200]:
        ours = decode_record(data)
        assert ours is not None
        s = ours.stats
        header = {
            k: s[k] for k in ("network", "station", "location", "channel", "sampling_rate", "starttime")
        }
        built = obspy.Trace(ours.data.copy(), header=header)
        assert dict(ours.stats) == dict(built.stats)
        assert ours == built and pickle.loads(pickle.dumps(ours)) == built
        copied = ours.copy()
        copied.data = copied.data[:5]
        assert copied.stats.npts == 5 and ours.stats.npts == len(ours.data)
        assert copied.stats.endtime == copied.stats.starttime + 4 * s.delta


def _ms3_record(rate: float = 100.0) -> bytes:
    record = pymseed.MS3Record()
    record.sourceid = "FDSN:XX_TEST_00_H_H_Z"
    record.set_starttime_str("2024-03-01T12:00:00.5Z")
    record.samprate = rate
    record.formatversion = 3
    record.encoding = pymseed.DataEncoding.STEIM2
    record.reclen = 512
    samples = np.arange(-50, 50, dtype=np.int32)
    return next(record.generate(samples, "i"))


def test_miniseed3_records_decode() -> None:
    data = _ms3_record()
    assert is_record_header(data) and record_length(data) == len(data)
    assert record_source_id(data) == ("XX", "TEST")
    trace = decode_record(data)
    assert trace is not None and trace.id == "XX.TEST.00.HHZ"
    assert str(trace.stats.starttime) == "2024-03-01T12:00:00.500000Z"
    np.testing.assert_array_equal(trace.data, np.arange(-50, 50))


def test_text_records_have_no_samples() -> None:
    assert decode_record(text_records("<seedlink/>")[0]) is None


def test_garbage_and_impossible_rates_are_record_errors() -> None:
    with pytest.raises(RecordError, match="not a miniSEED record header"):
        decode_record(b"GET / HTTP/1.1\r\n" * 40)
    good = bytearray(load_records(REAL[:1])[0].data)
    good[48:56] = b"\xff" * 8  # the blockette chain now points nowhere
    with pytest.raises(RecordError) as bad:
        decode_record(bytes(good))
    assert bad.value.kind == "decode"
    with pytest.raises(RecordError, match="impossible sampling rate") as fast:
        decode_record(_ms3_record(rate=50_000.0))
    assert fast.value.kind == "rate"


def test_files_read_through_libmseed_equal_obspy() -> None:
    import obspy

    from seispick.picking.waveforms import read_mseed_libmseed

    files = REAL + sorted((Path(__file__).parent / "data" / "service").glob("*.mseed"))
    for path in files:
        ours = read_mseed_libmseed(path.read_bytes())
        theirs = obspy.read(str(path), format="MSEED")
        key = lambda tr: (tr.id, tr.stats.starttime)  # noqa: E731
        assert len(ours) == len(theirs), path.name
        for a, b in zip(sorted(ours, key=key), sorted(theirs, key=key)):
            assert (a.id, a.stats.starttime, a.stats.sampling_rate) == (
                b.id,
                b.stats.starttime,
                b.stats.sampling_rate,
            )
            assert a.data.dtype == b.data.dtype
            np.testing.assert_array_equal(a.data, b.data)
