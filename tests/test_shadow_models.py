"""Shadow models on the live stream (streaming.shadow_models): run beside the live model on the same records,
published to a stream of their own (never the pick stream, no pick updates), compared with the live model.

The demo archive (real traces) streamed from a watched folder with phasenet-original live and phasenet-ta109c
as shadow: the shadow stream holds exactly ``annotate``'s phasenet-ta109c picks, the pick stream exactly
phasenet-original's, and the agreement the service counts (metrics and route) is ``compare`` of the two; with
one picking process and with ``--workers 2``.
"""

from __future__ import annotations

import shutil
import time
import uuid

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from seispick.models.registry import ModelRegistry
from seispick.picking.agreement import AgreementTracker, Mark, compare, match_times, rates
from seispick.picking.annotate import annotate
from seispick.picking.results import Pick
from seispick.picking.waveforms import read_waveforms
from seispick.service.publish.publisher import PickPublisher
from seispick.service.settings import Settings, StreamingSettings
from seispick.service.stream.runtime import DEMO_DIR
from seispick.service.stream.shadow import ShadowConfigError, shadow_models
from tests.service_harness import ServiceHarness

REDIS_URL = "redis://127.0.0.1:6379/0"
LIVE, SHADOW = "phasenet-original", "phasenet-ta109c"
HOLD_S = 10.0


def redis_available() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


# ------------------------------------------------------------------------------------------- matching
def test_matching_is_one_to_one_nearest_first_within_the_tolerance() -> None:
    # shadow 0.08 is nearer live 0.15 (0.07) than live 0.0 (0.08): nearest first takes that pair
    assert match_times([0.0, 0.15], [0.08]) == [(1, 0)]
    assert match_times([0.0], [0.1, -0.1]) == [(0, 1)]  # a tie: the earlier shadow pick
    assert match_times([0.0], [0.1000001, 0.5]) == []  # beyond 0.1 s
    assert match_times([1.0, 1.05], [1.02, 1.06]) == [(1, 1), (0, 0)]


def _pick(trace_id: str, phase: str, t: float, model: str = LIVE) -> Pick:
    from obspy import UTCDateTime

    peak = UTCDateTime(1_600_000_000 + t)
    return Pick(trace_id, phase, peak, 0.9, peak - 0.5, peak + 0.5, model)  # its id names the model


def test_compare_counts_per_network_and_phase_and_the_tracker_agrees_once_settled() -> None:
    live = [_pick("XX.A..HH", "P", 10.0), _pick("XX.A..HH", "S", 20.0), _pick("YY.B..HH", "P", 10.0)]
    shadow = [_pick("XX.A..HH", "P", 10.05), _pick("XX.A..HH", "S", 25.0), _pick("YY.B..HH", "S", 10.0)]
    counts = compare(live, shadow)
    assert counts == {
        ("XX", "P"): {"matched": 1, "only_live": 0, "only_shadow": 0},
        ("XX", "S"): {"matched": 0, "only_live": 1, "only_shadow": 1},
        ("YY", "P"): {"matched": 0, "only_live": 1, "only_shadow": 0},
        ("YY", "S"): {"matched": 0, "only_live": 0, "only_shadow": 1},
    }
    assert rates({"matched": 3, "only_live": 1, "only_shadow": 0}) == {
        "live_recall": 0.75,
        "shadow_precision": 1.0,
        "agreement": 0.75,
    }
    tracker = AgreementTracker(hold_s=120.0)
    tracker.add("live", Mark.of(live[0]), now=0.0)
    assert tracker.settle(now=119.0) == {} and tracker.held == 1  # still waiting for the shadow's pick
    tracker.add("shadow", Mark.of(shadow[0]), now=119.0)
    for side, picks in (("live", live[1:]), ("shadow", shadow[1:])):
        for pick in picks:
            tracker.add(side, Mark.of(pick), now=119.0)
    tracker.settle(now=200.0)
    assert tracker.held == 6  # none waited 120 s since its cluster's newest pick (at 119 s), nor is passed
    tracker.settle(now=239.0)
    assert tracker.held == 0 and tracker.counts == counts


def test_the_tracker_counts_a_pick_once_both_models_have_moved_past_it() -> None:
    tracker = AgreementTracker(hold_s=120.0)
    tracker.add("live", Mark("XX.A..HH", "P", 0.0), now=0.0)
    tracker.add("live", Mark("XX.A..HH", "P", 500.0), now=1.0)
    assert tracker.settle(now=2.0) == {}  # the shadow has not moved past it
    tracker.add("shadow", Mark("XX.A..HH", "S", 500.0), now=2.0)
    assert tracker.settle(now=3.0) == {("XX", "P"): {"matched": 0, "only_live": 1, "only_shadow": 0}}
    assert tracker.held == 2


# ------------------------------------------------------------------------------------------- settings
def test_a_shadow_model_is_not_also_live_and_is_a_picker() -> None:
    with pytest.raises(ValidationError, match="also in"):
        StreamingSettings(models=[LIVE, SHADOW], shadow_models=[SHADOW])
    settings = Settings(
        default_model=LIVE, streaming=StreamingSettings(models=[LIVE], shadow_models=[SHADOW, SHADOW])
    )
    assert settings.streaming.stream_models(LIVE) == [LIVE, SHADOW]  # after the live ones
    assert settings.streaming.live_models(LIVE) == [LIVE]
    registry = ModelRegistry()
    models = {name: registry.load(name) for name in (LIVE, SHADOW, "convnetquake-ta109c")}
    assert shadow_models(settings, models) == (LIVE, [SHADOW])
    detector = Settings(streaming=StreamingSettings(models=[LIVE], shadow_models=["convnetquake-ta109c"]))
    with pytest.raises(ShadowConfigError, match="SEISPICK_STREAMING__SHADOW_MODELS.*only pickers"):
        shadow_models(detector, models)
    default = Settings(default_model=LIVE, streaming=StreamingSettings(shadow_models=[LIVE]))
    with pytest.raises(ShadowConfigError, match="also a live model"):
        shadow_models(default, models)


def test_the_publisher_puts_shadow_picks_on_their_own_stream_and_drops_their_updates() -> None:
    from seispick.picking.results import PickUpdate

    publisher = PickPublisher(shadow_models=[SHADOW])
    publisher.publish(_pick("XX.A..HH", "P", 1.0))
    publisher.publish(_pick("XX.A..HH", "P", 1.0, SHADOW))
    publisher.publish(PickUpdate("preliminary", _pick("XX.A..HH", "P", 2.0, SHADOW)))
    assert [r.fields["model"] for r in publisher.recent(kind="pick")] == [LIVE]
    assert [r.fields["model"] for r in publisher.recent(kind="shadow_pick")] == [SHADOW]
    assert publisher.recent(kind="pick_update") == []
    assert publisher.streams["shadow_pick"] == "seispick:picks:shadow"
    assert publisher.channels["shadow_pick"] == "seispick:picks:shadow:live"


# ------------------------------------------------------------------------------------------- the service
def _agreement_samples(
    text: str, name: str = "seispick_shadow_agreement_total"
) -> dict[tuple[str, str, str, str], float]:
    """The agreement counter ``name`` of a /metrics text, by (model, network, phase, outcome)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                labels = s.labels
                out[(labels["model"], labels["network"], labels["phase"], labels["outcome"])] = s.value
    return out


@pytest.mark.parametrize("workers", [1, 2])
def test_the_demo_archive_streams_live_and_shadow_picks_apart_and_counts_their_agreement(
    tmp_path, workers
) -> None:
    files = sorted(DEMO_DIR.glob("SP.DEMO*.mseed"))
    archive = read_waveforms(files).stream
    registry = ModelRegistry()
    live_expected = annotate(archive, registry.load(LIVE)).picks
    shadow_expected = annotate(archive, registry.load(SHADOW)).picks
    counts = compare(live_expected, shadow_expected)
    assert live_expected and shadow_expected and any(row["only_live"] for row in counts.values())

    folder = tmp_path / "watched"
    folder.mkdir()
    use_redis = redis_available()
    key = f"seispick:test:shadow:{uuid.uuid4().hex[:8]}"
    settings = Settings(
        models=[LIVE],
        default_model=LIVE,
        redis_url=REDIS_URL if use_redis else None,
        streaming=StreamingSettings(
            watch_dirs=[folder],
            silence_timeout_s=2.0,
            workers=workers,  # 2: the picks come from picking processes, through the API process's publisher
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
    )
    r = redis.Redis.from_url(REDIS_URL, decode_responses=True) if use_redis else None
    try:
        with ServiceHarness(settings, timeout=120) as service:
            job = service.state.streaming
            assert type(job).__name__ == ("WorkerPool" if workers > 1 else "StreamingRuntime")
            publisher = job.publisher
            for path in files:
                shutil.copy(path, folder / path.name)
            deadline = time.time() + 120
            while time.time() < deadline:
                if len(publisher.recent(kind="pick", limit=10_000)) >= len(live_expected) and len(
                    publisher.recent(kind="shadow_pick", limit=10_000)
                ) >= len(shadow_expected):
                    break
                time.sleep(0.5)
            time.sleep(3.0)  # anything more would be a pick too many
            while time.time() < deadline:  # the last picks are held HOLD_S (wall clock) for a counterpart
                report = service.get(f"/v1/models/{SHADOW}/agreement").json()
                if report["held"] == 0:
                    break
                time.sleep(1.0)
            report = service.get(f"/v1/models/{SHADOW}/agreement").json()
            metrics = _agreement_samples(service.get("/metrics").text)
            not_shadow = service.get(f"/v1/models/{LIVE}/agreement")
            live_ring = publisher.recent(kind="pick", limit=10_000)
            shadow_ring = publisher.recent(kind="shadow_pick", limit=10_000)
            updates = publisher.recent(kind="pick_update", limit=10_000)
            if r is not None:
                deadline = time.time() + 30
                while publisher.depth and time.time() < deadline:
                    time.sleep(0.2)
                redis_live = [fields for _, fields in r.xrange(key)]
                redis_shadow = [fields for _, fields in r.xrange(key + ":shadow")]
                redis_updates = [fields for _, fields in r.xrange(key + ":prelim")]
    finally:
        if r is not None:
            stale = list(r.scan_iter(match=key + "*", count=1000))
            if stale:
                r.delete(*stale)

    def ids(picks) -> list[str]:
        return sorted(p.id for p in picks)

    # the streams: exactly each model's picks of seispick pick, apart; updates of the live model only
    assert sorted(rec.id for rec in live_ring) == ids(live_expected)
    assert sorted(rec.id for rec in shadow_ring) == ids(shadow_expected)
    assert updates and {rec.fields["model"] for rec in updates} == {LIVE}
    if r is not None:
        assert sorted(f["id"] for f in redis_live) == ids(live_expected)
        assert sorted(f["id"] for f in redis_shadow) == ids(shadow_expected)
        assert {f["model"] for f in redis_shadow} == {SHADOW} and {f["model"] for f in redis_live} == {LIVE}
        assert {f["model"] for f in redis_updates} == {LIVE}

    # the agreement: the route and the counters say what compare() says of the batch picks
    assert report["live_model"] == LIVE and report["held"] == 0 and report["dropped"] == 0
    got = {(row["network"], row["phase"]): {o: row[o] for o in ("matched", "only_live", "only_shadow")}
           for row in report["networks"]}  # fmt: skip
    assert got == counts
    total = {o: sum(row[o] for row in counts.values()) for o in ("matched", "only_live", "only_shadow")}
    assert report["total"] == {**total, **rates(total)}
    for phase, row in report["phases"].items():
        assert row["matched"] == sum(v["matched"] for (_, p), v in counts.items() if p == phase)
    expected_metrics = {
        (SHADOW, network, phase, outcome): float(n)
        for (network, phase), row in counts.items()
        for outcome, n in row.items()
        if n
    }
    assert metrics == expected_metrics
    assert not_shadow.status_code == 404 and "streaming.shadow_models" in not_shadow.json()["detail"]
