"""Events that settle: no flip-flop between two solutions, one id per event, a final version marked final."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from seispick.events import synthetic_network as syn
from seispick.events.associate import Associator
from seispick.events.live import LiveAssociator, LiveConfig
from seispick.events.quakeml import events_to_catalog
from seispick.events.stations import station_key
from seispick.service.publish.publisher import PickPublisher
from seispick.service.settings import EventsSettings, Settings, StreamingSettings
from seispick.service.stream.association import LiveEvents, live_config
from tests.test_events_associate import scenario, write_stations_csv
from tests.test_events_live import sequence


def _relocated(associator: Associator, picks, event, arrivals):
    rows = np.array([a.row for a in arrivals])
    o = event.origin
    return associator.describe(picks, o.time, o.x_km, o.y_km, o.depth_km, rows, np.zeros(len(rows)))


def _state(event) -> tuple:
    o = event.origin
    return frozenset(a.pick_id for a in event.arrivals), round(o.x_km, 1), round(o.y_km, 1), round(o.time, 2)


def flip_flop(settle: bool, swap: bool, steps: int = 20):
    """One event whose every other re-run loses its last two picks (``swap``: its last pick, for a spurious
    pick at another station), relocated: PyOcto alternating between two solutions, step after step."""
    stations, _, true, _, _, _ = sequence(events=1, spurious=0)
    picks = sorted(true[0], key=lambda p: p.peak_time.timestamp)
    last = picks[-1].peak_time.timestamp
    other = next(s for key, s in stations.stations.items() if key != station_key(picks[-1].trace_id))
    spurious = syn.make_pick(other, "P", last - 1.0)
    associator = Associator(stations)
    real, calls = associator.run_window, []

    def alternating(window, rows, *args, **kwargs):
        events = real(window, rows, *args, **kwargs)
        calls.append(len(events))
        if len(calls) % 2 == 1:
            return events
        out = []
        for event in events:
            arrivals = sorted(event.arrivals, key=lambda a: a.time)
            if swap:
                extra = [a for a in range(len(window.time)) if window.pick_id_at(a) == spurious.id]
                keep = [a.row for a in arrivals[:-1]] + extra
                out.append(_relocated(associator, window, event, [_Row(r) for r in keep]))
            else:
                out.append(_relocated(associator, window, event, arrivals[:-2]))
        return out

    associator.run_window = alternating
    clock = [last + 1.0]
    live = LiveAssociator(
        associator, LiveConfig(window_s=300.0, delay_s=5.0, settle=settle), wall_clock=lambda: clock[0]
    )
    for pick in [*picks, spurious] if swap else picks:
        assert live.add(pick)
    out = []
    for k in range(steps):
        clock[0] = last + 10.0 + k
        out += live.step(clock[0])
    return live, out, calls


class _Row:
    def __init__(self, row: int) -> None:
        self.row = row


@pytest.mark.parametrize("swap", [False, True])
def test_an_event_that_flip_flopped_publishes_no_repeated_state(swap: bool):
    _, before, calls = flip_flop(settle=False, swap=swap)
    assert calls == [1] * 20
    states = [_state(e) for e in before]
    assert len(before) == 20 and len(set(states)) == 2  # today: a version every step, two states

    live, after, _ = flip_flop(settle=True, swap=swap)
    assert {e.event_id for e in after} == {before[0].event_id}
    assert [e.version for e in after] == list(range(1, len(after) + 1))
    states = [_state(e) for e in after]
    assert len(states) == len(set(states)) <= 2
    assert len(after) == (2 if swap else 1)
    assert len(after[-1].arrivals) == len(before[0].arrivals) + swap  # no pick lost, the spurious one kept
    assert live.stats.updated == len(after) - 1


def split_first_run(associator: Associator) -> list[int]:
    """Make the associator's first run that finds events split each event's stations into two events (the calls, counted)."""
    real, calls = associator.run_window, []

    def split_once(window, rows, *args, **kwargs):
        events = real(window, rows, *args, **kwargs)
        calls.append(len(events))
        if sum(map(bool, calls)) != 1 or not events:  # only the first run that finds events
            return events
        out = []
        for event in events:
            names = sorted({a.station for a in event.arrivals})
            near = set(names[: len(names) // 2])
            halves = [[a for a in event.arrivals if (a.station in near) == side] for side in (True, False)]
            out += [_relocated(associator, window, event, half) for half in halves]
        return out

    associator.run_window = split_once
    return calls


def test_two_candidate_ids_of_one_event_become_one():
    """The first run splits one earthquake's stations into two events (two ids, one origin); the earlier
    declared keeps its id, the other is published once more, rejected and superseded, and never again."""
    stations, hypos, true, _, _, _ = sequence(events=1, spurious=0)
    picks = sorted(true[0], key=lambda p: p.peak_time.timestamp)
    associator = Associator(stations)
    calls = split_first_run(associator)
    last = picks[-1].peak_time.timestamp
    clock = [last + 10.0]
    for settle in (False, True):
        calls.clear()
        live = LiveAssociator(
            associator, LiveConfig(window_s=300.0, delay_s=5.0, settle=settle), wall_clock=lambda: clock[0]
        )
        for pick in picks:
            assert live.add(pick)
        out = live.step(last + 10.0) + live.step(last + 11.0) + live.flush()
        ids = {e.event_id for e in out}
        if not settle:
            assert len(ids) == 2  # today: one earthquake under two ids
            continue
        assert len(ids) == 2
        rejected = [e for e in out if e.evaluation_status == "rejected"]
        assert len(rejected) == 1 and live.stats.superseded == 1
        (loser,) = rejected
        winner = loser.superseded_by
        assert winner in ids and winner != loser.event_id
        assert out.index(loser) == max(i for i, e in enumerate(out) if e.event_id == loser.event_id)
        assert out[-1].event_id == winner and out[-1].evaluation_status == "final"
        assert abs(out[-1].origin.time - hypos[0].time.timestamp) < 0.3
        assert out[-1].n_picks == len(picks)
        fields = loser.record_fields()
        assert (fields["evaluation_status"], fields["superseded_by"]) == ("rejected", winner)


def test_a_final_version_is_marked_final():
    stations, _, true, _, _, _ = sequence(seed=3, events=1, spurious=0)
    picks = sorted(true[0], key=lambda p: p.peak_time.timestamp)
    last = picks[-1].peak_time.timestamp
    clock = [last + 5.0]
    live = LiveAssociator(
        Associator(stations), LiveConfig(window_s=100, delay_s=0, settle=True), wall_clock=lambda: clock[0]
    )
    for pick in picks:
        live.add(pick)
    (v1,) = live.step(clock[0])
    assert v1.evaluation_status == "preliminary" and v1.superseded_by is None
    assert live.step(clock[0] + 1) == []
    (final,) = live.step(clock[0] + 500)  # the window has moved past the event
    assert (final.event_id, final.version, final.evaluation_status) == (v1.event_id, 2, "final")
    assert _state(final) == _state(v1)
    assert live.open_events == [] and live.step(clock[0] + 1000) == [] and live.flush() == []
    assert final.record_fields()["evaluation_status"] == "final"
    assert final.as_dict()["evaluation_status"] == "final"
    origin = events_to_catalog([final]).events[0].origins[0]
    assert origin.evaluation_status == "final"
    assert events_to_catalog([v1]).events[0].origins[0].evaluation_status == "preliminary"


def test_the_service_settles_publishes_the_superseded_id_once_and_lists_one_event(tmp_path: Path):
    """LiveEvents (settle on by default): the split first run's second id is published once as superseded and
    is not among the latest events; the event's last version, at stop, is final."""
    table, hypo, true, _ = scenario(3)
    path = write_stations_csv(table, tmp_path / "stations.csv")
    settings = Settings(
        streaming=StreamingSettings(watch_dirs=[tmp_path]),
        events=EventsSettings(stations=path, delay_s=0.0, step_s=0.05, window_s=120.0),
    )
    picks = sorted(true, key=lambda p: p.peak_time)

    async def main():
        publisher = PickPublisher()
        live = LiveEvents(settings, publisher, CollectorRegistry(), model="synthetic")
        await live.start()
        assert live.live is not None and live.live.config.settle
        split_first_run(live.live.associator)
        subscriber = publisher.subscribe(kind="event")
        publisher.publish_many(picks)
        for _ in range(100):
            await asyncio.sleep(0.05)
            if live.live.stats.superseded:
                break
        await asyncio.sleep(0.3)
        await live.stop()
        received = []
        while not subscriber.queue.empty():
            received.append(subscriber.queue.get_nowait())
        return live, [r for r in received if hasattr(r, "kind")]

    live, received = asyncio.run(main())
    rejected = [r for r in received if r.fields["superseded_by"]]
    assert len(rejected) == 1 and rejected[0].fields["evaluation_status"] == "rejected"
    loser, winner = rejected[0].id, rejected[0].fields["superseded_by"]
    assert [r.id for r in received].count(loser) == 2  # declared, then superseded: never again
    (stored,) = live.store.select()
    assert stored.event.event_id == winner and live.store.get(loser) is None
    assert stored.fields["evaluation_status"] == "final" and received[-1].id == winner
    assert abs(stored.event.origin.time - hypo.time.timestamp) < 0.3
    assert live.state()["events_superseded"] == 1


def test_the_events_settings_reach_the_live_associator():
    config = live_config(
        EventsSettings(settle=False, min_move_km=2.0, min_time_change_s=0.3, merge_km=7.0, merge_s=2.0)
    )
    assert (config.settle, config.min_move_km, config.min_shift_s, config.merge_km, config.merge_s) == (
        False,
        2.0,
        0.3,
        7.0,
        2.0,
    )
    assert live_config(EventsSettings()).settle
