"""Events from preliminary picks: declared early, then settled as the picks are confirmed, moved or rejected.

``LiveAssociator.update`` takes the preliminary feed's pick updates (``PickUpdate``: preliminary, confirmed with
the ids it supersedes, rejected); the event keeps its id, a version comes only for a new state, at most every
``min_version_interval_s`` of the associator's clock, and its picks end as the final ones.
"""

from __future__ import annotations

from dataclasses import replace

from seispick.events.associate import Associator
from seispick.events.live import LiveAssociator, LiveConfig
from tests.test_events_live import sequence


def _live(stations, clock, **config) -> LiveAssociator:
    settings = {"window_s": 300.0, "delay_s": 0.0, "settle": True, **config}
    return LiveAssociator(Associator(stations), LiveConfig(**settings), wall_clock=lambda: clock[0])


def _ids(event) -> set[str]:
    return {a.pick_id for a in event.arrivals}


def _event():
    stations, _, true, _, _, _ = sequence(seed=5, events=1, spurious=0)
    return stations, sorted(true[0], key=lambda p: p.peak_time.timestamp)


def test_confirmed_moved_and_rejected_preliminary_picks_settle_the_event_under_one_id():
    stations, picks = _event()
    last = picks[-1].peak_time.timestamp
    clock = [last + 1.0]
    live = _live(stations, clock)
    for pick in picks:
        assert live.update("preliminary", pick, pick.id)
    (v1,) = live.step(clock[0])
    assert v1.evaluation_status == "preliminary" and _ids(v1) == {p.id for p in picks}

    # confirmed where they were: the same ids, nothing new to say
    for pick in picks:
        live.update("confirmed", pick, pick.id)
    assert live.step(clock[0] + 1) == [] and live.stats.duplicates == 0

    # one pick's final peak moved: the final id replaces the preliminary one, one version says so
    moved_from = picks[3]
    moved = replace(moved_from, peak_time=moved_from.peak_time + 0.05)
    assert moved.id != moved_from.id
    live.update("confirmed", moved, moved.id, supersedes=(moved_from.id,))
    (v2,) = live.step(clock[0] + 2)
    assert (v2.event_id, v2.version) == (v1.event_id, 2)
    assert _ids(v2) == ({p.id for p in picks} - {moved_from.id}) | {moved.id}

    # a preliminary pick that no final pick confirmed leaves the event
    gone = picks[5]
    live.update("rejected", gone, gone.id)
    (v3,) = live.step(clock[0] + 3)
    assert (v3.event_id, v3.version) == (v1.event_id, 3) and gone.id not in _ids(v3)
    assert live.stats.withdrawn == 2

    (final,) = live.step(clock[0] + 500)
    assert (final.event_id, final.evaluation_status) == (v1.event_id, "final") and _ids(final) == _ids(v3)


def test_an_event_whose_picks_are_withdrawn_is_rejected_once():
    stations, picks = _event()
    last = picks[-1].peak_time.timestamp
    clock = [last + 1.0]
    live = _live(stations, clock)
    for pick in picks:
        live.update("preliminary", pick, pick.id)
    (v1,) = live.step(clock[0])
    min_picks = live.associator.config.min_picks
    for pick in picks[: len(picks) - min_picks + 1]:  # one pick fewer than an event needs remains
        live.update("rejected", pick, pick.id)
    out = live.step(clock[0] + 1)
    rejected = [e for e in out if e.event_id == v1.event_id]
    assert [(e.version, e.evaluation_status) for e in rejected] == [(2, "rejected")]
    assert live.open_events == [] and live.stats.rejected == 1
    assert live.step(clock[0] + 2) == [] and live.flush() == []


def test_a_final_pick_with_the_preliminary_id_is_no_duplicate_and_no_new_version():
    """The service hands the final pick (pick stream) and its confirmation (preliminary feed) in either order."""
    stations, picks = _event()
    clock = [picks[-1].peak_time.timestamp + 1.0]
    live = _live(stations, clock)
    for pick in picks:
        live.update("preliminary", pick, pick.id)
    (v1,) = live.step(clock[0])
    for pick in picks:
        assert not live.update("confirmed", pick, pick.id)  # the final pick record
        assert not live.update("confirmed", pick, pick.id)  # its confirmation
    assert live.step(clock[0] + 1) == [] and live.stats.duplicates == 0


def test_versions_of_an_open_event_are_spaced_by_min_version_interval_s():
    """Picks joining one by one: with the spacing, a version at most every 10 s of the associator's clock, the
    last state still published (none lost), the first one not held back."""
    stations, picks = _event()
    counts = {}
    for interval in (0.0, 10.0):
        first = picks[0].peak_time.timestamp
        clock = [first]
        live = _live(stations, clock, min_version_interval_s=interval)
        out, at = [], {}
        t = first
        for pick in picks:  # a pick a second, a step a second
            live.update("preliminary", pick, pick.id)
            for _ in range(2):
                t += 0.5
                clock[0] = t
                for event in live.step(t):
                    out.append(event)
                    at[(event.event_id, event.version)] = t
        for _ in range(30):  # the picks stop: what is due comes out
            t += 1.0
            clock[0] = t
            for event in live.step(t):
                out.append(event)
                at[(event.event_id, event.version)] = t
        assert len({e.event_id for e in out}) == 1
        assert _ids(out[-1]) == {p.id for p in picks}, "the last state is published"
        times = [at[(e.event_id, e.version)] for e in out]
        if interval:
            assert all(b - a >= interval for a, b in zip(times, times[1:]))
        counts[interval] = len(out)
    assert counts[10.0] < counts[0.0], counts


def test_the_magnitude_hook_sets_every_version_and_a_new_magnitude_is_a_new_version():
    stations, picks = _event()
    clock = [picks[-1].peak_time.timestamp + 1.0]
    values = iter([1.0, 1.0, 1.5, 1.5, 1.5, 1.5])
    measured = []

    def magnitude(event):
        from seispick.events.magnitude import MagnitudeResult

        value = next(values)
        measured.append(value)
        event.magnitude = MagnitudeResult(value=value, stations=[], notes=[])
        return event

    live = LiveAssociator(
        Associator(stations),
        LiveConfig(window_s=300.0, delay_s=0.0, settle=True, magnitude_every_s=5.0),
        wall_clock=lambda: clock[0],
        magnitude=magnitude,
    )
    for pick in picks:
        live.update("preliminary", pick, pick.id)
    (v1,) = live.step(clock[0])
    assert v1.magnitude.value == 1.0
    assert live.step(clock[0] + 1) == [] and len(measured) == 1  # unchanged, measured again after 5 s only
    assert live.step(clock[0] + 6) == [] and measured == [1.0, 1.0]  # measured, the same: no version
    (v2,) = live.step(clock[0] + 12)  # more of the waveform: a larger amplitude
    assert (v2.version, v2.magnitude.value) == (2, 1.5)
