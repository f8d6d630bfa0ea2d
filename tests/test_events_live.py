"""Live association: versions as late picks join, deterministic ids, final events, metrics, the Redis follower."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from obspy import UTCDateTime
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from seispick.cli.associate_cmd import associate
from seispick.events import synthetic_network as syn
from seispick.events.associate import Associator
from seispick.events.association_metrics import EventMetrics
from seispick.events.follow import follow
from seispick.events.live import LiveAssociator, LiveConfig
from seispick.events.picksets import PickSet
from seispick.service.publish.publisher import PickPublisher
from tests.test_events_associate import assert_right_picks, write_stations_csv
from tests.test_publisher import RedisServer

T0 = UTCDateTime("2024-05-01T12:00:00")


def sequence(seed: int = 1, events: int = 4, spurious: int = 40):
    """15 stations, events a minute apart, spurious picks; picks in arrival order (0.5-3 s after their time)."""
    rng = np.random.default_rng(seed)
    stations = syn.network(15, 46.0, 8.0, 60, seed=seed)
    hypos = [
        syn.Hypocentre(
            T0 + 60 * i + rng.uniform(0, 20),
            46 + rng.uniform(-0.2, 0.2),
            8 + rng.uniform(-0.2, 0.2),
            rng.uniform(3, 20),
        )
        for i in range(events)
    ]
    true = [[*syn.event_picks(stations, h, rng=rng)] for h in hypos]
    noise = syn.spurious_picks(stations, spurious, T0.timestamp, T0.timestamp + 60 * events + 60, rng)
    picks = [p for group in true for p in group] + noise
    delays = {p.id: rng.uniform(0.5, 3.0) for p in picks}
    arrival = sorted(picks, key=lambda p: p.peak_time.timestamp + delays[p.id])
    return stations, hypos, true, noise, arrival, delays


def replay(stations, arrival, delays, config: LiveConfig, metrics=None, step_s: float = 2.0):
    """Feed picks as they would arrive, stepping every ``step_s`` of simulated wall time."""
    clock = [0.0]
    live = LiveAssociator(Associator(stations), config, metrics, wall_clock=lambda: clock[0])
    out, i = [], 0
    end = arrival[-1].peak_time.timestamp + 600
    for now in np.arange(T0.timestamp - 10, end, step_s):
        clock[0] = float(now)
        while i < len(arrival) and arrival[i].peak_time.timestamp + delays[arrival[i].id] <= now:
            live.add(arrival[i])
            i += 1
        out += live.step(float(now))
    out += live.flush()
    return live, out


def test_events_grow_by_versions_and_end_with_their_picks():
    stations, hypos, true, spurious, arrival, delays = sequence()
    registry = CollectorRegistry()
    live, out = replay(stations, arrival, delays, LiveConfig(window_s=120, delay_s=2), EventMetrics(registry))
    final = {}
    for event in out:
        previous = final.get(event.event_id)
        assert event.version == (previous.version + 1 if previous else 1)
        final[event.event_id] = event
    assert len(final) == len(hypos)
    for event, hypo, group in zip(sorted(final.values(), key=lambda e: e.origin.time), hypos, true):
        assert abs(event.origin.time - hypo.time.timestamp) < 0.3
        assert_right_picks(event, stations, hypo, group, spurious)
    assert any(e.version > 1 for e in final.values())  # later stations' picks joined
    s = live.stats
    assert (s.declared, s.updated) == (len(hypos), len(out) - len(hypos))
    assert s.associated == sum(e.n_picks for e in final.values())
    assert s.no_event == len(arrival) - s.associated
    value = registry.get_sample_value
    assert value("seispick_events_declared_total") == len(hypos)
    assert value("seispick_events_updated_total") == len(out) - len(hypos)
    assert value("seispick_event_picks_final_total") == s.associated
    assert value("seispick_event_picks_associated_total") == s.joined >= s.associated  # once each
    assert value("seispick_event_picks_unassociated_total", {"reason": "no_event"}) == s.no_event
    # a latency sample for each version that brought picks: every declaration, and the updates picks joined
    grew = sum(1 for prev, e in _versions(out) if prev is None or e.n_picks > prev.n_picks)
    assert value("seispick_association_latency_seconds_count") == len(s.latencies) >= grew
    assert len(s.latencies) <= len(out)
    # every pick waited at most delay + one step after it arrived (simulated clock)
    assert max(s.latencies) <= 2 + 2 + 1e-6


def test_picks_count_as_associated_when_a_published_version_first_has_them():
    """Not only once the event is final (an event listing 18 picks used to leave the counter at 0)."""
    stations, hypos, true, spurious, arrival, delays = sequence(events=1, spurious=0)
    registry = CollectorRegistry()
    clock = [0.0]
    live = LiveAssociator(
        Associator(stations), LiveConfig(window_s=300, delay_s=2), EventMetrics(registry), lambda: clock[0]
    )
    value = registry.get_sample_value
    published: set[str] = set()
    for pick in arrival:
        clock[0] = pick.peak_time.timestamp + delays[pick.id]
        live.add(pick)
        for event in live.step(clock[0]):
            published |= {a.pick_id for a in event.arrivals}
    assert published and not live.stats.associated  # an open event, nothing final yet
    assert value("seispick_event_picks_associated_total") == len(published) == live.stats.joined
    assert value("seispick_event_picks_final_total") == 0
    live.flush()
    assert value("seispick_event_picks_final_total") == live.stats.associated > 0
    assert value("seispick_event_picks_associated_total") == live.stats.joined >= live.stats.associated


def _versions(out):
    """(previous version or None, version) pairs of the emitted events."""
    last = {}
    for event in out:
        yield last.get(event.event_id), event
        last[event.event_id] = event


def test_ids_are_deterministic_and_equal_to_the_offline_ones():
    stations, hypos, true, spurious, arrival, delays = sequence(seed=2)
    config = LiveConfig(window_s=120, delay_s=20)  # long delay: events are declared complete
    _, first = replay(stations, arrival, delays, config)
    _, again = replay(stations, arrival, delays, config)
    assert [(e.event_id, e.version, e.n_picks) for e in first] == [
        (e.event_id, e.version, e.n_picks) for e in again
    ]
    offline = Associator(stations).associate(PickSet.from_picks(arrival))
    live_final = {e.event_id: e for e in first}
    assert sorted(live_final) == sorted(e.event_id for e in offline.events)
    for event in offline.events:
        assert {a.pick_id for a in event.arrivals} == {a.pick_id for a in live_final[event.event_id].arrivals}


def test_a_pick_that_leaves_a_version_and_rejoins_adds_no_latency_sample():
    """Re-association can drop a pick for a step and take it back: three versions, one latency sample (the
    declaration), as the rejoining pick was published with the event before."""
    stations, _, true, _, _, _ = sequence(events=1, spurious=0)
    picks = sorted(true[0], key=lambda p: p.peak_time.timestamp)
    associator = Associator(stations)
    real, calls = associator.run_window, []

    def flickering(*args, **kwargs):
        events = real(*args, **kwargs)
        calls.append(len(events))
        if len(calls) == 2:  # the second step loses the event's latest arrival
            for event in events:
                event.arrivals = sorted(event.arrivals, key=lambda a: a.time)[:-1]
        return events

    associator.run_window = flickering
    clock = [picks[-1].peak_time.timestamp + 1.0]
    live = LiveAssociator(associator, LiveConfig(window_s=300.0, delay_s=5.0), wall_clock=lambda: clock[0])
    for pick in picks:
        assert live.add(pick)
    now = picks[-1].peak_time.timestamp + 10.0
    clock[0] = now
    versions = [[(e.version, e.n_picks) for e in live.step(now)] for _ in range(3)]
    assert calls == [1, 1, 1]
    n = len(picks)
    assert versions == [[(1, n)], [(2, n - 1)], [(3, n)]]
    assert len(live.stats.latencies) == 1


def test_late_pick_makes_a_new_version_and_a_too_late_one_is_counted():
    stations, hypos, true, _, _, _ = sequence(seed=3, events=1)
    group = sorted(true[0], key=lambda p: p.peak_time)
    clock = [group[-1].peak_time.timestamp + 5]
    live = LiveAssociator(
        Associator(stations), LiveConfig(window_s=100, delay_s=0), wall_clock=lambda: clock[0]
    )
    held_back = group[-4:]
    for pick in group[:-4]:
        assert live.add(pick)
    (v1,) = live.step(clock[0])
    assert v1.version == 1 and v1.n_picks == len(group) - 4
    assert live.step(clock[0]) == []  # nothing new: nothing published
    for pick in held_back:
        live.add(pick)
    (v2,) = live.step(clock[0] + 1)
    assert (v2.event_id, v2.version, v2.n_picks) == (v1.event_id, 2, len(group))
    assert not live.add(held_back[0])  # the same pick again
    assert live.stats.duplicates == 1
    live.step(clock[0] + 500)  # the window has moved past the event: final
    assert live.open_events == []
    late = syn.make_pick(next(iter(stations.stations.values())), "P", group[0].peak_time.timestamp + 0.5)
    assert not live.add(late) and live.stats.late == 1
    unknown = syn.make_pick(syn.Station("XX", "NOPE", 0, 0), "P", clock[0] + 499)
    assert not live.add(unknown) and live.stats.no_coordinates == 1


pytestmark_redis = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")


@pytest.fixture
def redis_server(tmp_path: Path):
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    server.start()
    yield server
    server.kill()


async def publish_picks(url: str, picks) -> None:
    publisher = PickPublisher(url)
    await publisher.start()
    publisher.publish_many(picks)
    await publisher.stop()


@pytestmark_redis
def test_follow_reads_the_pick_stream_and_publishes_event_versions(redis_server: RedisServer):
    stations, hypos, true, spurious, arrival, _ = sequence(seed=4, events=2)
    url = redis_server.url

    async def main() -> None:
        await publish_picks(url, arrival)
        async with Redis.from_url(url, decode_responses=True) as client:
            pubsub = client.pubsub()
            await pubsub.subscribe("seispick:events:live")
            await pubsub.get_message(timeout=1)
            async with Redis.from_url(url, decode_responses=True) as bad:
                await bad.xadd(
                    "seispick:picks", {"id": "pick-broken", "trace_id": "SY.S000..HH", "phase": "P"}
                )
            events_publisher = PickPublisher(url)
            await events_publisher.start()
            live = LiveAssociator(Associator(stations), LiveConfig(window_s=120, delay_s=0))
            stop = asyncio.Event()
            task = asyncio.create_task(
                follow(url, live, events_publisher.publish, start_id="0", step_s=0.05, stop=stop)
            )
            await asyncio.sleep(1.0)
            stop.set()
            stats = await task
            await events_publisher.stop()
            assert stats.entries == len(arrival) + 1 and stats.malformed == 1
            entries = await client.xrange("seispick:events")
            messages = []
            while (message := await pubsub.get_message(timeout=0.5)) is not None:
                if message["type"] == "message":
                    messages.append(json.loads(message["data"]))
            await pubsub.aclose()
        fields = [f for _, f in entries]
        assert [m["id"] + m["version"] for m in messages] == [f["id"] + f["version"] for f in fields]
        final = {}
        for f in fields:
            final[f["id"]] = f
        assert len(final) == len(hypos)
        for f, group in zip(sorted(final.values(), key=lambda f: f["origin_time"]), true):
            assert set(f["pick_ids"].split(",")) == {p.id for p in group}
            assert int(f["n_picks"]) == len(group) and f["magnitude"] == ""
            assert {a[0] for a in json.loads(f["arrivals"])} == {p.id for p in group}

        # a second follower over the same stream publishes the same versions: nothing is added twice
        second = PickPublisher(url)
        await second.start()
        live = LiveAssociator(Associator(stations), LiveConfig(window_s=120, delay_s=0))
        stop = asyncio.Event()
        task = asyncio.create_task(follow(url, live, second.publish, start_id="0", step_s=0.05, stop=stop))
        await asyncio.sleep(1.0)
        stop.set()
        await task
        await second.stop()
        async with Redis.from_url(url, decode_responses=True) as client:
            assert len(await client.xrange("seispick:events")) == len(entries)
        assert second.duplicates == len(entries)

    asyncio.run(main())


@pytestmark_redis
def test_cli_follow_publishes_events(redis_server: RedisServer, tmp_path: Path):
    stations, hypos, true, _, arrival, _ = sequence(seed=5, events=1, spurious=15)
    asyncio.run(publish_picks(redis_server.url, arrival))
    stations_csv = write_stations_csv(stations, tmp_path / "st.csv")
    run = CliRunner().invoke(
        associate,
        [
            "--stations",
            str(stations_csv),
            "--follow",
            redis_server.url,
            "--from-start",
            "--duration",
            "2",
            "--delay-s",
            "0",
        ],
    )
    assert run.exit_code == 0, run.output
    assert f"followed seispick:picks: {len(arrival)} entries" in run.output

    async def events():
        async with Redis.from_url(redis_server.url, decode_responses=True) as client:
            return [f for _, f in await client.xrange("seispick:events")]

    fields = asyncio.run(events())
    assert {f["id"] for f in fields} == {fields[-1]["id"]}
    assert set(fields[-1]["pick_ids"].split(",")) == {p.id for p in true[0]}


@pytestmark_redis
def test_cli_follow_serves_metrics(redis_server: RedisServer, tmp_path: Path):
    """The associator of a sharded deployment is scraped like the replicas (README "Deployment")."""
    import socket
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    stations, hypos, true, _, arrival, _ = sequence(seed=5, events=1, spurious=15)
    asyncio.run(publish_picks(redis_server.url, arrival))
    stations_csv = write_stations_csv(stations, tmp_path / "st.csv")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = ["--stations", str(stations_csv), "--follow", redis_server.url, "--from-start", "--duration", "2"]
    run = CliRunner().invoke(associate, [*args, "--delay-s", "0", "--metrics-port", str(port), "-q"])
    assert run.exit_code == 0, run.output
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("seispick_events_declared_total", ())] == 1
    assert samples[("seispick_event_picks_associated_total", ())] == len(true[0])
    versions = sum(v for (name, labels), v in samples.items() if name == "seispick_published_total")
    assert (
        versions
        == samples[("seispick_events_declared_total", ())] + samples[("seispick_events_updated_total", ())]
    )
    assert samples[("seispick_published_total", (("kind", "event"), ("status", "final")))] == 1
    assert samples[("process_resident_memory_bytes", ())] > 0
    assert "_created" not in text


@pytestmark_redis
def test_follow_waits_for_redis_and_reads_only_new_picks(tmp_path: Path):
    """Redis down when the follower starts: it retries; once up, picks published from then on are associated."""
    stations, hypos, true, _, arrival, _ = sequence(seed=6, events=1, spurious=5)
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    published = []

    async def main():
        live = LiveAssociator(Associator(stations), LiveConfig(window_s=120, delay_s=0))
        stop = asyncio.Event()
        task = asyncio.create_task(
            follow(server.url, live, published.append, step_s=0.05, stop=stop, max_backoff_s=0.2)
        )
        await asyncio.sleep(0.6)
        await asyncio.to_thread(server.start)
        await asyncio.sleep(0.6)
        await publish_picks(server.url, arrival)
        await asyncio.sleep(1.5)
        stop.set()
        return await task

    try:
        stats = asyncio.run(main())
    finally:
        server.kill()
    assert stats.reconnects >= 1 and stats.entries == len(arrival)
    assert {a.pick_id for a in published[-1].arrivals} == {p.id for p in true[0]}


@pytestmark_redis
def test_follow_declares_events_from_the_pick_updates_stream(redis_server: RedisServer):
    """``associate --follow`` over sharded replicas sees what the service's own associator sees: with the
    pick-update stream followed, preliminary picks alone declare the events; without it, nothing is declared
    before final picks exist; final picks with the preliminary ids then change no event."""
    from seispick.picking.results import PickUpdate

    stations, hypos, true, _, arrival, _ = sequence(seed=4, events=2, spurious=0)
    url = redis_server.url

    async def run(updates: str | None, final: bool) -> tuple[list, object]:
        out: list = []
        config = LiveConfig(window_s=120, delay_s=0, settle=True)
        live = LiveAssociator(Associator(stations), config)
        stop = asyncio.Event()
        task = asyncio.create_task(
            follow(url, live, out.append, start_id="0", step_s=0.05, stop=stop, updates_stream=updates)
        )
        await asyncio.sleep(1.0)
        if final:
            await publish_picks(url, arrival)
            await asyncio.sleep(1.0)
        stop.set()
        return out, await task

    async def main() -> None:
        publisher = PickPublisher(url)
        await publisher.start()
        for pick in arrival:
            publisher.publish(PickUpdate("preliminary", pick))
        await publisher.stop()
        nothing, _ = await run(None, final=False)
        assert nothing == []
        events, stats = await run("seispick:picks:preliminary", final=False)
        assert stats.updates == len(arrival) and stats.entries == 0
        assert len({e.event_id for e in events}) == len(hypos)
        confirmed, stats = await run("seispick:picks:preliminary", final=True)
        assert stats.entries == len(arrival)
        versions = {}
        for e in confirmed:
            versions.setdefault(e.event_id, []).append((e.version, e.evaluation_status))
        # the final picks carry the preliminary ids: each event declared once, then only its final version
        assert all(v[0] == (1, "preliminary") and v[-1][1] == "final" for v in versions.values()), versions
        assert all(len(v) == 2 for v in versions.values()), versions

    asyncio.run(main())
