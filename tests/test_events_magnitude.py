"""Local magnitude: Wood-Anderson amplitudes through the StationXML responses, IASPEI ML, medians, notes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from obspy import Stream, Trace, UTCDateTime
from obspy.core.inventory import Channel, Inventory, Network, Response, Station
from obspy.geodetics import gps2dist_azimuth

from seispick.events import synthetic_network as syn
from seispick.events.associate import Associator
from seispick.events.magnitude import local_magnitude
from seispick.events.picksets import PickSet
from seispick.events.quakeml import events_to_quakeml, validate

FS = 100.0
GEOPHONE = {"zeros": [0j, 0j], "poles": [-4.44 + 4.44j, -4.44 - 4.44j]}  # 1 Hz, damping 0.707
SENSITIVITY = 4.0e8  # counts per m/s at 1 Hz
WA = {
    "zeros": [0j],
    "poles": [-6.283 + 4.7124j, -6.283 - 4.7124j],
}  # Wood-Anderson for velocity input, gain 1


def _paz_response(paz: dict, freqs: np.ndarray) -> np.ndarray:
    s = 2j * np.pi * freqs
    out = np.ones_like(s)
    for z in paz["zeros"]:
        out = out * (s - z)
    for p in paz["poles"]:
        out = out / (s - p)
    return out


def _a0(paz: dict, f: float = 1.0) -> float:
    return 1.0 / abs(_paz_response(paz, np.array([f]))[0])


def _filter(data: np.ndarray, paz: dict, gain: float) -> np.ndarray:
    n = len(data)
    spectrum = np.fft.rfft(data, 2 * n)
    freqs = np.fft.rfftfreq(2 * n, 1 / FS)
    return np.fft.irfft(spectrum * gain * _paz_response(paz, freqs), 2 * n)[:n]


def ground_velocity(t: np.ndarray, t_p: float, t_s: float, amplitude: float) -> np.ndarray:
    """A 2 Hz S burst (and a weaker P one): ground velocity in m/s."""
    s = amplitude * np.sin(2 * np.pi * 2.0 * (t - t_s)) * np.exp(-(((t - t_s - 1.0) / 1.0) ** 2))
    p = 0.2 * amplitude * np.sin(2 * np.pi * 4.0 * (t - t_p)) * np.exp(-(((t - t_p - 0.5) / 0.5) ** 2))
    return s + p


@pytest.fixture(scope="module")
def located():
    rng = np.random.default_rng(11)
    stations = syn.network(8, 46.0, 8.0, 60, seed=11)
    hypo = syn.Hypocentre(UTCDateTime("2024-05-01T12:00:00"), 46.05, 8.05, 10.0)
    result = Associator(stations).associate(PickSet.from_picks(syn.event_picks(stations, hypo, rng=rng)))
    (event,) = result.events
    return stations, hypo, event


def waveforms_and_inventory(stations, hypo, scale: float = 1.0, responses: bool = True):
    """Raw counts of N and E channels at each station and the inventory describing the geophones."""
    start = hypo.time - 60
    t = np.arange(int(180 * FS)) / FS
    arrivals = syn.arrival_times(stations, hypo, 6.0, 3.5)
    stream, truth, inv_stations = Stream(), {}, []
    for key, st in stations.stations.items():
        metres, _, _ = gps2dist_azimuth(hypo.latitude, hypo.longitude, st.latitude, st.longitude)
        amplitude = scale * 1e-5 / max(metres / 1000.0, 1.0)
        channels = []
        for comp, factor in (("N", 1.0), ("E", 0.6)):
            velocity = ground_velocity(
                t,
                arrivals[key]["P"] - start.timestamp,
                arrivals[key]["S"] - start.timestamp,
                amplitude * factor,
            )
            counts = _filter(velocity, GEOPHONE, _a0(GEOPHONE) * SENSITIVITY)
            stream += Trace(
                counts.astype(np.float64),
                {
                    "network": st.network,
                    "station": st.station,
                    "location": "",
                    "channel": f"HH{comp}",
                    "sampling_rate": FS,
                    "starttime": start,
                },
            )
            truth[f"{key}..HH{comp}"] = np.abs(_filter(velocity, WA, 1.0)).max()
            response = (
                Response.from_paz(
                    GEOPHONE["zeros"],
                    GEOPHONE["poles"],
                    SENSITIVITY,
                    input_units="M/S",
                    output_units="COUNTS",
                    normalization_factor=_a0(GEOPHONE),
                )
                if responses
                else None
            )
            channels.append(
                Channel(
                    f"HH{comp}",
                    "",
                    st.latitude,
                    st.longitude,
                    st.elevation_m,
                    0.0,
                    sample_rate=FS,
                    response=response,
                )
            )
        inv_stations.append(Station(st.station, st.latitude, st.longitude, st.elevation_m, channels=channels))
    return stream, Inventory(networks=[Network("SY", stations=inv_stations)], source="test"), truth


def iaspei(amplitude_m: float, r_km: float) -> float:
    return math.log10(amplitude_m * 1e9) + 1.11 * math.log10(r_km) + 0.00189 * r_km - 2.09


def test_ml_matches_wood_anderson_amplitudes_of_the_true_ground_motion(located):
    stations, hypo, event = located
    stream, inventory, truth = waveforms_and_inventory(stations, hypo)
    elevations = {k: s.elevation_m for k, s in stations.stations.items()}
    result, notes = local_magnitude(event, stream, inventory, elevations)
    assert result is not None, notes
    assert result.station_count == 8 and result.magnitude_type == "ML"
    assert "1.11" in result.formula and result.distance_range_km == (0.0, 1000.0)
    expected_stations = []
    for sm in result.stations:
        st = stations.stations[sm.station]
        metres, _, _ = gps2dist_azimuth(
            event.origin.latitude, event.origin.longitude, st.latitude, st.longitude
        )
        r = math.hypot(metres / 1000.0, event.origin.depth_km + st.elevation_m / 1000.0)
        assert {c.trace_id for c in sm.components} == {f"{sm.station}..HHN", f"{sm.station}..HHE"}
        for comp in sm.components:
            assert comp.amplitude_m == pytest.approx(truth[comp.trace_id], rel=0.02)
        expected_stations.append(np.median([iaspei(truth[c.trace_id], r) for c in sm.components]))
        assert sm.ml == pytest.approx(expected_stations[-1], abs=0.02)
    assert result.value == pytest.approx(float(np.median(expected_stations)), abs=0.02)


def test_ten_times_the_motion_is_one_magnitude_more(located):
    stations, hypo, event = located
    one, inventory, _ = waveforms_and_inventory(stations, hypo)
    ten, _, _ = waveforms_and_inventory(stations, hypo, scale=10.0)
    a, _ = local_magnitude(event, one, inventory)
    b, _ = local_magnitude(event, ten, inventory)
    assert b.value - a.value == pytest.approx(1.0, abs=0.01)


def test_distance_range_leaves_far_stations_out(located):
    stations, hypo, event = located
    stream, inventory, _ = waveforms_and_inventory(stations, hypo)
    near = sorted(math.hypot(a.distance_km, event.origin.depth_km) for a in event.arrivals if a.phase == "P")
    limit = (near[3] + near[4]) / 2
    result, notes = local_magnitude(event, stream, inventory, distance_range_km=(0.0, limit))
    assert result.station_count == 4
    assert sum("outside" in n for n in notes) == 4


def test_without_responses_no_magnitude_and_a_note(located):
    stations, hypo, event = located
    stream, inventory, _ = waveforms_and_inventory(stations, hypo, responses=False)
    result, notes = local_magnitude(event, stream, inventory)
    assert result is None and notes == [
        "no magnitude: the station metadata holds no instrument responses (StationXML needed)"
    ]
    result, notes = local_magnitude(event, stream, None)
    assert result is None and "no instrument responses" in notes[0]


def test_magnitude_in_quakeml_validates(located):
    stations, hypo, event = located
    stream, inventory, _ = waveforms_and_inventory(stations, hypo)
    event.magnitude, _ = local_magnitude(event, stream, inventory)
    document = events_to_quakeml([event])
    event.magnitude = None
    assert validate(document) == []
    from io import BytesIO

    from obspy import read_events

    qev = read_events(BytesIO(document.encode()))[0]
    mag = qev.preferred_magnitude()
    assert mag.magnitude_type == "ML" and mag.station_count == 8
    assert len(qev.amplitudes) == 16 and len(qev.station_magnitudes) == 16
    assert "1000 km" in mag.comments[0].text


def test_cli_writes_magnitudes_from_waveforms_and_stationxml(located, tmp_path):
    import csv
    import io

    from click.testing import CliRunner

    from seispick.cli.associate_cmd import associate
    from seispick.picking.formats import picks_to_csv

    stations, hypo, event = located
    stream, inventory, _ = waveforms_and_inventory(stations, hypo)
    stream.write(str(tmp_path / "data.mseed"), format="MSEED")
    inventory.write(str(tmp_path / "stations.xml"), format="STATIONXML")
    (tmp_path / "picks.csv").write_text(picks_to_csv([a.pick for a in event.arrivals]))
    args = [str(tmp_path / "picks.csv"), "--stations", str(tmp_path / "stations.xml")]
    run = CliRunner().invoke(associate, [*args, "--waveforms", str(tmp_path / "data.mseed"), "-q"])
    assert run.exit_code == 0, run.output
    (row,) = list(csv.DictReader(io.StringIO(run.stdout)))
    expected, _ = local_magnitude(
        event, stream, inventory, {k: s.elevation_m for k, s in stations.stations.items()}
    )
    assert row["magnitude_type"] == "ML" and float(row["magnitude"]) == pytest.approx(
        expected.value, abs=0.01
    )
    assert row["magnitude_stations"] == "8"
    run = CliRunner().invoke(associate, [*args, "-q"])
    (row,) = list(csv.DictReader(io.StringIO(run.stdout)))
    assert row["magnitude"] == "" and "no magnitudes: give --waveforms" in run.output
