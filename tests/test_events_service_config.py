"""Live association in the service: settings that cannot work refuse start-up with the setting named, the
association of published picks (a station without coordinates still published, and counted), the demo's
bundled stations, and the events routes where nothing associates."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner
from prometheus_client import CollectorRegistry

from seispick.cli.main import cli
from seispick.events import synthetic_network as syn
from seispick.events.associate import Associator
from seispick.events.picksets import PickSet
from seispick.service.publish.publisher import PickPublisher
from seispick.service.settings import (
    DEMO_STATIONS,
    EventsSettings,
    Settings,
    SettingsError,
    StreamingSettings,
    check_events,
    load_settings,
)
from seispick.service.stream.association import LiveEvents
from tests.service_harness import ServiceHarness, parse_metrics
from tests.test_events_associate import hypocentral_error_km, scenario, write_stations_csv
from tests.test_streaming_e2e import REDIS_URL, redis_available

GOOD_CSV = "network,station,latitude,longitude,elevation_m\nSY,A,46,8,0\nSY,B,46.1,8.1,0\n"


@pytest.fixture
def env(monkeypatch, tmp_path: Path) -> Path:
    """A clean SEISPICK_* environment with a watched folder (association needs a real-time source)."""
    import os

    for name in list(os.environ):
        if name.upper().startswith("SEISPICK_"):
            monkeypatch.delenv(name)
    watched = tmp_path / "in"
    watched.mkdir()
    monkeypatch.setenv("SEISPICK_STREAMING__WATCH_DIRS", str(watched))
    return tmp_path


def refused(monkeypatch, **variables: str) -> str:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    return str(caught.value)


@pytest.mark.parametrize(
    "content, names",
    [
        (None, ["SEISPICK_EVENTS__STATIONS", "no such station file"]),
        ("", ["SEISPICK_EVENTS__STATIONS", "empty station file"]),
        ("network,station,lat,lon\nSY,A,1,2\n", ["SEISPICK_EVENTS__STATIONS", "lacks column(s) latitude"]),
        ("network,station,latitude,longitude,elevation_m\nSY,A,north,2,0\n", ["line 2: SY.A: not a number"]),
        ("<?xml version='1.0'?><FDSNStationXML><Network", ["not a readable StationXML"]),
    ],
)
def test_missing_or_malformed_station_file_refuses_start_up(env, monkeypatch, content, names):
    path = env / ("stations.xml" if content and content.startswith("<") else "stations.csv")
    if content is not None:
        path.write_text(content)
    message = refused(monkeypatch, SEISPICK_EVENTS__STATIONS=str(path))
    for name in names:
        assert name in message, message
    assert str(path) in message


@pytest.mark.parametrize(
    "content, words",
    [
        ("depth_km,vp,vs\n", ["empty velocity model"]),
        (
            "depth_km,vp,vs\n0,5.0,3.0\n10,6.0,3.4\n5,6.5,3.7\n",
            ["SEISPICK_EVENTS__VELOCITY_FILE", "depths must increase"],
        ),
        ("depth_km,vp,vs\n0,3.0,5.0\n", ["SEISPICK_EVENTS__VELOCITY_FILE"]),
    ],
)
def test_bad_velocity_model_refuses_start_up(env, monkeypatch, content, words):
    (env / "stations.csv").write_text(GOOD_CSV)
    model = env / "velocity.csv"
    model.write_text(content)
    message = refused(
        monkeypatch,
        SEISPICK_EVENTS__STATIONS=str(env / "stations.csv"),
        SEISPICK_EVENTS__VELOCITY_FILE=str(model),
    )
    for word in words:
        assert word in message, message


def test_inconsistent_association_settings_refuse_start_up(env, monkeypatch):
    (env / "stations.csv").write_text(GOOD_CSV)
    stations = str(env / "stations.csv")
    assert "give both SEISPICK_EVENTS__VP and SEISPICK_EVENTS__VS" in refused(
        monkeypatch, SEISPICK_EVENTS__STATIONS=stations, SEISPICK_EVENTS__VP="6"
    )
    monkeypatch.delenv("SEISPICK_EVENTS__VP")
    assert "SEISPICK_EVENTS__MIN_PICKS" in refused(monkeypatch, SEISPICK_EVENTS__MIN_PICKS="2")
    monkeypatch.delenv("SEISPICK_EVENTS__MIN_PICKS")
    assert "no such setting; did you mean SEISPICK_EVENTS__STATIONS" in refused(
        monkeypatch, SEISPICK_EVENTS__STATION=stations
    )
    monkeypatch.delenv("SEISPICK_EVENTS__STATION")
    monkeypatch.delenv("SEISPICK_STREAMING__WATCH_DIRS")
    assert "association needs the stream's picks" in refused(monkeypatch, SEISPICK_EVENTS__STATIONS=stations)


def test_serve_names_the_flag_of_a_bad_station_file(env):
    result = CliRunner().invoke(cli, ["serve", "--stations", str(env / "nope.csv")])
    assert result.exit_code == 1
    assert "--stations" in result.output and "nope.csv: no such station file" in result.output


def test_the_demo_associates_with_its_bundled_stations(env, monkeypatch):
    monkeypatch.delenv("SEISPICK_STREAMING__WATCH_DIRS")
    settings = load_settings({("demo",): ("--demo", True)})
    stations, config = check_events(settings)
    assert settings.events.active(settings.demo) and stations.source == str(DEMO_STATIONS)
    assert len(stations) == 9 and config.min_picks == 8
    assert not Settings().events.active(False), "association is off unless asked for"


def test_published_picks_become_events_and_a_station_without_coordinates_is_counted(tmp_path: Path):
    """LiveEvents on a publisher without Redis: the scenario's event is published as an event record; the picks
    of a station missing from the station file are published like the others and counted as unassociated."""
    table, hypo, true, spurious = scenario(3)
    left_out = sorted(table.stations)[0]
    kept = syn.StationTable({k: s for k, s in table.stations.items() if k != left_out}, source="test")
    path = write_stations_csv(kept, tmp_path / "stations.csv")
    settings = Settings(
        streaming=StreamingSettings(watch_dirs=[tmp_path]),
        events=EventsSettings(stations=path, delay_s=0.0, step_s=0.05, window_s=120.0),
    )
    registry = CollectorRegistry()
    picks = sorted(true + spurious, key=lambda p: p.peak_time)
    orphans = [p for p in picks if p.trace_id.startswith(left_out + ".")]
    assert len(orphans) >= 2  # its P and S of the event (and spurious picks, if any)

    async def main():
        publisher = PickPublisher()
        live = LiveEvents(settings, publisher, registry, model="synthetic")
        await live.start()
        subscriber = publisher.subscribe(kind="event")
        publisher.publish_many(picks)
        for _ in range(100):
            await asyncio.sleep(0.05)
            if live.store.select():
                break
        await asyncio.sleep(0.3)  # later steps publish nothing new for an unchanged event
        await live.stop()
        received = []
        while not subscriber.queue.empty():
            received.append(subscriber.queue.get_nowait())
        return publisher, live, received

    publisher, live, received = asyncio.run(main())
    stored = live.store.select()
    assert len(stored) == 1, [s.fields for s in stored]
    event = stored[0].event
    assert hypocentral_error_km(event, hypo) < 2.0 and abs(event.origin.time - hypo.time.timestamp) < 0.3
    assert {a.pick_id for a in event.arrivals} <= {p.id for p in true}
    assert [r.id for r in received if hasattr(r, "kind")] == [event.event_id] * event.version
    published_ids = {r.id for r in publisher.recent(limit=10_000)}
    assert {p.id for p in orphans} <= published_ids, "picks without coordinates are still published"
    samples = parse_metrics(_exposition(registry))
    assert samples[("seispick_event_picks_unassociated_total", (("reason", "no_coordinates"),))] == len(
        orphans
    )
    assert samples[("seispick_events_declared_total", ())] == 1
    state = live.state()
    assert state["picks_unassociated"]["no_coordinates"] == len(orphans) and state["stations"] == len(kept)


def _exposition(registry: CollectorRegistry) -> str:
    from prometheus_client import generate_latest

    return generate_latest(registry).decode()


def test_events_routes_say_when_nothing_associates():
    with ServiceHarness(Settings(models=["phasenet-original"])) as service:
        for path in ("/v1/events", "/v1/events/ev-0", "/v1/events?format=quakeml", "/v1/stream/events"):
            response = service.get(path)
            assert response.status_code == 404, path
            assert "association is not configured" in response.json()["detail"]
        assert service.get("/v1/events?min_stations=-1").status_code == 422
        assert service.get("/v1/events?since=yesterday-ish").status_code == 422
        assert service.get("/v1/detections").status_code == 404


@pytest.mark.skipif(not redis_available(), reason="needs the Redis server at 127.0.0.1:6379")
def test_a_replica_that_does_not_associate_serves_the_events_another_publishes(tmp_path: Path):
    """Sharded deployment: one ``seispick associate --follow`` publishes to seispick:events; a replica without
    association answers GET /v1/events from Redis (the latest version of each event; JSON, not QuakeML)."""
    table, hypo, true, _ = scenario(4)
    event = Associator(table).associate(PickSet.from_picks(true)).events[0]
    key = f"seispick:test:{uuid.uuid4().hex[:8]}:events"

    async def publish_versions():
        async with PickPublisher(REDIS_URL, events_stream=key, events_channel=key + ":live") as publisher:
            publisher.publish(event)
            event.version = 2
            publisher.publish(event)

    settings = Settings(
        redis_url=REDIS_URL,
        models=["phasenet-original"],
        streaming=StreamingSettings(watch_dirs=[tmp_path], workers=1),
        events=EventsSettings(stream_key=key, channel=key + ":live"),
    )
    client = redis.Redis.from_url(REDIS_URL)
    try:
        asyncio.run(publish_versions())
        with ServiceHarness(settings) as service:
            listed = service.get("/v1/events").json()
            one = service.get(f"/v1/events/{event.event_id}")
            quakeml = service.get("/v1/events?format=quakeml")
            crowded = service.get("/v1/events", params={"min_stations": event.n_stations + 1}).json()
            missing = service.get("/v1/events/ev-0000000000000000")
    finally:
        client.delete(key, *client.scan_iter(key + ":seen:*"))
    assert listed["source"] == "redis" and listed["count"] == 1
    got = listed["events"][0]
    assert (got["id"], got["version"], got["n_stations"]) == (event.event_id, 2, event.n_stations)
    assert got["pick_ids"] == [a.pick_id for a in sorted(event.arrivals, key=lambda a: a.time)]
    assert one.status_code == 200 and one.json() == got
    assert quakeml.status_code == 409 and "QuakeML is built by the process that associates" in quakeml.text
    assert crowded["count"] == 0 and missing.status_code == 404
