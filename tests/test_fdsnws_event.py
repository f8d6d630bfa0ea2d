"""fdsnws-event 1 on the service, read by ObsPy's own FDSN client over real HTTP; SCML of events and picks.

Events come from the associator on a synthetic network (two earthquakes an hour apart, one with an ML) and
are put in the service's event store the way its live association publishes them; the service runs under
uvicorn on a free port and ``obspy.clients.fdsn.Client`` reads its WADL, version, catalogs and contributors
at construction, then queries it.
"""

from __future__ import annotations

import io
import warnings
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
from click.testing import CliRunner
from lxml import etree
from obspy import UTCDateTime, read_events
from obspy.clients.fdsn import Client
from obspy.clients.fdsn.header import FDSNBadRequestException, FDSNException, FDSNNoDataException

from seispick.cli.associate_cmd import associate
from seispick.cli.main import cli
from seispick.events import fdsn
from seispick.events import synthetic_network as syn
from seispick.events.associate import AssociationConfig, Associator
from seispick.events.magnitude import MagnitudeResult
from seispick.events.picksets import PickSet
from seispick.events.quakeml import events_to_scml, validate, validate_scml
from seispick.picking.formats import picks_to_csv, picks_to_scml, render, render_detections
from seispick.service.api.app import create_app
from seispick.service.publish.publisher import Record
from seispick.service.settings import EventsSettings, Settings
from seispick.service.stream.association import EventStore
from tests.streams import REAL
from tests.test_streaming_e2e import UvicornThread

T0 = UTCDateTime("2024-05-01T12:00:00")
HYPOCENTRES = [
    syn.Hypocentre(T0 + 10, 46.1, 8.1, 8.0),
    syn.Hypocentre(T0 + 3600, 45.8, 7.8, 15.0),
]
STATIONS = syn.network(12, 46.0, 8.0, 60, seed=3)
MAX_LIMIT = 50


def picks_of(hypo: syn.Hypocentre, seed: int):
    return syn.event_picks(STATIONS, hypo, noise_s=0.03, rng=np.random.default_rng(seed))


@pytest.fixture(scope="module")
def events():
    picks = [p for i, h in enumerate(HYPOCENTRES) for p in picks_of(h, i)]
    result = Associator(STATIONS, AssociationConfig()).associate(PickSet.from_picks(picks))
    assert len(result.events) == 2
    result.events.sort(key=lambda e: e.origin.time)
    result.events[0].magnitude = MagnitudeResult(2.5, [])
    return result.events


async def _stopped() -> None:
    """The fake association's stop (the lifespan stops the association it holds)."""


@pytest.fixture(scope="module")
def base_url(events):
    app = create_app(Settings(events=EventsSettings(keep=MAX_LIMIT)))
    store = EventStore(MAX_LIMIT)
    for event in events:
        store.put(event, Record.of(event, UTCDateTime("2024-05-01T13:30:00")))
    with UvicornThread(app) as server:
        # as the live association holds them (the lifespan started no association: no stations set)
        app.state.seispick.events = SimpleNamespace(store=store, state=lambda: {}, stop=_stopped)
        yield f"http://127.0.0.1:{server.port}"


@pytest.fixture(scope="module")
def client(base_url):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a WADL ObsPy finds lacking parameters in warns: fail on it
        return Client(base_url, timeout=30)


def test_client_discovers_the_event_service(client, base_url):
    assert "event" in client.services and "station" not in client.services
    assert client.services["available_event_catalogs"] == {"seispick"}
    assert client.services["available_event_contributors"] == {"seispick"}
    assert client.get_webservice_version("event") == [1, 2, 0]
    assert httpx.get(f"{base_url}/fdsnws/event/1/version").text == "1.2.0"
    index = httpx.get(f"{base_url}/fdsnws/event/1/")
    assert index.status_code == 200 and "includearrivals" in index.text


def test_get_events_in_a_time_window(client, events):
    cat = client.get_events(starttime=T0, endtime=T0 + 600)
    assert len(cat) == 1
    event = cat[0]
    assert str(event.resource_id) == f"smi:seispick/event/{events[0].event_id}"
    origin = event.preferred_origin()
    assert abs(origin.time - HYPOCENTRES[0].time) < 0.5
    assert abs(origin.latitude - 46.1) < 0.05 and abs(origin.longitude - 8.1) < 0.05
    assert event.picks == [] and origin.arrivals == []  # includearrivals defaults to false
    both = client.get_events(starttime=T0 - 60, endtime=T0 + 7200)
    assert [str(e.resource_id).rsplit("/", 1)[-1] for e in both] == [e.event_id for e in events[::-1]]
    oldest_first = client.get_events(starttime=T0 - 60, orderby="time-asc", limit=1)
    assert [str(e.resource_id).rsplit("/", 1)[-1] for e in oldest_first] == [events[0].event_id]


def test_include_arrivals_brings_picks_and_arrivals(client, events):
    cat = client.get_events(eventid=events[1].event_id, includearrivals=True)
    assert len(cat) == 1
    origin = cat[0].preferred_origin()
    assert len(origin.arrivals) == events[1].n_picks == len(cat[0].picks)
    pick_ids = {str(p.resource_id) for p in cat[0].picks}
    assert {str(a.pick_id) for a in origin.arrivals} == pick_ids
    assert {f"smi:seispick/pick/{a.pick_id}" for a in events[1].arrivals} == pick_ids


def test_magnitude_filters(client, events):
    cat = client.get_events(minmagnitude=2.0)
    assert [str(e.resource_id).rsplit("/", 1)[-1] for e in cat] == [events[0].event_id]
    assert cat[0].preferred_magnitude().mag == pytest.approx(2.5)
    assert len(client.get_events(minmagnitude=2.0, magnitudetype="ml")) == 1
    with pytest.raises(FDSNNoDataException):
        client.get_events(minmagnitude=3.0)
    with pytest.raises(FDSNNoDataException):
        client.get_events(minmagnitude=2.0, magnitudetype="Mw")


def test_region_and_depth_filters(client, events):
    near = client.get_events(latitude=46.1, longitude=8.1, maxradius=0.1)
    assert [str(e.resource_id).rsplit("/", 1)[-1] for e in near] == [events[0].event_id]
    box = client.get_events(minlatitude=45.5, maxlatitude=45.95, minlongitude=7.5, maxlongitude=7.95)
    assert [str(e.resource_id).rsplit("/", 1)[-1] for e in box] == [events[1].event_id]
    deep = client.get_events(mindepth=12)
    assert [str(e.resource_id).rsplit("/", 1)[-1] for e in deep] == [events[1].event_id]


def test_no_data_is_204_or_404(client, base_url):
    with pytest.raises(FDSNNoDataException):
        client.get_events(starttime=T0 + 86400)
    answer = httpx.get(f"{base_url}/fdsnws/event/1/query", params={"start": "2030-01-01", "nodata": "404"})
    assert answer.status_code == 404 and answer.text.startswith("Error 404: Not Found")


def test_bad_parameters_are_400_with_the_fdsn_error_document(client, base_url):
    with pytest.raises(FDSNBadRequestException):
        client.get_events(starttime=T0, endtime=T0 - 10)
    url = f"{base_url}/fdsnws/event/1/query"
    for params in (
        {"minlatitude": "91"},
        {"starttime": "yesterday"},
        {"orderby": "depth"},
        {"format": "json"},
        {"maxradius": "181"},
        {"limit": "0"},
        {"nodata": "500"},
        {"includearrivals": "yes"},
        {"bogus": "1"},
    ):
        answer = httpx.get(url, params=params)
        assert answer.status_code == 400, params
        lines = answer.text.splitlines()
        assert lines[0] == "Error 400: Bad Request", params
        assert "Request:" in lines and "Request Submitted:" in lines and "Service version:" in lines
        assert lines[lines.index("Service version:") + 1] == "1.2.0"
    too_many = httpx.get(url, params={"limit": str(MAX_LIMIT + 1)})
    assert too_many.status_code == 413 and too_many.text.startswith("Error 413")
    with pytest.raises(FDSNException):
        client.get_events(limit=MAX_LIMIT + 1)


def test_text_format(base_url, events):
    answer = httpx.get(
        f"{base_url}/fdsnws/event/1/query",
        params={"start": "2024-05-01", "format": "text", "orderby": "time-asc"},
    )
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    header, *rows = answer.text.splitlines()
    assert header == fdsn.TEXT_HEADER
    cells = [row.split("|") for row in rows]
    assert [c[0] for c in cells] == [e.event_id for e in events]
    assert all(len(c) == 13 for c in cells)
    first = cells[0]
    assert abs(UTCDateTime(first[1]) - HYPOCENTRES[0].time) < 0.5
    assert float(first[2]) == pytest.approx(events[0].origin.latitude, abs=1e-5)
    assert (first[9], first[10]) == ("ML", "2.50") and cells[1][9:11] == ["", ""]
    assert first[12]  # Flinn-Engdahl region


def test_wadl_lists_every_parameter(base_url):
    answer = httpx.get(f"{base_url}/fdsnws/event/1/application.wadl")
    root = etree.fromstring(answer.content)
    ns = {"w": "http://wadl.dev.java.net/2009/02"}
    assert root.find("w:resources", ns).get("base") == f"{base_url}/fdsnws/event/1/"
    names = {p.get("name") for p in root.iterfind(".//w:param", ns)}
    assert names == set(fdsn.PARAMETERS)


def test_parse_query_short_names_and_defaults():
    q = fdsn.parse_query([("start", "2024-05-01"), ("minmag", "1.5"), ("lat", "46"), ("lon", "8")], 10)
    assert q.starttime == T0.timestamp - 12 * 3600 and q.minmagnitude == 1.5
    assert (q.latitude, q.longitude, q.orderby, q.format, q.nodata, q.offset) == (
        46,
        8,
        "time",
        "xml",
        204,
        1,
    )
    with pytest.raises(fdsn.FdsnQueryError, match="more than once"):
        fdsn.parse_query([("start", "2024-05-01"), ("starttime", "2024-05-02")], 10)
    with pytest.raises(fdsn.FdsnLimitError):
        fdsn.parse_query([("limit", "11")], 10)


def test_offset_and_magnitude_order(events):
    summaries = [
        fdsn.EventSummary(e.event_id, e.origin.time, 46, 8, 10, e.magnitude and e.magnitude.value, "ML")
        for e in events
    ]
    by_mag = fdsn.select(fdsn.parse_query([("orderby", "magnitude")], 10), summaries)
    assert [s.event_id for s in by_mag] == [events[0].event_id, events[1].event_id]  # without magnitude last
    second = fdsn.select(fdsn.parse_query([("offset", "2"), ("orderby", "time-asc")], 10), summaries)
    assert [s.event_id for s in second] == [events[1].event_id]


# -- SCML (SeisComP) ------------------------------------------------------------------------------------------


def test_events_scml_validates_and_reads_back(events):
    document = events_to_scml(events)
    assert validate_scml(document) == []
    cat = read_events(io.BytesIO(document.encode()), format="SCML")
    assert [str(e.resource_id) for e in cat] == [f"smi:seispick/event/{e.event_id}" for e in events]
    for event, back in zip(events, cat):
        origin = back.preferred_origin()
        assert abs(origin.time.timestamp - event.origin.time) < 1e-3
        assert len(origin.arrivals) == event.n_picks == len(back.picks)
    assert cat[0].preferred_magnitude().mag == pytest.approx(2.5)


def test_picks_scml_validates_and_holds_every_pick():
    picks = picks_of(HYPOCENTRES[0], 0)
    document = picks_to_scml(picks)
    assert render("scml", picks) == document
    assert validate_scml(document) == []
    root = etree.fromstring(document.encode())
    ns = {"s": root.nsmap[None]}
    assert root.findall(".//s:event", ns) == []  # picks alone: SeisComP makes events of origins
    found = {p.get("publicID"): p for p in root.iterfind(".//s:pick", ns)}
    assert set(found) == {f"smi:seispick/pick/{p.id}" for p in picks}
    for pick in picks:
        element = found[f"smi:seispick/pick/{pick.id}"]
        assert UTCDateTime(element.findtext("s:time/s:value", namespaces=ns)) == pick.peak_time
        assert element.findtext("s:phaseHint", namespaces=ns) == pick.phase
    assert len(read_events(io.BytesIO(document.encode()), format="SCML")) == 0  # ObsPy reads no bare picks


def test_associate_cli_writes_scml(tmp_path, events):
    picks_file = tmp_path / "picks.csv"
    picks_file.write_text(picks_to_csv(picks_of(HYPOCENTRES[0], 0)))
    stations_file = tmp_path / "stations.csv"
    stations_file.write_text(
        "network,station,latitude,longitude,elevation_m\n"
        + "".join(
            f"{s.network},{s.station},{s.latitude},{s.longitude},{s.elevation_m}\n"
            for s in STATIONS.stations.values()
        )
    )
    out = tmp_path / "events.scml"
    result = CliRunner().invoke(
        associate,
        [str(picks_file), "--stations", str(stations_file), "--format", "scml", "-o", str(out), "-q"],
    )
    assert result.exit_code == 0, result.output
    document = out.read_text()
    assert validate_scml(document) == []
    cat = read_events(str(out), format="SCML")
    assert len(cat) == 1 and len(cat[0].preferred_origin().arrivals) >= 8


def test_service_events_route_serves_scml(base_url, events):
    answer = httpx.get(f"{base_url}/v1/events/{events[0].event_id}", params={"format": "scml"})
    assert answer.status_code == 200
    assert validate_scml(answer.content) == []
    listed = httpx.get(f"{base_url}/v1/events", params={"format": "scml"})
    assert len(read_events(io.BytesIO(listed.content), format="SCML")) == 2
    assert validate(httpx.get(f"{base_url}/v1/events", params={"format": "quakeml"}).content) == []


def test_pick_cli_writes_scml(tmp_path):
    files = [str(p) for p in sorted(REAL.glob("BK*.mseed"))[:3]]
    runner = CliRunner()
    csv_out = runner.invoke(cli, ["pick", *files, "--quiet", "--format", "csv"])
    assert csv_out.exit_code == 0, csv_out.stderr
    ids = [line.split(",")[0] for line in csv_out.stdout.splitlines()[1:]]
    out = tmp_path / "picks.scml"
    result = runner.invoke(cli, ["pick", *files, "--quiet", "--format", "scml", "--output", str(out)])
    assert result.exit_code == 0, result.stderr
    assert validate_scml(out.read_bytes()) == []
    root = etree.parse(str(out)).getroot()
    ns = {"s": root.nsmap[None]}
    picks = root.findall(".//s:pick", ns)
    assert ids and [p.get("publicID") for p in picks] == [f"smi:seispick/pick/{i}" for i in ids]
    assert all(p.findtext("s:waveformID", namespaces=ns) is not None for p in picks)


@pytest.fixture(scope="module")
def redis_base_url(events):
    """A service that does not associate but reads the events another process published to Redis (here: the
    records as published, two versions of the second event and a duplicate merged into it, from a stand-in for
    the publisher's reader)."""
    published = UTCDateTime("2024-05-01T13:30:00")
    records = [Record.of(e, published) for e in events]
    # an older version of the second event first: not served
    older = {**Record.of(events[1], published - 60).fields, "version": "0", "latitude": "0.0"}
    merged = {
        **older,
        "id": "ev-0000000000000000",
        "evaluation_status": "rejected",
        "superseded_by": events[1].event_id,
    }
    fields = [older, merged, *(r.fields for r in records)]

    async def recent_from_redis(since=None, limit=100, kind="pick", **_):
        assert kind == "event"
        return [Record.from_fields("event", dict(f)) for f in fields][-limit:]

    app = create_app(Settings())
    with UvicornThread(app) as server:
        app.state.seispick.streaming = SimpleNamespace(
            publisher=SimpleNamespace(redis_url="redis://unused", recent_from_redis=recent_from_redis),
            stop=_stopped,
        )
        yield f"http://127.0.0.1:{server.port}"


def test_events_read_from_redis_are_served_without_arrivals(redis_base_url, events):
    client = Client(redis_base_url, timeout=30)
    cat = client.get_events(starttime=T0 - 60, orderby="time-asc", includearrivals=True)
    assert [str(e.resource_id) for e in cat] == [f"smi:seispick/event/{e.event_id}" for e in events]
    for event, back in zip(events, cat):
        origin = back.preferred_origin()
        assert abs(origin.time.timestamp - event.origin.time) < 1e-3
        assert origin.latitude == pytest.approx(event.origin.latitude, abs=1e-5)
        assert origin.arrivals == [] and back.picks == []  # the records have pick ids, not picks
    assert cat[0].preferred_magnitude().mag == pytest.approx(2.5)
    assert len(client.get_events(minmagnitude=2)) == 1
    answer = httpx.get(f"{redis_base_url}/fdsnws/event/1/query", params={"format": "text"})
    assert [row.split("|")[0] for row in answer.text.splitlines()[1:]] == [e.event_id for e in events[::-1]]


def test_a_service_without_events_says_so(base_url):
    app = create_app(Settings())
    with UvicornThread(app) as server:
        answer = httpx.get(f"http://127.0.0.1:{server.port}/fdsnws/event/1/query")
    assert answer.status_code == 404 and "association is not configured" in answer.text
    assert answer.text.startswith("Error 404: Not Found")


def test_pick_cli_refuses_scml_for_a_detector():
    files = [str(p) for p in sorted(REAL.glob("BK*.mseed"))[:1]]
    result = CliRunner().invoke(cli, ["pick", *files, "--model", "convnetquake-ta109c", "--format", "scml"])
    assert result.exit_code == 2 and "no SCML form" in result.stderr, result.stderr
    with pytest.raises(ValueError, match="no SCML form"):
        render_detections("scml", [])
