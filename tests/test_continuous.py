"""Continuous picking from records in arrival order gives exactly the picks of batch annotation."""

from __future__ import annotations

import numpy as np
import obspy
import pytest

from seispick.picking.annotate import annotate
from seispick.picking.incremental import InstrumentPicker
from tests.streams import event_hour


def records(stream: obspy.Stream, rng: np.random.Generator, lag_records: int = 2):
    """Yield (component, start index, samples) in a plausible arrival order: variable record lengths,
    components interleaved with one lagging by a few records, an occasional duplicate."""
    per_comp = []
    for tr in stream:
        start = int(round(tr.stats.starttime.timestamp * tr.stats.sampling_rate))
        cuts, pos = [], 0
        while pos < tr.stats.npts:
            n = int(rng.integers(300, 1200))
            cuts.append((tr.stats.channel[-1], start + pos, tr.data[pos : pos + n].copy()))
            pos += n
        per_comp.append(cuts)
    order = []
    for cuts in per_comp:
        for rec in cuts:
            end = rec[1] + len(rec[2])  # a record is sent when its last sample is in
            delay = lag_records * 700 if rec[0] == "Z" else 0
            order.append((end + delay + rng.random() * 50, rec))
    order.sort(key=lambda x: x[0])
    for i, (_, rec) in enumerate(order):
        yield rec
        if i % 97 == 0:
            yield rec  # a duplicated record


def run_stream(stream, model, rng) -> tuple[list, InstrumentPicker]:
    card = model.card
    picker = InstrumentPicker("XX.AAA..HH", card, model.name, model.sha256)
    comp = {c: card.channel_order.index(c) for c in "ZNE"}
    emitted = []
    picker.max_buffer = 0

    def run(requests):
        if requests:
            outputs = model.predict(np.stack([r.window for r in requests]))
            for r, out in zip(requests, outputs):
                emitted.extend(picker.result(r.start, out))

    for c, start, values in records(stream, rng):
        requests, done = picker.add(comp[c], start, values)
        emitted.extend(done)
        picker.max_buffer = max(picker.max_buffer, picker.current.data.shape[1])
        run(requests)
    requests, done = picker.close()
    emitted.extend(done)
    run(requests)
    assert picker.pending == 0
    return emitted, picker


def assert_same(stream_picks, batch_picks):
    stream_picks = sorted(stream_picks, key=lambda p: (p.peak_time, p.phase))
    assert len(stream_picks) == len(batch_picks) > 0
    for a, b in zip(stream_picks, batch_picks):
        assert (a.phase, a.trace_id) == (b.phase, b.trace_id)
        assert abs(a.peak_time - b.peak_time) <= 0.01
        assert abs(a.start_time - b.start_time) <= 0.01 and abs(a.end_time - b.end_time) <= 0.01
        assert a.probability == pytest.approx(b.probability, abs=1e-5)


@pytest.mark.parametrize("start_second", [0.0, 7.3])
def test_streamed_records_give_batch_picks(shipped_model, start_second):
    stream, _ = event_hour(obspy.UTCDateTime(2024, 2, 2, 0, 0, start_second), seed=5)
    stream.trim(endtime=stream[0].stats.starttime + 1200)
    batch = annotate(stream, shipped_model)
    emitted, picker = run_stream(stream, shipped_model, np.random.default_rng(1))
    assert_same([e for e in emitted if hasattr(e, "phase")], batch.picks)
    assert picker.stats.duplicate_records > 0
    assert picker.stats.late_records == 0
    # memory per station is bounded: about a window, a stride and the lag of the slowest component
    assert picker.max_buffer <= card_bound(shipped_model.card)


def card_bound(card) -> int:
    return card.window_samples + 3 * (card.window_samples - card.overlap_samples) + 3000


def test_gap_splits_segments_like_batch(shipped_model):
    stream, _ = event_hour(obspy.UTCDateTime(2024, 2, 3, 0, 0, 0), seed=6)
    stream.trim(endtime=stream[0].stats.starttime + 1200)
    t0 = stream[0].stats.starttime
    gapped = stream.slice(endtime=t0 + 400) + stream.slice(starttime=t0 + 470)
    batch = annotate(gapped, shipped_model)
    assert len(batch.annotations) == 2
    emitted, picker = run_stream(gapped, shipped_model, np.random.default_rng(2))
    assert_same([e for e in emitted if hasattr(e, "phase")], batch.picks)
    assert picker.stats.gaps == 1


def test_dead_component_does_not_stall_its_station(shipped_model):
    """A component that stops delivering is waited for lag_tolerance_s, then windows go on with zeros."""
    card = shipped_model.card
    picker = InstrumentPicker("XX.DEAD..HH", card, "m", lag_tolerance_s=30.0)
    rng = np.random.default_rng(0)
    windows = 0
    start = 1_000_000 * 1500  # on the grid
    for k in range(60):  # 60 records of 10 s; N dies after 10 records
        t = start + k * 1000
        for comp in "ZNE":
            if comp == "N" and k >= 10:
                continue
            requests, _ = picker.add(
                card.channel_order.index(comp), t, rng.standard_normal(1000), now=k * 10.0
            )
            windows += len(requests)
    # 600 s of data: with the stride of 15 s, about 38 windows; they must keep coming after N died at 100 s
    assert windows >= 30
