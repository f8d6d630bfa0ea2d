"""The asynchronous streaming layer: records in, the batch picks out, bad records counted."""

from __future__ import annotations

import asyncio

import numpy as np
import obspy

from seispick.picking.annotate import annotate
from seispick.service.stream.picker import StreamPicker
from tests.streams import event_hour


def chop(stream: obspy.Stream, seconds: float = 10.24) -> list[obspy.Trace]:
    """Records of ``seconds`` per channel, in order of their end time (as a SeedLink server sends them)."""
    out = []
    for tr in stream:
        t = tr.stats.starttime
        while t <= tr.stats.endtime:
            piece = tr.slice(t, t + seconds - tr.stats.delta)
            if piece.stats.npts:
                out.append(piece)
            t += seconds
    return sorted(out, key=lambda r: (r.stats.endtime, r.id))


def test_stream_picker_equals_batch_and_counts_bad_records(shipped_model):
    stream, _ = event_hour(obspy.UTCDateTime(2024, 6, 1, 0, 0, 3.0), station="AAA", seed=8)
    stream.trim(endtime=stream[0].stats.starttime + 900)
    other, _ = event_hour(obspy.UTCDateTime(2024, 6, 1, 0, 0, 3.0), station="BBB", seed=9)
    other.trim(endtime=other[0].stats.starttime + 900)
    expected = annotate(stream + other, shipped_model).picks

    async def main():
        calls = []

        async def predict(name, windows):
            calls.append(len(windows))
            return await asyncio.to_thread(shipped_model.predict, windows)

        got = []
        picker = StreamPicker(
            shipped_model, predict, lambda item, latency: got.append(item), silence_timeout_s=0.2
        )
        await picker.start()
        bad = stream[0].copy()
        bad.stats.sampling_rate = 1e6
        for i, record in enumerate(chop(stream + other)):
            picker.add_trace(record)
            if i == 50:
                picker.add_trace(bad)  # an impossible sampling rate: counted, the stream keeps flowing
            if i % 20 == 0:
                await asyncio.sleep(0)
        await asyncio.sleep(0.6)  # silence closes both instruments
        await picker.drain()
        states = picker.station_states()
        await picker.stop()
        return got, picker, states, calls

    got, picker, states, calls = asyncio.run(main())
    picks = sorted((p for p in got if hasattr(p, "phase")), key=lambda p: (p.peak_time, p.trace_id, p.phase))
    assert len(picks) == len(expected) > 0
    for a, b in zip(picks, expected):
        assert (a.trace_id, a.phase) == (b.trace_id, b.phase) and abs(a.peak_time - b.peak_time) <= 0.01
    assert picker.problems.counts == {"bad_sampling_rate": 1}
    assert {s["trace_id"] for s in states} == {"XX.AAA..HH", "XX.BBB..HH"}
    assert all(s["gaps"] == 0 and s["records"] > 0 for s in states)
    assert np.sum(calls) == sum(s["windows"] for s in states)


def test_failed_inference_is_retried_and_loses_no_pick(shipped_model):
    stream, _ = event_hour(obspy.UTCDateTime(2024, 6, 2, 0, 0, 0), station="CCC", seed=10)
    stream.trim(endtime=stream[0].stats.starttime + 300)
    expected = annotate(stream, shipped_model).picks

    async def main():
        failures = {"left": 3}

        async def flaky_predict(name, windows):
            if failures["left"]:
                failures["left"] -= 1
                raise RuntimeError("inference backend unavailable")
            return await asyncio.to_thread(shipped_model.predict, windows)

        got = []
        picker = StreamPicker(
            shipped_model, flaky_predict, lambda item, latency: got.append(item), silence_timeout_s=0.2
        )
        await picker.start()
        for record in chop(stream):
            picker.add_trace(record)
        await asyncio.sleep(0.3)
        await picker.drain()
        await picker.stop()
        return got, failures

    got, failures = asyncio.run(main())
    picks = sorted((p for p in got if hasattr(p, "phase")), key=lambda p: (p.peak_time, p.phase))
    assert failures["left"] == 0 and picks
    assert [(p.phase, round(p.peak_time.timestamp, 2)) for p in picks] == [
        (p.phase, round(p.peak_time.timestamp, 2)) for p in expected
    ]
