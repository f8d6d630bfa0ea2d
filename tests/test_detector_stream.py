"""A picker and a detector side by side in the stream: the same picks as ``annotate`` and the same detections as
``detect`` on the same data, record by record, through one ``StreamPicker`` (each model its own window)."""

from __future__ import annotations

import asyncio

import obspy
import pytest

from seispick.models.registry import ModelRegistry
from seispick.picking.annotate import annotate
from seispick.picking.detect import detect
from seispick.picking.results import Detection, Pick
from seispick.service.stream.picker import StreamPicker
from tests.streams import event_hour
from tests.test_stream_picker import chop

DETECTOR = "convnetquake-ta109c"


@pytest.fixture(scope="module")
def detector():
    return ModelRegistry().load(DETECTOR, prefer_gpu=False)


def test_picker_and_detector_in_one_stream_equal_their_offline_runs(shipped_model, detector):
    start = obspy.UTCDateTime(2024, 6, 1, 0, 0, 3.0)
    stream = obspy.Stream()
    for station, seed in (("AAA", 3), ("BBB", 4)):
        part, _ = event_hour(start, station=station, seed=seed)
        stream += part.trim(endtime=start + 700)
    expected_picks = annotate(stream, shipped_model).picks
    expected_detections = detect(stream, detector)
    assert len(expected_detections) >= 3, "the pasted events must be detected offline"
    assert {d.model for d in annotate(stream, shipped_model).detections} == {shipped_model.name}

    async def main():
        models = {m.name: m for m in (shipped_model, detector)}
        calls: dict[str, list[int]] = {name: [] for name in models}

        async def predict(name, windows):
            calls[name].append(windows.shape[-1])
            return await asyncio.to_thread(models[name].predict, windows)

        got: list = []
        picker = StreamPicker(
            [shipped_model, detector], predict, lambda item, latency: got.append(item), silence_timeout_s=0.2
        )
        await picker.start()
        for i, record in enumerate(chop(stream)):
            picker.add_trace(record)
            if i % 20 == 0:
                await asyncio.sleep(0)
        await asyncio.sleep(0.6)  # silence closes both instruments
        await picker.drain()
        states = picker.station_states()
        await picker.stop()
        return got, calls, states

    got, calls, states = asyncio.run(main())
    # each model ran its own windows: 30 s for the picker, 10 s for the detector
    assert set(calls[shipped_model.name]) == {3000} and set(calls[DETECTOR]) == {1000}
    picks = [g for g in got if isinstance(g, Pick)]
    detections = [g for g in got if isinstance(g, Detection) and g.model == DETECTOR]
    assert sorted(p.id for p in picks) == sorted(p.id for p in expected_picks)
    assert len(detections) == len(expected_detections)
    by_id = {d.id: d for d in detections}
    for want in expected_detections:
        have = by_id[want.id]  # same instrument, start, end and model
        assert (have.start_time, have.end_time) == (want.start_time, want.end_time)
        assert have.probability == pytest.approx(want.probability, abs=1e-6)
        assert have.cell == want.cell
        if want.cell is not None:
            assert have.cell_probability == pytest.approx(want.cell_probability, abs=1e-6)
    assert {s["trace_id"] for s in states} == {"XX.AAA..HH", "XX.BBB..HH"}  # one row per instrument
    assert sum(s["detections"] for s in states) == sum(isinstance(g, Detection) for g in got)
