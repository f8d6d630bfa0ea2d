"""Late components are waited for, not zeroed: components sent one after another give the offline picks.

A SeedLink ring filled channel after channel (all of HHZ, then HHN, then HHE) reaches the stream picker in
that order; the windows wait for the late components (within a per-instrument memory bound), so the picks are
those of ``annotate`` on the same data. Zeros stand only for a component that is not coming (silent while
the others stream at real time) or once the bound is reached, with a note and a counter.
"""

from __future__ import annotations

import asyncio

import numpy as np
import obspy
from prometheus_client import CollectorRegistry

from seispick.picking.annotate import annotate
from seispick.picking.incremental import InstrumentPicker
from seispick.service.stream.job_metrics import StreamMetrics, StreamSnapshot
from seispick.service.stream.picker import StreamPicker
from tests.streams import event_hour
from tests.test_continuous import assert_same
from tests.test_stream_picker import chop

T0 = obspy.UTCDateTime(2024, 8, 1, 0, 0, 3.0)
MINUTES = 15  # real events at 2, 7 and 12 min (tests/data/real NCEDC traces pasted into noise)


def station(name: str, seed: int, components: str = "ZNE") -> obspy.Stream:
    stream, _ = event_hour(T0, station=name, seed=seed)
    stream.trim(endtime=T0 + MINUTES * 60)
    return obspy.Stream([tr for tr in stream if tr.stats.channel[-1] in components])


def channel_after_channel(stream: obspy.Stream) -> list[obspy.Trace]:
    """The records of every channel in time order, the channels one after another: Z, then N, then E."""
    return sorted(chop(stream), key=lambda r: "ZNE".index(r.stats.channel[-1]))  # stable: time order kept


def scraped(states: list[dict], name: str, **labels: str) -> float | None:
    """A metric as /metrics gives it for a job whose stations are in ``states``."""
    registry = CollectorRegistry()
    StreamMetrics(registry).attach(
        lambda: StreamSnapshot(
            stations=states,
            record_problems={},
            sources={"running": 0, "totals": {}, "sources": []},
            publisher={},
            buffer_bytes=0,
            windows_in_flight=0,
            oldest_window_s=0.0,
            behind_for_s=0.0,
            ingest_held_s=0.0,
            dropped_windows=0,
        )
    )
    return registry.get_sample_value(name, labels)


def interleave(*sequences: list[obspy.Trace]) -> list[obspy.Trace]:
    """One record of each sequence in turn (stations sharing a connection)."""
    out: list[obspy.Trace] = []
    for k in range(max(map(len, sequences))):
        out += [seq[k] for seq in sequences if k < len(seq)]
    return out


def stream_picks(
    model, records: list[obspy.Trace], **options
) -> tuple[list, list[dict], dict[str, list[int]]]:
    """Picks of a StreamPicker fed ``records`` as fast as it takes them, its station states and per instrument
    the most bytes of samples and of all its buffers (samples and stacked probabilities) held."""

    async def main():
        async def predict(name, windows):
            return await asyncio.to_thread(model.predict, windows)

        got: list = []
        picker = StreamPicker(model, predict, lambda item, latency: got.append(item), **options)
        peak: dict[str, list[int]] = {}
        for i, record in enumerate(records):
            picker.add_trace(record)
            for name, state in picker.instruments.items():
                (instrument,) = state.pickers.values()
                held = [instrument.current.sample_bytes, instrument.buffer_bytes()]
                peak[name] = [max(a, b) for a, b in zip(peak.get(name, held), held)]
            if i % 20 == 0:
                await asyncio.sleep(0)
        states = picker.station_states()
        await picker.stop()  # closes every instrument and waits for its last windows
        return got, states, peak

    got, states, peak = asyncio.run(main())
    return [p for p in got if hasattr(p, "phase")], states, peak


def test_a_ring_filled_channel_after_channel_gives_the_offline_picks(shipped_model):
    late = station("AAA", seed=11)  # 15 min of HHZ, then of HHN, then of HHE
    usual = station("BBB", seed=12)  # interleaved as recorded
    vertical = station("VVV", seed=13, components="Z")  # HHN and HHE never come
    expected = annotate(late + usual + vertical, shipped_model).picks
    assert {p.trace_id for p in expected} == {"XX.AAA..HH", "XX.BBB..HH", "XX.VVV..HH"}

    records = interleave(channel_after_channel(late), chop(usual), chop(vertical))
    got, states, peak = stream_picks(shipped_model, records, silence_timeout_s=600.0)

    for trace_id in ("XX.AAA..HH", "XX.BBB..HH", "XX.VVV..HH"):  # events at the same times on each station
        mine = [p for p in got if p.trace_id == trace_id]
        assert_same(
            mine,
            sorted((p for p in expected if p.trace_id == trace_id), key=lambda p: (p.peak_time, p.phase)),
        )
    rows = {row["trace_id"]: row for row in states}
    for row in rows.values():
        assert row["late_records"] == 0 and row["late_component_bound_reached"] == 0, row
        assert not any("zero-filled from" in note for note in row["notes"]), row["notes"]
    assert any("a single component (HHZ)" in note for note in rows["XX.VVV..HH"]["notes"])
    # the wait kept AAA's 15 min of HHZ and HHN (15 bytes a sample: float32 and a flag, 3 components);
    # BBB about a window, a stride and a record
    assert peak["XX.AAA..HH"][0] > MINUTES * 60 * 100 * 15 and peak["XX.BBB..HH"][0] < 150_000


def test_the_wait_is_bounded_zero_filled_with_a_note_and_counted(shipped_model):
    late = station("AAA", seed=11)
    bound = 512 * 1024  # about 5.8 min of three 100 Hz components
    got, states, peak = stream_picks(
        shipped_model, channel_after_channel(late), silence_timeout_s=600.0, late_component_max_bytes=bound
    )
    (row,) = states
    assert row["late_component_bound_reached"] == 1
    filled = [note for note in row["notes"] if "zero-filled from" in note]
    assert len(filled) == 1, row["notes"]
    assert filled[0].startswith(
        "XX.AAA..HH: HHE, HHN lagged the other components by more than the wait buffer"
    )
    assert "(0.5 MiB)" in filled[0]
    assert row["late_records"] > 0  # HHN and HHE before the edge came after their windows ran
    # after every record the samples kept are within the bound (the unbounded wait keeps 1.35 MB and more)
    assert peak["XX.AAA..HH"][0] <= bound
    assert scraped(states, "seispick_late_component_bound_reached_total", network="XX") == 1
    assert any(p.phase == "P" for p in got)  # the windows went on with the vertical


START = 1_000_000 * 1500  # an absolute sample index on the window grid


def records_of(components: str, minutes: float, pace: float, dead: dict[str, float] | None = None):
    """(component letter, start index, samples, arrival) of 10 s records of noise in time order, arriving
    ``pace`` times faster than real time; a component in ``dead`` stops at that many seconds."""
    rng = np.random.default_rng(0)
    for k in range(int(minutes * 6)):
        for letter in components:
            if k * 10 >= (dead or {}).get(letter, np.inf):
                continue
            yield letter, START + k * 1000, rng.standard_normal(1000).astype(np.float32), k * 10 / pace


def run_records(card, records, **options) -> tuple[InstrumentPicker, int, int]:
    """An InstrumentPicker fed ``records``: it, the windows formed before its close and at its close."""
    picker = InstrumentPicker("XX.LATE..HH", card, "m", **options)
    before = 0
    for letter, start, values, now in records:
        requests, _ = picker.add(card.channel_order.index(letter), start, values, now)
        before += len(requests)
    requests, _ = picker.close()
    return picker, before, len(requests)


def test_a_component_that_never_comes_is_zero_filled_after_lag_tolerance_of_real_time(shipped_model):
    card = shipped_model.card
    real_time, before, _ = run_records(card, records_of("Z", 10, pace=1.0), lag_tolerance_s=30.0)
    assert 30 <= before <= 40  # 10 min at a stride of 15 s: the first window once 30 s of data passed
    assert (
        real_time.awaited == {card.channel_order.index("Z")} and not real_time.zero_fills
    )  # components note

    backlog, before, at_close = run_records(card, records_of("Z", 10, pace=100.0), lag_tolerance_s=30.0)
    assert before == 0  # a backlog coming 100 times faster than real time: waited for (memory allows)
    assert at_close == real_time.stats.windows  # zero-filled at the close, the same windows as batch


def test_a_component_that_stops_is_zero_filled_with_a_note(shipped_model):
    card = shipped_model.card
    picker, before, _ = run_records(
        card, records_of("ZNE", 10, pace=1.0, dead={"N": 300.0}), lag_tolerance_s=30.0
    )
    assert before >= 35  # the windows went on after N stopped at 5 min
    (fill,) = picker.zero_fills
    assert fill.components == (card.channel_order.index("N"),) and not fill.bound
    assert fill.time == picker.time_of(START + 30_000)  # from where N's data end
    assert picker.stats.late_component_bound_reached == 0


def test_the_bound_caps_the_wait_for_a_component_that_stopped(shipped_model):
    card = shipped_model.card
    records = list(records_of("ZNE", 20, pace=100.0, dead={"N": 300.0}))  # a backlog: N is waited for
    unbounded, before, _ = run_records(card, records, lag_tolerance_s=30.0)
    assert before <= 20 and not unbounded.zero_fills  # 20 min in 8 MiB: nothing formed past 5 min

    bound = 256 * 1024  # about 2.9 min of three 100 Hz components
    picker, before, _ = run_records(card, records, lag_tolerance_s=30.0, max_wait_bytes=bound)
    assert picker.stats.late_component_bound_reached == 1
    (fill,) = picker.zero_fills
    assert fill.bound and fill.components == (card.channel_order.index("N"),)
    assert fill.time == picker.time_of(START + 30_000)  # from where N's data end
    assert before >= 75  # 20 min at a stride of 15 s: the windows went on past the bound


def test_a_hole_in_one_component_is_zero_as_in_batch_and_does_not_stall(shipped_model):
    card = shipped_model.card
    records = records_of("ZNE", 10, pace=100.0)
    holed = [r for r in records if not (r[0] == "E" and 12_000 <= r[1] - START < 14_000)]  # 120-140 s
    picker, before, _ = run_records(card, holed, lag_tolerance_s=30.0)
    assert before >= 35 and not picker.zero_fills  # E delivered after its 20 s hole: the hole is zero


def test_the_wait_bound_setting_reaches_the_stream_picker(shipped_model, tmp_path):
    """``streaming.late_component_max_bytes`` is what the runtime's picker waits with (not its default)."""
    from prometheus_client import CollectorRegistry

    from seispick.service.settings import Settings, StreamingSettings
    from seispick.service.stream.job_metrics import StreamMetrics
    from seispick.service.stream.runtime import StreamingRuntime

    async def predict(name, windows):  # never called: no record arrives
        raise AssertionError("no inference expected")

    streaming = StreamingSettings(watch_dirs=[tmp_path], workers=1, late_component_max_bytes=123_456)
    runtime = StreamingRuntime(
        Settings(streaming=streaming), shipped_model, predict, StreamMetrics(CollectorRegistry())
    )
    assert runtime.picker.late_component_max_bytes == 123_456
