"""Live magnitudes: the bounded waveform ring, and live ML = offline ML on the demo's earthquake.

The demo's event archive (nine real NCEDC recordings placed as one earthquake, twice: 2:00 and 7:00) is picked
and associated offline (``annotate`` + ``Associator``, as ``seispick pick`` + ``seispick associate``) and its ML
measured as ``seispick associate --waveforms`` does (``_magnitudes`` on the files). Live, its 512-byte records
are decoded one by one (as the service decodes SeedLink records) in the order of their end times into the ring
built from the service's default settings, and ``LiveMagnitudes`` measures the same events every 5 s of data:
stations come in as their windows arrive, and once all have, the live ML is the offline ML.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
from obspy import Stream, Trace, UTCDateTime

from seispick.cli.associate_cmd import _magnitudes
from seispick.events.associate import Associator
from seispick.events.live_magnitude import (
    NO_EVENT_RESPONSES,
    NO_RESPONSES,
    NOTE_PREFIX,
    LiveMagnitudes,
    live_magnitudes,
)
from seispick.events.picksets import PickSet
from seispick.events.stations import from_inventory, read_stations
from seispick.events.waveform_ring import WaveformRing
from seispick.miniseed.decode import decode_record
from seispick.miniseed.pack import load_records
from seispick.models.registry import ModelRegistry
from seispick.picking.annotate import annotate
from seispick.picking.waveforms import read_waveforms
from seispick.service.settings import DEMO_STATIONS, EventsSettings
from seispick.service.stream.runtime import DEMO_DIR

EVENT_DIR = DEMO_DIR / "event"
T0 = UTCDateTime(2020, 1, 1)


def trace(station: str, channel: str, start: float, data: np.ndarray, rate: float = 100.0) -> Trace:
    header = {"network": "XX", "station": station, "channel": channel, "sampling_rate": rate}
    return Trace(data, header={**header, "starttime": T0 + start})


def records(station: str, channel: str, seconds: float, step: float = 1.0, seed: int = 0, dtype=np.int32):
    """One channel at 100 Hz cut into ``step``-second traces (and the whole of it)."""
    rng = np.random.default_rng(seed)
    whole = rng.integers(-5000, 5000, int(round(seconds * 100))).astype(dtype)
    n = int(round(step * 100))
    return [trace(station, channel, i / 100, whole[i : i + n]) for i in range(0, len(whole), n)], whole


# -- the ring ------------------------------------------------------------------------------------------------


def test_ring_keeps_the_last_seconds_of_each_channel_merged_as_added():
    ring = WaveformRing(seconds=30.0, max_bytes=10**9)
    parts, whole = records("A", "HHN", 100.0)
    for part in parts:
        ring.add(part)
    (tr,) = ring.stream("XX.A", T0, T0 + 200)
    assert tr.stats.npts == 3000 and tr.stats.starttime == T0 + 70  # contiguous records: one trace
    assert tr.data.dtype == np.int32 and np.array_equal(tr.data, whole[-3000:])  # the samples added
    assert ring.nbytes == 3000 * 4 == ring.station_nbytes("XX.A")
    assert ring.expired_bytes == 7000 * 4
    (window,) = ring.stream("XX.A", T0 + 80, T0 + 81)
    assert window.stats.starttime == T0 + 80 and window.stats.npts == 101
    assert np.array_equal(window.data, whole[8000:8101])
    assert len(ring.stream("XX.A", T0, T0 + 69)) == 0 and len(ring.stream("XX.B", T0, T0 + 200)) == 0


def test_ring_gaps_overlaps_and_repeats():
    ring = WaveformRing(seconds=300.0, max_bytes=10**9)
    parts, whole = records("A", "HHE", 20.0)
    for part in parts[:5] + parts[7:]:  # a 2 s gap
        ring.add(part)
    before = ring.nbytes
    for part in parts[8:12]:  # repeated records add nothing
        ring.add(part)
    assert ring.nbytes == before and ring.overlap_samples == 400
    a, b = ring.stream("XX.A", T0, T0 + 30)
    assert (a.stats.starttime, a.stats.npts) == (T0, 500) and (b.stats.starttime, b.stats.npts) == (
        T0 + 7,
        1300,
    )
    assert np.array_equal(a.data, whole[:500]) and np.array_equal(b.data, whole[700:])
    overlapping = trace("A", "HHE", 19.5, np.arange(100, dtype=np.int32))  # half new
    ring.add(overlapping)
    (_, c) = ring.stream("XX.A", T0, T0 + 30)
    assert c.stats.npts == 1350 and np.array_equal(c.data[-50:], np.arange(50, 100))


def test_ring_memory_never_exceeds_max_bytes_and_the_largest_stations_give_way():
    """10 stations of 3 channels, 1 s records for 200 s (1.8 MB within 150 s) in 400 kB: afterwards every
    station holds about the same (its newest data); a station with little data keeps all it has."""
    max_bytes = 400_000
    ring = WaveformRing(seconds=150.0, max_bytes=max_bytes)
    streams = {f"S{i}": {c: records(f"S{i}", f"HH{c}", 200.0, seed=i)[0] for c in "ZNE"} for i in range(10)}
    small = records("SMALL", "HHZ", 200.0)[0]  # one 1 s record every 20 s: 400 bytes each
    for second in range(200):
        for channels in streams.values():
            for c in "ZNE":
                ring.add(channels[c][second])
                assert ring.nbytes <= max_bytes
        if second % 20 == 0:
            ring.add(small[second])
        assert ring.nbytes == sum(ring.station_nbytes(k) for k in ring.stations())
    sizes = {k: ring.station_nbytes(k) for k in ring.stations()}
    assert ring.evicted_bytes > 0 and max_bytes - max_bytes // 32 - 12_000 <= ring.nbytes <= max_bytes
    kept = ring.stream("XX.SMALL", T0, T0 + 200)  # all its records within 150 s of the newest data (200 s)
    assert [tr.stats.starttime - T0 for tr in kept] == [60, 80, 100, 120, 140, 160, 180]
    big = [v for k, v in sizes.items() if k != "XX.SMALL"]
    assert min(big) > 30_000 and max(big) - min(big) <= 3 * 400  # one level (within a record per channel)
    for k in ("XX.S0", "XX.S9"):  # what stays is the newest: each channel ends at 200 s
        for first, last in ring.spans(k).values():
            assert last == T0 + 200 and first >= T0 + 200 - 40


def test_ring_drops_silent_stations_first_when_full():
    """A station silent since 60 s and a live one in 40 kB: when full, the silent station's data older than the
    newest minus ``seconds`` goes, and the live station keeps its whole 60 s."""
    ring = WaveformRing(seconds=60.0, max_bytes=40_000)
    silent, _ = records("OLD", "HHZ", 60.0)
    for part in silent:
        ring.add(part)  # 24 kB, then silent
    live, _ = records("NEW", "HHZ", 200.0, seed=1)
    for part in live[60:]:
        ring.add(part)
        assert ring.nbytes <= 40_000
    assert ring.station_nbytes("XX.NEW") == 60 * 100 * 4 and ring.evicted_bytes == 0
    assert ring.station_nbytes("XX.OLD") < 24_000 and ring.expired_bytes > 0


def test_ring_same_records_same_state_and_sample_types_kept():
    def fill(ring):
        for dtype in (np.int32, np.float32, np.float64):
            parts, _ = records(
                "A", f"HH{'ZNE'[[np.int32, np.float32, np.float64].index(dtype)]}", 50.0, dtype=dtype
            )
            for part in parts:
                ring.add(part)
        return ring

    a, b = fill(WaveformRing(20.0, 30_000)), fill(WaveformRing(20.0, 30_000))
    assert a.nbytes == b.nbytes <= 30_000
    sa, sb = a.stream("XX.A", T0, T0 + 60), b.stream("XX.A", T0, T0 + 60)
    assert [t.id for t in sa] == [t.id for t in sb] == ["XX.A..HHE", "XX.A..HHN", "XX.A..HHZ"]
    for x, y in zip(sa, sb):
        assert x.stats.starttime == y.stats.starttime and x.data.dtype == y.data.dtype
        assert x.data.tobytes() == y.data.tobytes()
    assert [t.data.dtype for t in sa] == [np.float64, np.float32, np.int32]


def test_ring_select_and_bad_arguments():
    ring = WaveformRing(10.0, 10_000, select=lambda trace_id: trace_id.endswith("N"))
    ring.add(trace("A", "HHZ", 0, np.zeros(100, np.int32)))
    ring.add(trace("A", "HHN", 0, np.zeros(100, np.int32)))
    assert ring.ignored == 1 and [t.id for t in ring.stream("XX.A", T0, T0 + 10)] == ["XX.A..HHN"]
    with pytest.raises(ValueError):
        WaveformRing(0, 10)
    with pytest.raises(ValueError):
        WaveformRing(10, 0)


# -- live ML = offline ML on the demo earthquake ---------------------------------------------------------------


@pytest.fixture(scope="module")
def demo():
    """The demo's events as ``seispick pick`` + ``seispick associate --waveforms`` find them offline."""
    archive = read_waveforms([EVENT_DIR]).stream
    picks = annotate(archive, ModelRegistry().load("phasenet-original")).picks
    stations = read_stations(DEMO_STATIONS)
    associator = Associator(stations)
    surface = associator.config.velocity.surface

    def associated():
        return associator.associate(PickSet.from_picks(picks))

    offline = associated()
    notes = _magnitudes(offline, stations, (EVENT_DIR,), surface)
    assert not any("without a magnitude" in n for n in notes)
    records_ = sorted(load_records([EVENT_DIR]), key=lambda r: (r.end_ns, r.station, r.channel))
    return {
        "stations": stations,
        "surface": surface,
        "offline": offline.events,
        "live": associated().events,  # the same events again, without magnitudes
        "records": records_,
    }


def test_the_demo_associates_with_its_stationxml_and_it_has_responses(demo):
    assert DEMO_STATIONS.name == "stations.xml" and demo["stations"].has_responses
    csv = read_stations(DEMO_DIR / "stations.csv")
    assert demo["stations"].stations == csv.stations  # the same coordinates as the CSV
    assert len(demo["offline"]) == 2
    for event in demo["offline"]:
        assert event.magnitude is not None and event.magnitude.station_count == 9


def test_live_ml_equals_offline_ml_on_the_demo_event(demo):
    settings = EventsSettings()
    live = live_magnitudes(
        demo["stations"], demo["surface"], settings.magnitude_ring_s, settings.magnitude_ring_max_bytes
    )
    events = {e.event_id: e for e in demo["live"]}
    offline = {e.event_id: e for e in demo["offline"]}
    assert events.keys() == offline.keys()
    history: dict[str, list[tuple[float, float | None, int]]] = {k: [] for k in events}
    next_step = None
    for record in demo["records"]:
        live.ring.add(decode_record(record.data))
        assert live.ring.nbytes <= settings.magnitude_ring_max_bytes
        now = record.end_ns / 1e9
        next_step = next_step or now
        if now < next_step:
            continue
        next_step += 5.0  # the service measures an open event again every few seconds
        for key, event in events.items():
            if now < event.origin.time + 10:  # declared once its picks have waited (the association's delay)
                continue
            measured = live(dataclasses.replace(event, notes=list(event.notes)))
            m = measured.magnitude
            history[key].append((now, m.value if m else None, m.station_count if m else 0))
    for key, steps in history.items():
        want = offline[key].magnitude
        complete = [(t, value) for t, value, n in steps if n == 9]
        assert complete, f"{key}: never measured on all nine stations: {steps}"
        t_first, value = complete[0]
        assert abs(value - want.value) <= 0.1
        assert value == pytest.approx(want.value, abs=1e-9)  # the same samples, the same computation
        assert all(v == value for _, v in complete)  # and so it stays while the ring holds the windows
        counts = [n for _, _, n in steps]
        rising = counts[: counts.index(9) + 1]
        assert rising == sorted(rising)  # stations join as their windows arrive
        assert counts[0] < 9 and t_first - offline[key].origin.time < 60  # stations come in as data arrives
        after = t_first - offline[key].origin.time
        print(
            f"{key}: offline ML {want.value:.6f}, live {value:.6f} from origin + {after:.0f} s; stations {rising}"
        )
    first, second = sorted(events, key=lambda k: events[k].origin.time)
    assert history[second][-1][2] == 9  # the 7:00 event is still held at the archive's end (10:00) ...
    last = live(dataclasses.replace(events[first], notes=[]))  # ... the 2:00 one has left the 360 s ring
    assert last.magnitude is None and any("no longer held" in n for n in last.notes)
    assert live.ring.nbytes == 9 * 2 * 100 * 4 * 360  # horizontals of 9 stations, 360 s of int32
    assert live.counts["stations_waiting"] > 0 and live.counts["with_magnitude"] > 0


def test_live_ml_with_a_ring_too_small_for_the_network_still_equals_offline(demo):
    """A 360 s ring capped at 1 MB: 9 stations x 2 channels share ~55 s each, enough for this event's windows
    (S-P under 5 s: 31 s before P to 10 s after S); the oldest data of the largest stations goes first."""
    live = live_magnitudes(demo["stations"], demo["surface"], 360.0, 1_000_000)
    _, second = sorted(demo["live"], key=lambda e: e.origin.time)
    for record in demo["records"]:
        if record.start_ns / 1e9 > second.origin.time + 60:
            break
        live.ring.add(decode_record(record.data))
        assert live.ring.nbytes <= 1_000_000
    measured = live(dataclasses.replace(second, notes=[]))
    want = next(e for e in demo["offline"] if e.event_id == second.event_id).magnitude
    assert live.ring.evicted_bytes > 0
    assert measured.magnitude.station_count == 9 and measured.magnitude.value == pytest.approx(
        want.value, abs=1e-9
    )


def _fed(demo, stations):
    live = live_magnitudes(stations, demo["surface"], 360.0, 10**8)
    for record in demo["records"]:
        live.ring.add(decode_record(record.data))
    return live


def test_a_station_without_response_is_left_out_with_a_note(demo):
    inventory = copy.deepcopy(demo["stations"].inventory)
    for sta in inventory[0]:
        if sta.code == "EV03":
            for cha in sta:
                cha.response = None
    live = _fed(demo, from_inventory(inventory))
    _, second = sorted(demo["live"], key=lambda e: e.origin.time)
    measured = live(dataclasses.replace(second, notes=[]))
    assert measured.magnitude.station_count == 8
    assert "SP.EV03" not in {s.station for s in measured.magnitude.stations}
    assert (
        NOTE_PREFIX + "SP.EV03: no instrument response in the station metadata, not in the ML"
        in measured.notes
    )
    assert live.counts["stations_without_response"] == 1
    assert not live.ring.spans("SP.EV03")  # nothing of it is kept

    for sta in inventory[0]:  # no station of the event has one, the table still has (a station elsewhere)
        for cha in sta:
            cha.response = None
    extra = copy.deepcopy(demo["stations"].inventory[0][0])
    extra.code = "FAR"
    inventory[0].stations.append(extra)
    live = _fed(demo, from_inventory(inventory))
    measured = live(dataclasses.replace(second, notes=[]))
    assert measured.magnitude is None and NOTE_PREFIX + NO_EVENT_RESPONSES in measured.notes
    assert live.counts["no_responses"] == 1


def test_stations_without_responses_give_no_magnitude_a_note_and_a_count(demo):
    csv = read_stations(DEMO_DIR / "stations.csv")  # coordinates only
    live = LiveMagnitudes(WaveformRing(360.0, 10**7), csv, *demo["surface"])
    event = dataclasses.replace(demo["live"][0], notes=["kept"])
    out = live(event)
    assert out is event and out.magnitude is None
    assert out.notes == ["kept", NOTE_PREFIX + NO_RESPONSES] and live.counts["no_responses"] == 1
    live(out)  # measured again: the note is replaced, not repeated
    assert out.notes == ["kept", NOTE_PREFIX + NO_RESPONSES] and live.counts["no_responses"] == 2
    assert live_magnitudes(csv, demo["surface"], 360.0, 10**7).ring.select("SP.EV01..HHN") is False


def test_an_unchanged_event_is_not_measured_twice(demo):
    live = _fed(demo, demo["stations"])
    _, second = sorted(demo["live"], key=lambda e: e.origin.time)
    a = live(dataclasses.replace(second, notes=[]))
    b = live(dataclasses.replace(second, notes=[]))
    assert live.counts["measurements"] == 1 and a.magnitude is b.magnitude
    assert isinstance(live.ring.stream("SP.EV01", T0, T0 + 600), Stream)
