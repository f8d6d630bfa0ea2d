"""Preliminary picks: a first look from partial stacks, then confirmed (same id or superseding) or rejected,
while the final picks stay those of ``annotate``."""

from __future__ import annotations

import asyncio
import pickle
import shutil
from types import SimpleNamespace

import jsonschema
import numpy as np
import obspy
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from redis.asyncio import Redis

from seispick.picking.annotate import annotate
from seispick.picking.results import Pick, PickUpdate
from seispick.picking.segment import CoreSettings, SegmentPicker, grid_clock
from seispick.service.api.routers.stream import _subscribe, get_runtime, parse_status, router
from seispick.service.publish.publisher import PICK_FIELDS, UPDATE_FIELDS, PickPublisher, Record
from seispick.service.stream.picker import StreamPicker
from tests.streams import event_hour
from tests.test_stream_picker import chop


def window_output(peaks: list[tuple[int, float]], length: int = 3000) -> np.ndarray:
    """(N, P, S) of one window: Gaussian P peaks (local sample, height), N = 1 - P."""
    x = np.arange(length)
    p = np.zeros(length, np.float32)
    for at, height in peaks:
        p = np.maximum(p, height * np.exp(-((x - at) ** 2) / (2 * 20.0**2)).astype(np.float32))
    return np.stack([1 - p, p, np.zeros(length, np.float32)])


def run_core(
    card,
    first: list[tuple[int, float]],
    second: list[tuple[int, float]],
    preliminary: bool,
    station: str = "AAA",
):
    """A closed segment of 9000 samples, windows back in order, P peaks of the windows at 0 and 1500 given in
    absolute samples; returns the updates after the first window, all updates and all final items."""
    core = SegmentPicker(
        CoreSettings.of(card, "m"), f"XX.{station}..HH", 0, grid_clock(100.0), preliminary=preliminary
    )
    starts = core.extend(9000).tolist() + core.close(9000).tolist()
    outputs = {s: window_output([]) for s in starts}
    outputs[0] = window_output(first)
    outputs[1500] = window_output([(at - 1500, h) for at, h in second])
    final = core.result(0, outputs[0])
    early = core.take_updates()
    for start in starts[1:]:
        final += core.result(start, outputs[start])
    assert core.done
    return early, early + core.take_updates(), final


STATUS_FIELDS = ("status", "evaluation_mode", "supersedes")


def card_at_03(model):
    """The model's card at P and S thresholds 0.3: the window outputs of these cases (peaks of 0.5 and 0.6, an
    average below 0.3) are made for them, whatever the shipped card's calibrated thresholds are."""
    return model.card.model_copy(
        update={"default_thresholds": {**model.card.default_thresholds, "P": 0.3, "S": 0.3}}
    )


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ([(2500, 0.6)], [(2500, 0.6)], "same"),  # the second window agrees: confirmed, same id
        ([(2500, 0.5)], [(2540, 0.9)], "moved"),  # the stack peaks 40 ms later: a new id superseding
        ([(2500, 0.5)], [], "rejected"),  # the second window sees nothing: the average stays below 0.3
    ],
)
def test_core_preliminary_then_confirmed_moved_or_rejected(shipped_model, first, second, expected):
    early, updates, final = run_core(card_at_03(shipped_model), first, second, preliminary=True)
    _, none, plain = run_core(card_at_03(shipped_model), first, second, preliminary=False)
    assert final == plain and none == []  # the final picks do not depend on the first look
    assert [u.status for u in early] == ["preliminary"]  # after the first window alone
    prelim = early[0].pick
    assert prelim.phase == "P" and abs(prelim.peak_time.timestamp - 25.0) <= 0.01
    picks = [p for p in final if isinstance(p, Pick)]
    statuses = [u.status for u in updates]
    if expected == "rejected":
        assert picks == [] and statuses == ["preliminary", "rejected"] and updates[1].pick == prelim
        return
    assert statuses == ["preliminary", "confirmed"] and updates[1].pick == picks[0]
    if expected == "same":
        assert picks[0].id == prelim.id and updates[1].supersedes == ()
    else:
        assert picks[0].id != prelim.id and updates[1].supersedes == (prelim.id,)
        assert picks[0].peak_time - prelim.peak_time > 0.2


def test_update_dict_carries_status_and_supersedes(shipped_model):
    _, updates, _ = run_core(card_at_03(shipped_model), [(2500, 0.5)], [(2540, 0.9)], preliminary=True)
    confirmed = updates[1].as_dict()
    assert confirmed["status"] == "confirmed" and confirmed["evaluation_mode"] == "automatic"
    assert confirmed["supersedes"] == [updates[0].id]
    assert {k: v for k, v in confirmed.items() if k not in STATUS_FIELDS} == updates[1].pick.as_dict()


def stream_updates(model, stream: obspy.Stream, preliminary: bool = True):
    """Records in order (windows run before the next record): final items with the data end when emitted,
    and pick updates with theirs."""

    async def main():
        reach = {"t": 0.0}
        got: list = []
        updates: list[tuple[PickUpdate, float]] = []

        async def predict(name, windows):
            return model.predict(windows)

        picker = StreamPicker(
            model,
            predict,
            lambda item, latency: got.append((item, reach["t"])),
            silence_timeout_s=0.2,
            on_update=(lambda u, latency: updates.append((u, reach["t"]))) if preliminary else None,
        )
        await picker.start()
        for record in chop(stream):
            reach["t"] = record.stats.endtime.timestamp
            picker.add_trace(record)
            await asyncio.sleep(0)
            await picker.drain()
        await asyncio.sleep(0.6)  # silence closes the instrument
        await picker.drain()
        await picker.stop()
        return got, updates

    return asyncio.run(main())


def test_stream_preliminary_picks_on_real_traces(shipped_model):
    stream, _ = event_hour(obspy.UTCDateTime(2024, 6, 1, 0, 0, 3.0), station="AAA", seed=0)
    stream.trim(endtime=stream[0].stats.starttime + 1800)
    expected = annotate(stream, shipped_model).picks
    got, updates = stream_updates(shipped_model, stream)
    plain, none = stream_updates(shipped_model, stream, preliminary=False)
    finals = [item for item, _ in got if isinstance(item, Pick)]
    # final picks: exactly annotate's, and the same stream as without preliminary picks
    assert sorted(p.id for p in finals) == sorted(p.id for p in expected) and len(finals) > 10
    assert [item for item, _ in got] == [item for item, _ in plain] and none == []
    # every final pick is confirmed once, in the order the final stream has them
    confirmed = [u for u, _ in updates if u.status == "confirmed"]
    assert [u.pick for u in confirmed] == finals
    # every preliminary pick is resolved exactly once, after it: confirmed as is, superseded or rejected
    published: dict[str, int] = {}
    resolved: dict[str, str] = {}
    for i, (u, _) in enumerate(updates):
        if u.status == "preliminary":
            assert u.id not in published
            published[u.id] = i
            continue
        names = [*u.supersedes, u.id] if u.status == "confirmed" else [u.id]
        for name in names:
            if name in published:
                assert name not in resolved and published[name] < i
                resolved[name] = "moved" if name != u.id else u.status
        if u.status == "rejected":
            assert u.id in published
    assert resolved.keys() == published.keys()
    kinds = set(resolved.values())
    assert kinds == {"confirmed", "moved", "rejected"}, kinds
    # how much earlier: data seconds past the peak when first seen vs when final
    first_seen = {u.id: t for u, t in updates if u.status == "preliminary"}
    early, late = [], []
    for u, t in updates:
        if u.status != "confirmed":
            continue
        late.append(t - u.pick.peak_time.timestamp)
        seen = [first_seen[i] for i in (u.id, *u.supersedes) if i in first_seen]
        if seen:
            early.append(min(seen) - u.pick.peak_time.timestamp)
            assert min(seen) < t
    assert len(early) >= 0.8 * len(late)
    assert np.median(early) < 20 and np.median(late) > 30 and np.median(late) - np.median(early) > 15


def core_updates(card) -> tuple[list[PickUpdate], list[Pick]]:
    """The updates and final picks of the three core cases (same, moved, rejected), in that order."""
    updates: list[PickUpdate] = []
    finals: list[Pick] = []
    cases = [([(2500, 0.6)], [(2500, 0.6)]), ([(2500, 0.5)], [(2540, 0.9)]), ([(2500, 0.5)], [])]
    for station, (first, second) in zip(("AAA", "BBB", "CCC"), cases):
        _, got, final = run_core(card, first, second, preliminary=True, station=station)
        updates += got
        finals += [p for p in final if isinstance(p, Pick)]
    return updates, finals


def test_publisher_puts_updates_on_their_own_stream_once_each(shipped_model, tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("needs redis-server")
    from tests.test_publisher import SCHEMA, RedisServer, wait_for

    updates, finals = core_updates(card_at_03(shipped_model))
    assert [u.status for u in updates] == ["preliminary", "confirmed"] * 2 + ["preliminary", "rejected"]
    server = RedisServer(tmp_path)
    server.start()

    async def main() -> None:
        async with Redis.from_url(server.url, decode_responses=True) as client:
            publisher = PickPublisher(server.url)
            await publisher.start()
            for update in updates:  # as the runtime hands them over: the final pick beside its confirmation
                publisher.publish(update)
                if update.status == "confirmed":
                    publisher.publish(update.pick)
            publisher.publish(updates[0])  # a repeat: the same id and status go out once
            await wait_for(lambda: publisher.depth == 0)
            assert publisher.published == len(finals) and publisher.updates_published == len(updates)
            picks = await client.xrange("seispick:picks")
            assert [f["id"] for _, f in picks] == [p.id for p in finals]  # final picks only, as before
            assert all(list(f) == list(PICK_FIELDS) for _, f in picks)
            entries = await client.xrange("seispick:picks:preliminary")
            assert [(f["id"], f["status"]) for _, f in entries] == [(u.id, u.status) for u in updates]
            assert updates[0].id == updates[1].id  # the same id as preliminary and confirmed: both went out
            for (_, fields), update in zip(entries, updates):
                assert list(fields) == list(UPDATE_FIELDS) and fields["evaluation_mode"] == "automatic"
                assert fields["supersedes"] == ",".join(update.supersedes)
                jsonschema.validate(fields, SCHEMA)
            for _, fields in picks:
                jsonschema.validate(fields, SCHEMA)
            with pytest.raises(jsonschema.ValidationError):  # a status outside the vocabulary
                jsonschema.validate({**entries[0][1], "status": "reviewed"}, SCHEMA)
            rejected = await publisher.recent_from_redis(kind="pick_update", status="rejected")
            assert [r.id for r in rejected] == [updates[-1].id]
            await publisher.stop()
            again = PickPublisher(server.url)  # a restart re-publishing the same updates adds nothing
            await again.start()
            again.publish_many(updates)
            await wait_for(lambda: again.depth == 0)
            await again.stop()
            assert again.duplicates == len(updates)
            assert len(await client.xrange("seispick:picks:preliminary")) == len(updates)

    try:
        asyncio.run(main())
    finally:
        server.kill()


def test_routes_filter_by_status(shipped_model):
    updates, finals = core_updates(card_at_03(shipped_model))

    async def main() -> tuple[PickPublisher, list, list, list]:
        publisher = PickPublisher(None)
        runtime = SimpleNamespace(publisher=publisher)
        plain = _subscribe(runtime, None, None, None, None)
        prelim = _subscribe(runtime, None, None, None, parse_status("preliminary"))
        either = _subscribe(runtime, None, None, "P", parse_status("confirmed, rejected"))
        for update in updates:
            publisher.publish(update)
            if update.status == "confirmed":
                publisher.publish(update.pick)
        await publisher.stop()
        return publisher, [r async for r in plain], [r async for r in prelim], [r async for r in either]

    publisher, plain, prelim, either = asyncio.run(main())
    assert [(r.kind, r.id) for r in plain] == [("pick", p.id) for p in finals]  # live: as before
    assert [(r.id, r.fields["status"]) for r in prelim] == [
        (u.id, u.status) for u in updates if u.status == "preliminary"
    ]
    assert [r.fields["status"] for r in either] == ["confirmed", "confirmed", "rejected"]

    app = FastAPI()
    app.include_router(router)
    app.dependency_overrides[get_runtime] = lambda: SimpleNamespace(publisher=publisher)
    client = TestClient(app)
    answer = client.get("/v1/picks").json()
    assert [p["id"] for p in answer["picks"]] == [p.id for p in finals]
    assert all("status" not in p and "supersedes" not in p for p in answer["picks"])  # unchanged records
    moved = client.get("/v1/picks", params={"status": "confirmed"}).json()["picks"]
    assert [p["supersedes"] for p in moved] == [[], [updates[2].id]]
    assert all(p["status"] == "confirmed" and p["evaluation_mode"] == "automatic" for p in moved)
    gone = client.get("/v1/picks", params={"status": "rejected"}).json()["picks"]
    assert [p["id"] for p in gone] == [updates[-1].id] and gone[0]["probability"] == pytest.approx(
        0.5, abs=0.01
    )
    wrong = client.get("/v1/picks", params={"status": "confirmed,final"})
    assert wrong.status_code == 422 and wrong.json()["detail"][0]["loc"] == ["query", "status"]


@pytest.mark.parametrize("preliminary", [True, False])
def test_runtime_publishes_updates_beside_the_unchanged_picks(shipped_model, tmp_path, preliminary):
    """The runtime's emit path: final picks as before; pick updates only with ``preliminary_picks``, and they
    survive the pickling a worker's channel does."""
    from prometheus_client import CollectorRegistry

    from seispick.service.settings import Settings, StreamingSettings
    from seispick.service.stream.job_metrics import StreamMetrics
    from seispick.service.stream.runtime import StreamingRuntime

    stream, _ = event_hour(obspy.UTCDateTime(2024, 6, 1, 0, 0, 3.0), station="AAA", seed=3)
    stream.trim(endtime=stream[0].stats.starttime + 600)
    expected = annotate(stream, shipped_model).picks

    async def predict(name, windows):
        return shipped_model.predict(windows)

    streaming = StreamingSettings(watch_dirs=[tmp_path], workers=1, preliminary_picks=preliminary)
    sunk: list = []
    runtimes = [
        StreamingRuntime(
            Settings(streaming=streaming), shipped_model, predict, StreamMetrics(CollectorRegistry())
        )
    ]
    runtimes.append(
        StreamingRuntime(
            Settings(streaming=streaming),
            shipped_model,
            predict,
            StreamMetrics(CollectorRegistry()),
            sink=lambda item: sunk.append(pickle.loads(pickle.dumps(item))),
        )
    )

    async def main() -> None:
        for runtime in runtimes:
            for record in chop(stream):
                runtime.picker.add_trace(record)
                await asyncio.sleep(0)
                await runtime.picker.drain()
            await runtime.picker.stop(flush=True)

    asyncio.run(main())
    publisher = runtimes[0].publisher
    picks = publisher.recent(limit=10_000)
    assert sorted(r.id for r in picks) == sorted(p.id for p in expected) and picks
    updates = publisher.recent(limit=10_000, kind="pick_update")
    assert [r.fields["status"] for r in updates if r.fields["status"] == "confirmed"] == (
        ["confirmed"] * len(picks) if preliminary else []
    )
    assert bool(updates) == preliminary and publisher.updates_published == len(updates)
    if preliminary:
        assert updates[0].fields["status"] == "preliminary"
    sunk_updates = [u for u in sunk if isinstance(u, PickUpdate)]
    assert [Record.of(u).key for u in sunk_updates] == [r.key for r in updates]
    assert [p.id for p in sunk if isinstance(p, Pick)] == [r.id for r in picks]


def test_websocket_refuses_an_unknown_status():
    from starlette.websockets import WebSocketDisconnect

    from seispick.service.api.routers.stream import ws_router

    app = FastAPI()
    app.include_router(ws_router)
    url = "/v1/ws/picks?status=preliminary,final"
    with pytest.raises(WebSocketDisconnect) as closed, TestClient(app).websocket_connect(url) as ws:
        ws.receive_text()
    assert closed.value.code == 1008 and "unknown status final" in closed.value.reason
