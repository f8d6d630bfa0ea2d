"""Bad input to association: clear errors naming the file and the problem, or counted skips."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from obspy import UTCDateTime
from obspy.core.inventory import Inventory, Network, Station

from seispick.cli.associate_cmd import associate
from seispick.events import synthetic_network as syn
from seispick.events.associate import Associator
from seispick.events.picksets import PickFileError, PickSet, read_pick_files
from seispick.events.stations import StationFileError, read_stations
from seispick.events.velocity import Layered, VelocityModelError, read_velocity_model
from seispick.picking.formats import picks_to_csv
from tests.test_events_associate import scenario, write_stations_csv

REAL = Path(__file__).parent / "data" / "real"


def run_cli(*args: str):
    return CliRunner().invoke(associate, [*map(str, args), "-q"])


@pytest.fixture
def network_files(tmp_path: Path):
    stations, hypo, true, spurious = scenario(0)
    picks = tmp_path / "picks.csv"
    picks.write_text(picks_to_csv(true + spurious))
    return stations, write_stations_csv(stations, tmp_path / "stations.csv"), picks


# -- station metadata


def test_missing_station_file(tmp_path: Path, network_files):
    _, _, picks = network_files
    with pytest.raises(StationFileError, match="no such station file"):
        read_stations(tmp_path / "nope.xml")
    run = run_cli(picks, "--stations", tmp_path / "nope.xml")
    assert run.exit_code == 1 and "nope.xml: no such station file" in run.output


@pytest.mark.parametrize(
    "content, message",
    [
        ("<?xml version='1.0'?><FDSNStationXML><Network", "not a readable StationXML"),
        ("this is not metadata\n", "not a readable StationXML"),
        ("network,station,lat,lon\nSY,A,1,2\n", "lacks column(s) latitude, longitude, elevation_m"),
        ("network,station,latitude,longitude,elevation_m\nSY,A,north,2,0\n", "line 2: SY.A: not a number"),
        ("network,station,latitude,longitude,elevation_m\nSY,A,95,2,0\n", "latitude 95.0 outside"),
        ("network,station,latitude,longitude,elevation_m\nSY,A,1,2,0\nSY,A,1,2,0\n", "listed twice"),
        ("", "empty station file"),
    ],
)
def test_malformed_station_files(tmp_path: Path, network_files, content: str, message: str):
    _, _, picks = network_files
    bad = tmp_path / ("bad.csv" if content.startswith("network") else "bad.xml")
    bad.write_text(content)
    with pytest.raises(StationFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_stations(bad)
    run = run_cli(picks, "--stations", bad)
    assert run.exit_code == 1 and str(bad) in run.output and message in run.output


def test_station_without_coordinates_is_left_out_and_its_picks_counted(tmp_path: Path, network_files):
    stations, good, picks = network_files
    lines = good.read_text().splitlines()
    lines[1] = ",".join(lines[1].split(",")[:2] + ["", "", ""])  # first station: no coordinates
    missing = ".".join(lines[1].split(",")[:2])
    partial = tmp_path / "partial.csv"
    partial.write_text("\n".join(lines) + "\n")
    table = read_stations(partial)
    assert missing not in table and table.without_coordinates == {missing}
    assert any(missing in note for note in table.notes)
    pick_set = read_pick_files([picks])
    result = Associator(table).associate(pick_set)
    expected = sum(s == missing for s in pick_set.station)
    assert expected > 0 and result.unassociated["no_coordinates"] == expected
    assert any("without coordinates" in n and missing in n for n in result.notes)
    run = run_cli(picks, "--stations", partial)
    assert run.exit_code == 0 and f"without coordinates left out: {missing}" in run.output


def test_stationxml_station_without_coordinates_is_a_clear_error(tmp_path: Path):
    """StationXML requires coordinates: a station lacking them makes the file unreadable, named as such."""
    inventory = Inventory(networks=[Network("SY", stations=[Station("A", 46.0, 8.0, 100.0)])], source="test")
    path = tmp_path / "stations.xml"
    inventory.write(str(path), format="STATIONXML")
    text = path.read_text()
    start, end = text.index("<Latitude"), text.index("</Latitude>") + len("</Latitude>")
    path.write_text(text[:start] + text[end:])
    with pytest.raises(StationFileError) as info:
        read_stations(path)
    assert str(path) in str(info.value) and "not a readable StationXML" in str(info.value)


def test_stationxml_is_read(tmp_path: Path, network_files):
    stations, _, picks = network_files
    inv = Inventory(
        networks=[
            Network(
                "SY",
                stations=[
                    Station(s.station, s.latitude, s.longitude, s.elevation_m)
                    for s in stations.stations.values()
                ],
            )
        ],
        source="test",
    )
    path = tmp_path / "stations.xml"
    inv.write(str(path), format="STATIONXML")
    table = read_stations(path)
    assert set(table.stations) == set(stations.stations)
    assert not table.has_responses
    run = CliRunner().invoke(associate, [str(picks), "--stations", str(path)])
    assert run.exit_code == 0 and "1 event(s)" in run.output
    assert "no magnitudes" in run.output


# -- velocity models


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "empty velocity model"),
        ("depth_km,vp,vs\n", "empty velocity model"),
        (
            "depth_km,vp,vs\n0,5.8,3.4\n10,6.2,3.6\n8,6.5,3.8\n",
            "depths must increase strictly (node 3: 8 km after 10 km)",
        ),
        ("depth_km,vp,vs\n0,5.8,3.4\n0,6.2,3.6\n", "depths must increase strictly"),
        ("depth_km,vp,vs\n0,5.8,6.4\n", "vs (6.4) must be below vp (5.8)"),
        ("depth_km,vp,vs\n0,-5.8,3.4\n", "velocities must be positive"),
        ("depth_km,vp,vs\n0,fast,3.4\n", "row 2: three numbers expected"),
        ("z,alpha,beta\n0,5.8,3.4\n", "expected a header depth_km,vp,vs"),
    ],
)
def test_bad_velocity_models(tmp_path: Path, network_files, content: str, message: str):
    _, stations, picks = network_files
    path = tmp_path / "model.csv"
    path.write_text(content)
    with pytest.raises(VelocityModelError) as info:
        read_velocity_model(path)
    assert message in str(info.value) and str(path) in str(info.value)
    run = run_cli(picks, "--stations", stations, "--velocity", path)
    assert run.exit_code == 1 and message in run.output


def test_velocity_options_conflict_and_bad_homogeneous(tmp_path: Path, network_files):
    _, stations, picks = network_files
    model = tmp_path / "m.csv"
    model.write_text("depth_km,vp,vs\n0,5.8,3.4\n30,6.5,3.8\n")
    run = run_cli(picks, "--stations", stations, "--velocity", model, "--vp", "6")
    assert run.exit_code == 2 and "either --vp/--vs or --velocity" in run.output
    run = run_cli(picks, "--stations", stations, "--vp", "3", "--vs", "4")
    assert run.exit_code == 1 and "vs (4.0) must be below vp (3.0)" in run.output
    with pytest.raises(VelocityModelError, match="empty"):
        Layered((), (), ())


# -- pick files


@pytest.mark.parametrize(
    "name, content, message",
    [
        (
            "events.csv",
            "event_id,origin_time\nev-1,2024-01-01T00:00:00Z\n",
            "not a seispick picks file: column(s) trace_id, phase, peak_time missing",
        ),
        ("p.json", '{"events": []}', "expected seispick's JSON"),
        ("p.json", "{not json", "not valid JSON"),
        ("p.xml", "<quakeml><broken", "not a readable QuakeML document"),
        ("p.csv", "", "empty picks file"),
    ],
)
def test_wrong_pick_files(tmp_path: Path, network_files, name: str, content: str, message: str):
    _, stations, _ = network_files
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(PickFileError) as info:
        read_pick_files([path])
    assert message in str(info.value) and str(path) in str(info.value)
    run = run_cli(path, "--stations", stations)
    assert run.exit_code == 1 and message in run.output


def test_a_miniseed_file_given_as_picks(network_files):
    _, stations, _ = network_files
    mseed = sorted(REAL.glob("*.mseed"))[0]
    run = run_cli(mseed, "--stations", stations)
    assert run.exit_code == 1 and f"{mseed}: a binary file, not seispick picks" in run.output


def test_unreadable_pick_times_are_skipped_and_counted(tmp_path: Path, network_files):
    stations_table, stations, picks = network_files
    lines = picks.read_text().splitlines()
    header = lines[0].split(",")
    column = header.index("peak_time")
    broken = lines[1].split(",")
    broken[column] = "yesterday"
    path = tmp_path / "some_bad.csv"
    path.write_text("\n".join([lines[0], ",".join(broken), *lines[2:]]) + "\n")
    pick_set = read_pick_files([path])
    assert len(pick_set) == len(lines) - 2
    assert pick_set.notes == [f"{path}: 1 pick(s) with an unreadable peak_time skipped"]
    run = CliRunner().invoke(associate, [str(path), "--stations", str(stations)])
    assert run.exit_code == 0 and "1 pick(s) with an unreadable peak_time skipped" in run.output


def test_picks_of_other_phases_are_counted():
    stations, _, true, _ = scenario(0)
    odd = [
        syn.make_pick(
            next(iter(stations.stations.values())), "Pn", UTCDateTime("2024-05-01T12:00:00").timestamp
        )
    ]
    result = Associator(stations).associate(PickSet.from_picks(true + odd))
    assert result.unassociated["phase"] == 1 and len(result.events) == 1


def test_no_picks_and_both_inputs_are_usage_errors(network_files):
    _, stations, picks = network_files
    assert run_cli("--stations", stations).exit_code == 2
    run = run_cli(picks, "--stations", stations, "--follow", "redis://127.0.0.1:1/0")
    assert run.exit_code == 2 and "not both" in run.output
