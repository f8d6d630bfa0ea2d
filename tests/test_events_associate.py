"""Association on a synthetic network: PyOcto through seispick finds the event, its picks, and nothing else."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from obspy import UTCDateTime, read_events
from obspy.geodetics import gps2dist_azimuth

from seispick.cli.associate_cmd import associate
from seispick.events import synthetic_network as syn
from seispick.events.associate import AssociationConfig, Associator
from seispick.events.event import CSV_COLUMNS
from seispick.events.picksets import PickSet
from seispick.events.quakeml import events_to_quakeml, validate
from seispick.events.velocity import Layered
from seispick.picking.formats import picks_to_csv, picks_to_json, picks_to_quakeml

T0 = UTCDateTime("2024-05-01T12:00:00")
VP, VS = 6.0, 3.5


def scenario(seed: int, spurious_fraction: float = 0.3):
    """12 stations within 60 km, one event inside, picks with +-0.05 s noise and a share of spurious picks."""
    rng = np.random.default_rng(seed)
    stations = syn.network(12, 46.0, 8.0, 60, seed=seed)
    hypo = syn.Hypocentre(
        T0 + rng.uniform(0, 30),
        46.0 + rng.uniform(-0.3, 0.3),
        8.0 + rng.uniform(-0.3, 0.3),
        rng.uniform(2, 25),
    )
    true = syn.event_picks(stations, hypo, VP, VS, noise_s=0.05, rng=rng)
    n_spurious = round(spurious_fraction / (1 - spurious_fraction) * len(true))
    spurious = syn.spurious_picks(
        stations, n_spurious, hypo.time.timestamp - 300, hypo.time.timestamp + 300, rng
    )
    return stations, hypo, true, spurious


def hypocentral_error_km(event, hypo) -> float:
    metres, _, _ = gps2dist_azimuth(
        event.origin.latitude, event.origin.longitude, hypo.latitude, hypo.longitude
    )
    return math.hypot(metres / 1000.0, event.origin.depth_km - hypo.depth_km)


def assert_right_picks(event, stations, hypo, true, spurious) -> None:
    """Every true pick, except where a spurious pick of the same station and phase lies within the
    pick-match tolerance of the true arrival (then one of the two, never both); no other spurious pick."""
    arrivals = syn.arrival_times(stations, hypo, VP, VS)
    tolerance = AssociationConfig().pick_match_tolerance_s
    chosen = {a.pick_id for a in event.arrivals}
    ambiguous = set()
    for p in spurious:
        near = abs(p.peak_time.timestamp - arrivals[p.trace_id[:7]][p.phase]) <= tolerance
        if p.id in chosen:
            assert near, f"spurious pick {p} far from any arrival was associated"
        if near:
            ambiguous.add((p.trace_id, p.phase))
    for p in true:
        if (p.trace_id, p.phase) not in ambiguous:
            assert p.id in chosen, f"true pick {p} missing"
    keys = [(a.pick.trace_id, a.phase) for a in event.arrivals]
    assert len(keys) == len(set(keys))  # one pick per station and phase
    assert event.n_picks >= len(true) - len(ambiguous)


@pytest.mark.parametrize("seed", range(5))
def test_one_event_at_the_truth_with_its_picks(seed: int):
    stations, hypo, true, spurious = scenario(seed)
    assert len(spurious) >= 0.3 * (len(true) + len(spurious)) - 1
    result = Associator(stations).associate(PickSet.from_picks(true + spurious))

    assert len(result.events) == 1
    event = result.events[0]
    assert hypocentral_error_km(event, hypo) < 2.0
    assert abs(event.origin.time - hypo.time.timestamp) < 0.3

    assert_right_picks(event, stations, hypo, true, spurious)
    assert result.unassociated["no_event"] == len(true) + len(spurious) - event.n_picks


@pytest.mark.parametrize("seed", range(5))
def test_spurious_picks_alone_make_no_event(seed: int):
    stations, _, _, spurious = scenario(seed)
    result = Associator(stations).associate(PickSet.from_picks(spurious))
    assert result.events == []
    assert result.unassociated["no_event"] == len(spurious)


def test_layered_model_equal_to_the_homogeneous_one_finds_the_same_event(tmp_path: Path):
    stations, hypo, true, spurious = scenario(1)
    layered = Layered((0.0, 40.0, 120.0), (VP, VP, VP), (VS, VS, VS), source="constant")
    result = Associator(stations, AssociationConfig(velocity=layered), table_dir=tmp_path).associate(
        PickSet.from_picks(true + spurious)
    )
    assert len(result.events) == 1
    assert hypocentral_error_km(result.events[0], hypo) < 2.0
    assert abs(result.events[0].origin.time - hypo.time.timestamp) < 0.3


def test_events_found_slice_by_slice_over_hours():
    """Events every 20 minutes for 3 hours, 2 s before the 1-hour slice edges among them: each found once."""
    rng = np.random.default_rng(7)
    stations = syn.network(15, 46.0, 8.0, 60, seed=7)
    hypos = [syn.Hypocentre(T0 + 1200 * i - 2, 46.0, 8.0 + 0.1 * (i % 3), 8.0) for i in range(1, 10)]
    picks = [p for h in hypos for p in syn.event_picks(stations, h, rng=rng)]
    calls = []
    result = Associator(stations, AssociationConfig(slice_s=3600)).associate(
        PickSet.from_picks(picks), progress=lambda d, t: calls.append((d, t))
    )
    assert [round(e.origin.time - h.time.timestamp, 0) for e, h in zip(result.events, hypos)] == [0.0] * 9
    assert len(result.events) == 9
    assert calls[-1][0] == calls[-1][1] >= 3


def write_stations_csv(stations, path: Path) -> Path:
    with path.open("w") as handle:
        handle.write("network,station,latitude,longitude,elevation_m\n")
        for s in stations.stations.values():
            handle.write(f"{s.network},{s.station},{s.latitude},{s.longitude},{s.elevation_m}\n")
    return path


@pytest.mark.parametrize("fmt", ["csv", "json", "quakeml"])
def test_cli_reads_every_pick_format_and_writes_the_event(tmp_path: Path, fmt: str):
    stations, hypo, true, spurious = scenario(2)
    writers = {"csv": picks_to_csv, "json": picks_to_json, "quakeml": picks_to_quakeml}
    picks_file = tmp_path / f"picks.{'xml' if fmt == 'quakeml' else fmt}"
    picks_file.write_text(writers[fmt](true + spurious))
    out = tmp_path / "events.csv"
    run = CliRunner().invoke(
        associate,
        [
            str(picks_file),
            "--stations",
            str(write_stations_csv(stations, tmp_path / "st.csv")),
            "-o",
            str(out),
        ],
    )
    assert run.exit_code == 0, run.output
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 1
    assert set(CSV_COLUMNS) <= set(rows[0])
    row = rows[0]
    assert abs(UTCDateTime(row["origin_time"]) - hypo.time) < 0.3
    assert int(row["n_p"]) + int(row["n_s"]) == int(row["n_picks"]) >= 20
    assert int(row["n_stations"]) == 12
    assert row["magnitude"] == "" and row["magnitude_type"] == ""
    assert "1 event(s) from" in run.output


def test_quakeml_events_validate_and_reference_the_picks_by_their_ids(tmp_path: Path):
    stations, hypo, true, spurious = scenario(3)
    result = Associator(stations).associate(PickSet.from_picks(true + spurious))
    document = events_to_quakeml(result.events)
    assert validate(document) == []
    catalog = read_events(io.BytesIO(document.encode()))
    assert len(catalog) == 1
    qev = catalog[0]
    origin = qev.preferred_origin()
    event = result.events[0]
    assert str(qev.resource_id) == f"smi:seispick/event/{event.event_id}"
    assert origin.evaluation_mode == "automatic"
    assert origin.quality.used_phase_count == event.n_picks
    assert origin.quality.used_station_count == 12
    assert origin.quality.azimuthal_gap == pytest.approx(event.origin.azimuthal_gap_deg)
    assert origin.quality.standard_error == pytest.approx(event.origin.rms_s)
    assert origin.time_errors.uncertainty > 0 and origin.depth_errors.uncertainty > 0
    assert origin.origin_uncertainty.horizontal_uncertainty > 0
    ids = {str(p.resource_id) for p in qev.picks}
    assert ids == {
        f"smi:seispick/pick/{p.id}" for p in true + spurious if p.id in {a.pick_id for a in event.arrivals}
    }
    for arrival in origin.arrivals:
        pick = arrival.pick_id.get_referred_object()
        assert pick is not None and pick.phase_hint == arrival.phase
        assert abs(arrival.time_residual) < 0.3
    residuals = {a.pick_id: a.residual_s for a in event.arrivals}
    assert {str(a.pick_id).rsplit("/", 1)[1]: a.time_residual for a in origin.arrivals} == pytest.approx(
        residuals
    )


def test_json_output_lists_arrivals_and_unassociated_counts(tmp_path: Path):
    stations, _, true, spurious = scenario(4)
    picks_file = tmp_path / "picks.json"
    picks_file.write_text(picks_to_json(true + spurious))
    run = CliRunner().invoke(
        associate,
        [
            str(picks_file),
            "--stations",
            str(write_stations_csv(stations, tmp_path / "st.csv")),
            "--format",
            "json",
            "-q",
        ],
    )
    assert run.exit_code == 0, run.output
    body = json.loads(run.stdout)
    assert body["picks"] == len(true) + len(spurious)
    (event,) = body["events"]
    assert body["associated"] == event["n_picks"] == len(event["arrivals"])
    assert body["unassociated"]["no_event"] == body["picks"] - body["associated"]
    assert {a["pick_id"] for a in event["arrivals"]} <= {p.id for p in true + spurious}


def kth_neighbour_km(stations, k: int) -> np.ndarray:
    """Distance from each station to its k-th nearest other station, by ObsPy's geodesics."""
    coords = [(s.latitude, s.longitude) for s in stations.stations.values()]
    out = []
    for lat, lon in coords:
        km = sorted(
            gps2dist_azimuth(lat, lon, la, lo)[0] / 1000.0 for la, lo in coords if (la, lo) != (lat, lon)
        )
        out.append(km[k - 1])
    return np.array(out)


def test_association_cutoff_follows_the_station_spacing():
    """Dense network: the 100 km floor; sparse: twice the median distance to the 8th neighbour; small: none."""
    dense = syn.network(300, 46.0, 8.0, 300, seed=1)
    sparse = syn.network(40, 46.0, 8.0, 600, seed=2)
    small = syn.network(12, 46.0, 8.0, 20, seed=3)
    assert Associator(dense).cutoff_km == 100.0
    expected = 2 * float(np.median(kth_neighbour_km(sparse, 8)))
    assert expected > 100.0
    assert Associator(sparse).cutoff_km == pytest.approx(expected, rel=0.01)
    assert Associator(small).cutoff_km == math.inf  # reaches every station anyway
    assert Associator(dense, AssociationConfig(cutoff_km=math.inf)).cutoff_km == math.inf
    with pytest.raises(ValueError, match="cutoff_km"):
        Associator(dense, AssociationConfig(cutoff_km=0.0))


def test_far_stations_still_join_an_event_found_within_the_cutoff():
    """A 600 km network, an event picked everywhere: found from the near stations, located with all of them."""
    rng = np.random.default_rng(5)
    stations = syn.network(300, 46.0, 8.0, 300, seed=5)
    hypo = syn.Hypocentre(T0, 46.2, 8.3, 10.0)
    true = syn.event_picks(stations, hypo, VP, VS, noise_s=0.05, rng=rng)
    associator = Associator(stations)
    assert associator.cutoff_km == 100.0
    result = associator.associate(PickSet.from_picks(true))
    assert len(result.events) == 1
    event = result.events[0]
    assert hypocentral_error_km(event, hypo) < 2.0
    assert max(a.distance_km for a in event.arrivals) > 2 * associator.cutoff_km
    assert event.n_picks >= 0.95 * len(true)
