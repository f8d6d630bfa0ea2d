"""Local magnitudes of live events from a ``WaveformRing``: the offline ML (``local_magnitude``), measured live.

``event_magnitude`` is the one way seispick measures an event's ML from a station table (its inventory's
responses, its elevations) and a velocity model's surface vp/vs: ``seispick associate --waveforms`` calls it on
the files' stream, ``LiveMagnitudes`` on the ring's. For each station of an event ``LiveMagnitudes`` takes the
ring's horizontal channels over the window ``local_magnitude`` reads (P - 1 s to the end of the S train, with
``wood_anderson_peak``'s 30 s before and 5 s after for its filters) once the ring holds data past that window's
end; a station whose data has not arrived that far is left out of this measurement ("waiting") and comes in at
a later one; one whose data before the window has already left the ring is left out too. So once every
station's window has arrived, the live ML is the offline ML of the same samples.
Stations without a response in the inventory are left out with a note; when no station of the table has one,
events keep no magnitude and a note says why. Counters: ``LiveMagnitudes.counts``.

Build it with ``live_magnitudes(stations, velocity.surface, ring_s, max_bytes)`` (see its docstring) and feed
every decoded record to ``.ring.add(trace)``.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, OrderedDict
from collections.abc import Callable

from obspy import Stream, UTCDateTime

from seispick.events.event import Event
from seispick.events.magnitude import DISTANCE_RANGE_KM, HORIZONTAL, MagnitudeResult, local_magnitude
from seispick.events.stations import StationTable
from seispick.events.waveform_ring import WaveformRing, station_of

log = logging.getLogger(__name__)

NO_RESPONSES = "no magnitude: the station metadata holds no instrument responses (StationXML needed)"
NO_EVENT_RESPONSES = "no magnitude: none of the event's stations has an instrument response"
NOTE_PREFIX = "live ML: "  # notes of the latest measurement (those of an earlier one are replaced)
FILTER_BEFORE_S = 30.0  # wood_anderson_peak reads this much before the window (filter settling) ...
FILTER_AFTER_S = 5.0  # ... and this much after it
MARGIN_S = 1.0  # taken from the ring beyond those, so that its slices are the offline ones
CACHE_SIZE = 512  # measurements remembered: an unchanged event, the same stations ready, is not re-measured


def event_magnitude(
    event: Event, stream: Stream, stations: StationTable, surface: tuple[float, float]
) -> tuple[MagnitudeResult | None, list[str]]:
    """``local_magnitude`` of ``event`` from ``stream`` with the responses and elevations of ``stations`` and
    the surface velocities ``(vp, vs)`` of the association's model: the ML of offline and live events."""
    elevations = {k: s.elevation_m for k, s in stations.stations.items()}
    vp, vs = surface
    return local_magnitude(event, stream, stations.inventory, elevations, vp, vs)


def measurement_windows(
    event: Event, elevations: dict[str, float], vp: float, vs: float
) -> dict[str, tuple[UTCDateTime, UTCDateTime]]:
    """NET.STA -> (start, end) of the amplitude window ``local_magnitude`` measures (stations in range)."""
    o = event.origin
    picked: dict[str, dict[str, float]] = {}
    distance: dict[str, float] = {}
    for arrival in event.arrivals:
        picked.setdefault(arrival.station, {})[arrival.phase] = arrival.time
        distance.setdefault(arrival.station, arrival.distance_km)  # the first arrival's, as local_magnitude
    out = {}
    for key, phases in picked.items():
        r = math.hypot(distance[key], o.depth_km + elevations.get(key, 0.0) / 1000.0)
        if not DISTANCE_RANGE_KM[0] <= r <= DISTANCE_RANGE_KM[1]:
            continue
        t_p = phases.get("P", o.time + r / vp)
        t_s = phases.get("S", o.time + r / vs)
        out[key] = (UTCDateTime(t_p - 1.0), UTCDateTime(t_s + max(t_s - t_p, 5.0)))
    return out


def responding_stations(stations: StationTable) -> set[str]:
    """NET.STA of the stations with at least one channel response with stages."""
    if stations.inventory is None:
        return set()
    return {
        f"{net.code}.{sta.code}"
        for net in stations.inventory
        for sta in net
        if any(cha.response is not None and cha.response.response_stages for cha in sta)
    }


def is_horizontal(trace_id: str) -> bool:
    return trace_id.rsplit(".", 1)[-1][-1:] in HORIZONTAL


class LiveMagnitudes:
    """``__call__(event)``: the event with ``magnitude`` (and notes) from the ring's waveforms (module docstring).

    Sets ``event.magnitude`` (None while no station is ready) and replaces the event's earlier ``live ML:``
    notes; returns the same event. Thread-safe with respect to the ring (which locks itself).
    """

    def __init__(self, ring: WaveformRing, stations: StationTable, vp: float, vs: float) -> None:
        self.ring = ring
        self.stations = stations
        self.vp, self.vs = vp, vs
        self.elevations = {k: s.elevation_m for k, s in stations.stations.items()}
        self.responding = responding_stations(stations)
        self.counts: Counter[str] = Counter()
        self._cache: OrderedDict[tuple, tuple[MagnitudeResult | None, list[str]]] = OrderedDict()

    def __call__(self, event: Event) -> Event:
        if not self.responding:
            self.counts["no_responses"] += 1
            self._set(event, None, [NO_RESPONSES])
            return event
        windows = measurement_windows(event, self.elevations, self.vp, self.vs)
        notes: list[str] = []
        ready: dict[str, tuple[UTCDateTime, UTCDateTime]] = {}
        for key, (start, end) in sorted(windows.items()):
            if key not in self.responding:
                self.counts["stations_without_response"] += 1
                notes.append(f"{key}: no instrument response in the station metadata, not in the ML")
                continue
            spans = {cid: s for cid, s in self.ring.spans(key).items() if is_horizontal(cid)}
            if not spans:
                self.counts["stations_without_waveforms"] += 1
                notes.append(f"{key}: no horizontal waveforms held, not in the ML")
                continue
            if all(first > start for first, _ in spans.values()):
                self.counts["stations_expired"] += 1
                notes.append(
                    f"{key}: waveforms before {start} no longer held (ring too short), not in the ML"
                )
                continue
            needed = end + FILTER_AFTER_S
            if any(last < needed for _, last in spans.values()):
                self.counts["stations_waiting"] += 1
                notes.append(f"{key}: waveforms not yet past {needed}, not in this ML")
                continue
            ready[key] = (start, end)
        if not ready:
            self.counts["no_magnitude"] += 1
            if not any(key in self.responding for key in windows):
                self.counts["no_responses"] += 1
                notes.append(NO_EVENT_RESPONSES)
            self._set(event, None, notes)
            return event
        key = _cache_key(event, ready)
        cached = self._cache.get(key)
        if cached is None:
            stream = Stream()
            for station, (start, end) in ready.items():
                stream += self.ring.stream(
                    station, start - FILTER_BEFORE_S - MARGIN_S, end + FILTER_AFTER_S + MARGIN_S
                )
            stream.traces = [tr for tr in stream if is_horizontal(tr.id)]
            cached = event_magnitude(event, stream, self.stations, (self.vp, self.vs))
            self._cache[key] = cached
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
            self.counts["measurements"] += 1
        else:
            self._cache.move_to_end(key)
        magnitude, measured_notes = cached
        self.counts["with_magnitude" if magnitude is not None else "no_magnitude"] += 1
        self._set(event, magnitude, notes + measured_notes)
        return event

    @staticmethod
    def _set(event: Event, magnitude: MagnitudeResult | None, notes: list[str]) -> None:
        event.magnitude = magnitude
        event.notes = [n for n in event.notes if not n.startswith(NOTE_PREFIX)]
        event.notes += [NOTE_PREFIX + n for n in notes]


def _cache_key(event: Event, ready: dict[str, tuple[UTCDateTime, UTCDateTime]]) -> tuple:
    o = event.origin
    arrivals = tuple(sorted((a.station, a.phase, a.time, a.distance_km) for a in event.arrivals))
    return (o.time, o.latitude, o.longitude, o.depth_km, arrivals, tuple(sorted(ready)))


def live_magnitudes(
    stations: StationTable, surface: tuple[float, float], ring_s: float, max_bytes: int
) -> LiveMagnitudes:
    """The ring and the magnitude hook of the service, from its settings.

    In the service: ``stations, config = check_events(settings)``, then
    ``live_magnitudes(stations, config.velocity.surface, settings.events.magnitude_ring_s,
    settings.events.magnitude_ring_max_bytes)``; every decoded record goes to ``.ring.add(trace)`` and the
    object is ``LiveAssociator``'s ``magnitude`` hook. The ring keeps only the horizontal channels of stations
    with responses (nothing when the table has none: events then carry the note instead of a magnitude).
    """
    vp, vs = surface
    return LiveMagnitudes(WaveformRing(ring_s, max_bytes, select=ring_selector(stations)), stations, vp, vs)


def ring_selector(stations: StationTable) -> Callable[[str], bool]:
    """Whether a trace id is one the ring keeps: a horizontal channel of a station with responses (decided
    once here, so picking processes send only those records)."""
    responding = responding_stations(stations)

    def select(trace_id: str) -> bool:
        return station_of(trace_id) in responding and is_horizontal(trace_id)

    return select
