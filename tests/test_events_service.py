"""Events from real waveforms through the whole service, over real TCP and a real Redis.

The demo's event archive (``demo/event``: nine real NCEDC 3-component recordings, each placed so that its P
and S fall at the travel times from a chosen hypocentre to a station at the distance its own S-P gives; the
same earthquake twice, at 2:00 and 7:00) is served by the SeedLink replay server; ``seispick serve`` runs
PhaseNet and ConvNetQuake side by side on it and associates its own picks with the bundled station file.
Each earthquake must come out as one event (in ``seispick:events`` and ``GET /v1/events``), located within
2 km and 0.3 s of the hypocentre with picks the service published, its QuakeML valid against the QuakeML 1.2
schema; and ConvNetQuake's detections in the stream must equal ``detect`` on the same files.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from datetime import datetime, timezone
from io import BytesIO

import httpx
import obspy
import pytest
import redis
from obspy.geodetics import gps2dist_azimuth

from seispick.events.associate import Associator
from seispick.events.picksets import PickSet
from seispick.events.quakeml import validate
from seispick.events.stations import read_stations
from seispick.models.registry import ModelRegistry
from seispick.picking.annotate import annotate
from seispick.picking.detect import detect
from seispick.picking.waveforms import read_waveforms
from seispick.replay.server import ThreadedReplayServer
from seispick.service.api.app import create_app
from seispick.service.settings import EventsSettings, Settings, StreamingSettings
from seispick.service.stream.runtime import DEMO_DIR
from tests.service_harness import parse_metrics
from tests.test_streaming_e2e import REDIS_URL, UvicornThread, collect_sse, collect_ws, redis_available


def read_sse(url: str, out: list, stop: threading.Event) -> None:
    """``collect_sse`` until the server ends the stream (it does when shutting down)."""
    with contextlib.suppress(httpx.HTTPError):
        collect_sse(url, out, stop)


PICKER, DETECTOR = "phasenet-original", "convnetquake-ta109c"
SPEED = 100.0
EVENT_DIR = DEMO_DIR / "event"
TRUTH = json.loads((EVENT_DIR / "event.json").read_text())

pytestmark = pytest.mark.skipif(not redis_available(), reason="needs the Redis server at 127.0.0.1:6379")


@pytest.fixture(scope="module")
def served():
    """Replay the event archive through ``serve`` once; what Redis, the HTTP API and subscribers got."""
    files = sorted(EVENT_DIR.glob("*.mseed"))
    archive = read_waveforms(files).stream
    start = min(tr.stats.starttime for tr in archive)
    end = max(tr.stats.endtime for tr in archive)
    key = f"seispick:test:{uuid.uuid4().hex[:8]}"
    keys = {"picks": key, "detections": key + ":det", "events": key + ":events"}
    r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    settings = Settings(
        redis_url=REDIS_URL,
        models=[PICKER, DETECTOR],
        default_model=PICKER,
        streaming=StreamingSettings(
            models=[PICKER, DETECTOR],
            selectors=["SP_*:HH?"],
            begin_time=datetime.fromtimestamp(start.timestamp, tz=timezone.utc),
            silence_timeout_s=3.0,
            workers=1,
            stream_key=keys["picks"],
            detections_key=keys["detections"],
            channel=key + ":live",
        ),
        events=EventsSettings(
            stations=DEMO_DIR / "stations.xml",  # the demo's coordinates with (nominal) responses: live ML
            delay_s=5.0,
            step_s=0.5,
            min_version_interval_s=0.0,  # a real-time spacing: the replay runs at 100x
            stream_key=keys["events"],
            channel=keys["events"] + ":live",
        ),
    )
    out: dict = {"archive": archive, "keys": keys}
    try:
        with ThreadedReplayServer(files, port=0, speed=SPEED) as replay:
            settings.streaming.seedlink = [f"127.0.0.1:{replay.port}"]
            with UvicornThread(create_app(settings)) as server:
                server.server.config.timeout_graceful_shutdown = 1  # the SSE reader stops at its next line
                base = f"http://127.0.0.1:{server.port}"
                stop = threading.Event()
                sse, ws = [], []
                threads = [
                    threading.Thread(target=read_sse, args=(f"{base}/v1/stream/events", sse, stop)),
                    threading.Thread(
                        target=collect_ws, args=(f"ws://127.0.0.1:{server.port}/v1/ws/detections", ws, stop)
                    ),
                ]
                for t in threads:
                    t.daemon = True
                    t.start()
                deadline = time.time() + (end - start) / SPEED + 60
                while time.time() < deadline:  # the replay ends, the stations fall silent, the last step runs
                    stations = httpx.get(f"{base}/v1/stations", timeout=10).json()["stations"]
                    done = len(stations) == 9 and all(s["state"] == "silent" for s in stations)
                    if done and len({f["id"] for _, f in r.xrange(keys["events"])}) >= 2:
                        time.sleep(3.0)  # anything more would be an extra version
                        break
                    time.sleep(1.0)
                get = lambda path, **params: httpx.get(base + path, params=params, timeout=30)  # noqa: E731
                out["events"] = get("/v1/events").json()
                out["events_min10"] = get("/v1/events", min_stations=10).json()
                out["events_future"] = get("/v1/events", since="2100-01-01").json()
                out["quakeml"] = get("/v1/events", format="quakeml")
                out["one"] = {e["id"]: get(f"/v1/events/{e['id']}").json() for e in out["events"]["events"]}
                out["missing"] = get("/v1/events/ev-0000000000000000")
                out["detections"] = get("/v1/detections", model=DETECTOR, limit=1000).json()
                out["metrics"] = parse_metrics(httpx.get(base + "/metrics", timeout=10).text)
                out["events_before_stop"] = r.xrange(keys["events"])  # stopping may flush a last version
                stop.set()
                out["sse"], out["ws"] = sse, ws
        out["redis"] = {name: r.xrange(k) for name, k in keys.items()}
    finally:
        for name in keys.values():
            r.delete(name, *r.scan_iter(name + ":seen:*"))
    return out


def latest(entries) -> dict[str, dict]:
    """Latest version of each event among stream entries."""
    out: dict[str, dict] = {}
    for _, fields in entries:
        if fields["id"] not in out or int(fields["version"]) > int(out[fields["id"]]["version"]):
            out[fields["id"]] = fields
    return out


def test_each_earthquake_is_one_event_in_redis_and_the_api(served):
    events = latest(served["events_before_stop"])  # what GET /v1/events saw (stopping may add a version)
    assert latest(served["redis"]["events"]).keys() == events.keys()
    assert len(events) == 2, f"expected the two earthquakes as two events: {events}"
    hypo = TRUTH["hypocentre"]
    origins = sorted(events.values(), key=lambda f: f["origin_time"])
    picks = {fields["id"]: fields for _, fields in served["redis"]["picks"]}
    for fields, truth in zip(origins, TRUTH["origin_times"]):
        assert abs(obspy.UTCDateTime(fields["origin_time"]) - obspy.UTCDateTime(truth)) < 0.3
        metres, _, _ = gps2dist_azimuth(hypo["latitude"], hypo["longitude"], float(fields["latitude"]),
                                        float(fields["longitude"]))  # fmt: skip
        assert metres < 2000 and abs(float(fields["depth_km"]) - hypo["depth_km"]) < 3.0, fields
        assert int(fields["n_stations"]) == 9 and int(fields["n_p"]) >= 8 and int(fields["n_s"]) >= 8
        ids = fields["pick_ids"].split(",")
        assert set(ids) <= set(picks), "an event's picks are the service's own published picks"
        assert {picks[i]["station"] for i in ids} == set(TRUTH["stations"])

    api = served["events"]
    assert api["source"] == "associator" and api["count"] == 2
    assert {e["id"]: e["version"] for e in api["events"]} == {k: int(f["version"]) for k, f in events.items()}
    for event in api["events"]:
        assert isinstance(event["latitude"], float) and event["n_stations"] == 9
        assert event["evaluation_status"] in ("preliminary", "final") and event["superseded_by"] is None
        assert [a["pick_id"] for a in event["arrivals"]] == event["pick_ids"]
        assert served["one"][event["id"]] == event
    assert served["missing"].status_code == 404
    assert served["events_min10"]["count"] == 0 and served["events_future"]["count"] == 0
    association = api["association"]
    assert association["picks_unassociated"]["no_coordinates"] == 0
    assert association["events_declared"] == 2
    # Server-Sent Events carried every version published to Redis, in the same form as GET
    published = {(f["id"], int(f["version"])) for _, f in served["events_before_stop"]}
    assert {(e["id"], e["version"]) for e in served["sse"]} == published


def test_live_events_are_the_offline_events_of_the_same_picks(served):
    """``seispick pick`` + ``seispick associate`` on the same files: the same event ids and, in the last
    version of each live event, the same picks."""
    picks = annotate(served["archive"], ModelRegistry().load(PICKER)).picks
    offline = Associator(read_stations(DEMO_DIR / "stations.csv")).associate(PickSet.from_picks(picks)).events
    live = latest(served["redis"]["events"])
    assert sorted(e.event_id for e in offline) == sorted(live)
    for event in offline:
        assert set(live[event.event_id]["pick_ids"].split(",")) == {a.pick_id for a in event.arrivals}


def test_event_quakeml_is_valid_and_references_the_published_picks(served):
    response = served["quakeml"]
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/xml")
    assert validate(response.content) == []
    catalog = obspy.read_events(BytesIO(response.content))
    assert len(catalog) == 2
    published = {fields["id"] for _, fields in served["redis"]["picks"]}
    for event in catalog:
        origin = event.preferred_origin()
        assert origin.evaluation_mode == "automatic" and origin.quality.used_station_count == 9
        referenced = {str(a.pick_id).rsplit("/", 1)[-1] for a in origin.arrivals}
        assert referenced <= published and len(referenced) == len(origin.arrivals) >= 16


def test_event_metrics_are_exported(served):
    metrics = served["metrics"]
    assert metrics[("seispick_events_declared_total", ())] == 2
    assert metrics[("seispick_association_latency_seconds_count", ())] >= 2
    # picks count once a published version has them, not only once the event is final (the events are still
    # open here: the counter stayed 0 while each listed 18 picks)
    listed = sum(int(e["n_picks"]) for e in served["events"]["events"])
    assert metrics[("seispick_event_picks_associated_total", ())] >= listed >= 2 * 16
    events = {
        k: v for k, v in metrics.items() if k[0] == "seispick_published_total" and ("kind", "event") in k[1]
    }
    assert sum(events.values()) >= 2


def test_convnetquake_detections_in_the_stream_equal_offline_detections(served):
    detector = ModelRegistry().load(DETECTOR)
    expected = detect(served["archive"], detector)
    # the comparison is not vacuous: the shipped detector (recall 0.88 on its test split) finds most of the
    # 2 earthquakes x 9 stations offline
    assert len(expected) >= 12, "most station recordings of the two earthquakes are detected offline"
    got = {f["id"]: f for _, f in served["redis"]["detections"] if f["model"] == DETECTOR}
    assert sorted(got) == sorted(d.id for d in expected)
    for d in expected:
        fields = got[d.id]
        assert obspy.UTCDateTime(fields["start_time"]) == d.start_time
        assert obspy.UTCDateTime(fields["end_time"]) == d.end_time
        assert float(fields["probability"]) == pytest.approx(d.probability, abs=1e-5)
        assert (fields.get("cell") or None) == (None if d.cell is None else str(d.cell))
    api = served["detections"]
    assert api["count"] == len(expected) and all(d["model"] == DETECTOR for d in api["detections"])
    assert {d["id"] for d in served["ws"] if d["model"] == DETECTOR} == set(got)
    assert all(isinstance(d["probability"], float) for d in served["ws"])


def test_live_ml_of_the_service_equals_offline_ml(served):
    """Each event's final version (the stop makes it final) carries ML from the service's waveform ring (records
    teed from the stream), equal within 0.1 to ``seispick associate --waveforms`` on the same files and picks."""
    from seispick.events.live_magnitude import event_magnitude

    stations = read_stations(DEMO_DIR / "stations.xml")
    associator = Associator(stations)
    picks = annotate(served["archive"], ModelRegistry().load(PICKER)).picks
    offline = {e.event_id: e for e in associator.associate(PickSet.from_picks(picks)).events}
    live = latest(served["redis"]["events"])
    assert live.keys() == offline.keys()
    for event_id, event in offline.items():
        magnitude, _ = event_magnitude(event, served["archive"], stations, associator.config.velocity.surface)
        assert magnitude is not None
        fields = live[event_id]
        assert (
            fields["magnitude_type"] == "ML" and int(fields["magnitude_stations"]) == magnitude.station_count
        )
        assert abs(float(fields["magnitude"]) - magnitude.value) <= 0.1, (
            fields["magnitude"],
            magnitude.value,
        )
    assert served["events"]["association"]["magnitudes"]["with_magnitude"] > 0
