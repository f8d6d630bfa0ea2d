"""Promoting a shadow model at run time (``POST /v1/models/{name}/promote``): the roles switch, nothing restarts.

* the stream picker: a model's pick updates (and first-look windows) start or stop mid-segment while every
  model's final picks stay exactly ``annotate``'s (no buffer, window or stack is touched);
* the publisher: picks go by the role at ``publish``; the demoted model's open preliminary picks are rejected;
* the service on the demo archive, in one process and with ``--workers 2``: station SP.DEMO1 streamed before
  the promotion, the other two after; each stream holds exactly the picks its role had when they were
  published, no pick is on both, the updates follow the live model and the agreement the new pair.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid

import obspy
import pytest
import redis

from seispick.models.registry import ModelRegistry
from seispick.picking.agreement import compare
from seispick.picking.annotate import annotate
from seispick.picking.results import Pick, PickUpdate
from seispick.picking.waveforms import read_waveforms
from seispick.service.publish.publisher import PickPublisher
from seispick.service.settings import EventsSettings, Settings, StreamingSettings
from seispick.service.stream.picker import StreamPicker
from seispick.service.stream.runtime import DEMO_DIR
from tests.service_harness import ServiceHarness
from tests.streams import event_hour
from tests.test_stream_picker import chop

REDIS_URL = "redis://127.0.0.1:6379/0"
LIVE, SHADOW = "phasenet-original", "phasenet-ta109c"
HOLD_S = 5.0


def redis_available() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="module")
def models():
    registry = ModelRegistry()
    return {name: registry.load(name) for name in (LIVE, SHADOW)}


# ------------------------------------------------------------------------------------------- the picker
def test_the_picker_switches_pick_updates_mid_segment_and_keeps_the_final_picks(models) -> None:
    stream, _ = event_hour(obspy.UTCDateTime(2024, 6, 1, 0, 0, 3.0), station="AAA", seed=3)
    stream.trim(endtime=stream[0].stats.starttime + 1200)
    expected = {name: annotate(stream, model).picks for name, model in models.items()}
    switch_at = stream[0].stats.starttime.timestamp + 600  # between two events, inside one segment

    async def main():
        phase = {"now": "before"}
        finals: list[tuple[Pick, str]] = []
        updates: list[tuple[PickUpdate, str]] = []

        async def predict(name, windows):
            return models[name].predict(windows)

        picker = StreamPicker(
            [models[LIVE], models[SHADOW]],
            predict,
            lambda item, latency: finals.append((item, phase["now"])),
            silence_timeout_s=0.2,
            on_update=lambda update, latency: updates.append((update, phase["now"])),
            first_look_stride_s=5.0,
            quiet=[SHADOW],
        )
        await picker.start()
        for record in chop(stream):
            if phase["now"] == "before" and record.stats.endtime.timestamp >= switch_at:
                segments = {name: p.current for name, p in picker.instruments["XX.AAA..HH"].pickers.items()}
                picker.set_quiet([LIVE])  # the promotion: SHADOW live, LIVE its shadow
                phase["now"] = "after"
                assert all(
                    p.current is segments[name]
                    for name, p in picker.instruments["XX.AAA..HH"].pickers.items()
                )
            picker.add_trace(record)
            await asyncio.sleep(0)
            await picker.drain()
        await asyncio.sleep(0.6)  # silence closes the instrument
        await picker.drain()
        await picker.stop()
        looks = {
            name: p.stats.first_look_windows for name, p in picker.instruments["XX.AAA..HH"].pickers.items()
        }
        return finals, updates, looks

    finals, updates, looks = asyncio.run(main())
    # every model's final picks: exactly annotate's, whatever its role
    for name in (LIVE, SHADOW):
        got = sorted(p.id for p, _ in finals if isinstance(p, Pick) and p.model == name)
        assert got == sorted(p.id for p in expected[name]) and got, name
    # updates: the live model's before the switch, the promoted model's after, never the other's
    assert {u.pick.model for u, when in updates if when == "before"} == {LIVE}
    after = [u for u, when in updates if when == "after"]
    assert {u.pick.model for u in after} == {SHADOW}
    # the promoted model: preliminary picks after the switch, every one resolved by the end; every final pick
    # of it emitted after the switch confirmed once, in order
    assert any(u.status == "preliminary" for u in after)
    finals_after = [p for p, when in finals if when == "after" and isinstance(p, Pick) and p.model == SHADOW]
    assert finals_after and [u.pick for u in after if u.status == "confirmed"] == finals_after
    published = {u.id for u in after if u.status == "preliminary"}
    resolved = {i for u in after if u.status == "confirmed" for i in (u.id, *u.supersedes)}
    resolved |= {u.id for u in after if u.status == "rejected"}
    assert published <= resolved
    assert looks[SHADOW] > 0  # first-look windows started mid-segment for the promoted model


# ------------------------------------------------------------------------------------------- the publisher
def _pick(t: float, model: str) -> Pick:
    peak = obspy.UTCDateTime(1_600_000_000 + t)
    return Pick("XX.A..HH", "P", peak, 0.9, peak - 0.5, peak + 0.5, model)


def test_the_publisher_routes_by_the_role_at_publish_and_rejects_the_demoted_open_preliminary_picks() -> None:
    publisher = PickPublisher(shadow_models=[SHADOW])
    before = [_pick(1.0, LIVE), _pick(1.0, SHADOW)]
    publisher.publish_many(before)
    open_pick, done_pick = _pick(5.0, LIVE), _pick(3.0, LIVE)
    publisher.publish(PickUpdate("preliminary", done_pick))
    publisher.publish(PickUpdate("confirmed", done_pick))
    publisher.publish(PickUpdate("preliminary", open_pick))
    assert publisher.set_shadow_models([LIVE]) == 1  # the promotion: SHADOW live, LIVE shadow
    after = [_pick(7.0, LIVE), _pick(7.0, SHADOW)]
    publisher.publish_many(after)
    publisher.publish(PickUpdate("preliminary", _pick(9.0, LIVE)))  # dropped: a shadow model's
    publisher.publish(PickUpdate("preliminary", _pick(9.0, SHADOW)))
    picks = [r.id for r in publisher.recent(kind="pick")]
    shadow = [r.id for r in publisher.recent(kind="shadow_pick")]
    assert sorted(picks) == sorted([before[0].id, after[1].id])
    assert sorted(shadow) == sorted([before[1].id, after[0].id])
    updates = [(r.fields["model"], r.fields["status"], r.id) for r in publisher.recent(kind="pick_update")]
    assert updates == [
        (LIVE, "preliminary", done_pick.id),
        (LIVE, "confirmed", done_pick.id),
        (LIVE, "preliminary", open_pick.id),
        (LIVE, "rejected", open_pick.id),  # rejected at the switch: its final pick would be a shadow pick
        (SHADOW, "preliminary", _pick(9.0, SHADOW).id),
    ]
    assert publisher.set_shadow_models([LIVE]) == 0  # nothing changes twice


# ------------------------------------------------------------------------------------------- the service
def _wait(condition, seconds: float = 120.0) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError("timed out")


@pytest.mark.parametrize("workers", [1, 2])
def test_promotion_on_the_demo_archive_switches_the_streams_at_the_request(tmp_path, workers) -> None:
    files = sorted(DEMO_DIR.glob("SP.DEMO*.mseed"))
    registry = ModelRegistry()
    expected = {}  # (model, station file) -> annotate's picks
    for path in files:
        stream = read_waveforms([path]).stream
        for name in (LIVE, SHADOW):
            expected[(name, path.name)] = annotate(stream, registry.load(name)).picks
    first, rest = files[0].name, [p.name for p in files[1:]]

    def of(name: str, names: list[str]) -> list[str]:
        return sorted(p.id for n in names for p in expected[(name, n)])

    folder = tmp_path / "watched"
    folder.mkdir()
    use_redis = redis_available()
    key = f"seispick:test:promote:{uuid.uuid4().hex[:8]}"
    settings = Settings(
        models=[LIVE],
        default_model=LIVE,
        redis_url=REDIS_URL if use_redis else None,
        streaming=StreamingSettings(
            watch_dirs=[folder],
            silence_timeout_s=2.0,
            workers=workers,
            models=[LIVE],
            shadow_models=[SHADOW],
            shadow_hold_s=HOLD_S,
            stream_key=key,
            channel=key + ":live",
            detections_key=key + ":det",
            preliminary_key=key + ":prelim",
            preliminary_channel=key + ":prelim:live",
            shadow_key=key + ":shadow",
            shadow_channel=key + ":shadow:live",
        ),
        events=EventsSettings(  # the live association follows the live picker (events.model unset)
            stations=DEMO_DIR / "stations.csv",
            magnitudes=False,
            stream_key=key + ":events",
            channel=key + ":events:live",
        ),
    )
    r = redis.Redis.from_url(REDIS_URL, decode_responses=True) if use_redis else None
    try:
        with ServiceHarness(settings, timeout=120) as service:
            publisher = service.state.streaming.publisher

            def ring(kind: str) -> list:
                return publisher.recent(kind=kind, limit=10_000)

            refused = service.post(f"/v1/models/{LIVE}/promote")  # live already
            assert refused.status_code == 404 and "streaming.shadow_models" in refused.json()["detail"]
            assert service.post("/v1/models/no-such-model/promote").status_code == 404
            shutil.copy(files[0], folder / first)
            _wait(lambda: len(ring("pick")) >= len(of(LIVE, [first]))
                  and len(ring("shadow_pick")) >= len(of(SHADOW, [first])))  # fmt: skip
            _wait(lambda: service.get(f"/v1/models/{SHADOW}/agreement").json()["held"] == 0)
            associated = service.get("/v1/events").json()["association"]
            assert associated["model"] == LIVE
            assert (
                f'seispick_model_stream_role{{name="{LIVE}",role="live"}} 1.0' in service.get("/metrics").text
            )
            before = {
                kind: {rec.key for rec in ring(kind)} for kind in ("pick", "shadow_pick", "pick_update")
            }

            answer = service.post(f"/v1/models/{SHADOW}/promote")
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["live_models"] == [SHADOW] and body["shadow_models"] == [LIVE]
            assert body["associated_model"] == SHADOW
            assert (
                "SEISPICK_STREAMING__MODELS=" + SHADOW in body["persist"] and "in memory" in body["persist"]
            )
            roles = {m["name"]: m["stream_role"] for m in service.get("/v1/models").json()["models"]}
            assert roles[SHADOW] == "live" and roles[LIVE] == "shadow"
            metrics = service.get("/metrics").text
            assert f'seispick_model_stream_role{{name="{SHADOW}",role="live"}} 1.0' in metrics
            assert f'seispick_model_stream_role{{name="{LIVE}",role="shadow"}} 1.0' in metrics
            assert f'seispick_model_stream_role{{name="{LIVE}",role="live"}}' not in metrics
            assert service.get(f"/v1/models/{SHADOW}/agreement").status_code == 404  # live now

            for name in rest:
                shutil.copy(DEMO_DIR / name, folder / name)
            _wait(lambda: len(ring("pick")) >= len(of(LIVE, [first])) + len(of(SHADOW, rest))
                  and len(ring("shadow_pick")) >= len(of(SHADOW, [first])) + len(of(LIVE, rest)))  # fmt: skip
            time.sleep(3.0)  # anything more would be a pick too many
            _wait(lambda: service.get(f"/v1/models/{LIVE}/agreement").json()["held"] == 0)
            report = service.get(f"/v1/models/{LIVE}/agreement").json()
            association = service.get("/v1/events").json()["association"]
            picks, shadow_picks = ring("pick"), ring("shadow_pick")
            updates = ring("pick_update")
            back = service.post(f"/v1/models/{LIVE}/promote")  # and back again
            assert back.status_code == 200 and back.json()["live_models"] == [LIVE]
            if r is not None:
                _wait(lambda: not publisher.depth, 30)
                redis_picks = sorted(f["id"] for _, f in r.xrange(key))
                redis_shadow = sorted(f["id"] for _, f in r.xrange(key + ":shadow"))
    finally:
        if r is not None:
            stale = list(r.scan_iter(match=key + "*", count=1000))
            if stale:
                r.delete(*stale)

    # before the switch: the first station's picks by the old roles, unchanged by the promotion
    assert sorted(before["pick"]) == of(LIVE, [first]) and sorted(before["shadow_pick"]) == of(
        SHADOW, [first]
    )
    # after it: the promoted model's picks on the pick stream, the demoted model's on the shadow stream
    assert sorted(rec.id for rec in picks) == sorted(of(LIVE, [first]) + of(SHADOW, rest))
    assert sorted(rec.id for rec in shadow_picks) == sorted(of(SHADOW, [first]) + of(LIVE, rest))
    assert not {rec.id for rec in picks} & {rec.id for rec in shadow_picks}  # no pick on both streams
    if r is not None:
        assert redis_picks == sorted(rec.id for rec in picks)
        assert redis_shadow == sorted(rec.id for rec in shadow_picks)
    # pick updates: the live model's before the switch; after it the promoted model's (each of its picks
    # confirmed) and the demoted model's open preliminary picks rejected at the switch, nothing else of it
    assert before["pick_update"] and {
        rec.fields["model"] for rec in updates if rec.key in before["pick_update"]
    } == {LIVE}
    after = [rec for rec in updates if rec.key not in before["pick_update"]]
    assert {rec.fields["status"] for rec in after if rec.fields["model"] == LIVE} <= {"rejected"}
    assert len([rec for rec in after if rec.fields["model"] == LIVE]) == body["rejected_preliminary_picks"]
    confirmed = sorted(
        rec.id for rec in after if rec.fields["model"] == SHADOW and rec.fields["status"] == "confirmed"
    )
    assert confirmed == of(SHADOW, rest)
    # the association: the promoted model's picks from the switch on (final picks and updates of it)
    assert association["model"] == SHADOW
    assert association["picks_received"] > associated["picks_received"] + len(of(SHADOW, rest)) // 2
    # the agreement: the demoted model against the promoted one, counted from the switch
    assert report["live_model"] == SHADOW
    got = {(row["network"], row["phase"]): {o: row[o] for o in ("matched", "only_live", "only_shadow")}
           for row in report["networks"]}  # fmt: skip
    live_rest = [p for n in rest for p in expected[(SHADOW, n)]]
    shadow_rest = [p for n in rest for p in expected[(LIVE, n)]]
    assert got == compare(live_rest, shadow_rest)


def test_promotion_needs_the_api_key_and_a_stream() -> None:
    key = "k3y-promote"
    with ServiceHarness(Settings(api_keys=[key], models=[LIVE], default_model=LIVE)) as service:
        assert service.post(f"/v1/models/{SHADOW}/promote").status_code == 401
        refused = service.post(f"/v1/models/{SHADOW}/promote", headers={"x-api-key": key})
        assert refused.status_code == 409 and "no real-time stream" in refused.json()["detail"]
        roles = service.get("/v1/models", headers={"x-api-key": key}).json()["models"]
        assert {m["stream_role"] for m in roles} == {None}
