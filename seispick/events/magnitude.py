"""Wood-Anderson amplitudes and local magnitude (ML) of located events, with ObsPy's response tools.

For each station of an event, each horizontal channel is corrected for its instrument response (from the
StationXML) to ground velocity, filtered into a Wood-Anderson seismograph of static magnification 1 (ObsPy's
``WOODANDERSON`` poles and zeros) and its peak measured between the P arrival and the end of the S wave train.
Each component is one datum, as IASPEI prescribes; a station's ML is the median of its components, the event's
the median of its stations. Without responses there is no magnitude, and a note says why.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
from obspy import Inventory, Stream, UTCDateTime
from obspy.signal.invsim import WOODANDERSON

from seispick.events.event import Event
from seispick.events.stations import has_responses

log = logging.getLogger(__name__)

FORMULA = (
    "IASPEI standard ML (Hutton & Boore 1987): ML = log10(A) + 1.11*log10(R) + 0.00189*R - 2.09, "
    "A = peak Wood-Anderson amplitude (static magnification 1) in nm on a horizontal component, "
    "R = hypocentral distance in km"
)
DISTANCE_RANGE_KM = (0.0, 1000.0)  # IASPEI: "typically less than 1000 km"
WOOD_ANDERSON_UNIT = {**WOODANDERSON, "sensitivity": 1.0}  # static magnification 1: output in metres
HORIZONTAL = "NE12EW"


def iaspei_ml(amplitude_nm: float, hypocentral_km: float) -> float:
    """The IASPEI standard local magnitude of one amplitude datum."""
    r = hypocentral_km
    return math.log10(amplitude_nm) + 1.11 * math.log10(r) + 0.00189 * r - 2.09


@dataclass
class ComponentAmplitude:
    """One horizontal component's Wood-Anderson peak and its ML."""

    trace_id: str
    amplitude_m: float  # peak Wood-Anderson displacement, static magnification 1 (metres)
    time: UTCDateTime  # of the peak
    hypocentral_km: float
    ml: float


@dataclass
class StationMagnitude:
    station: str
    ml: float  # median over the station's components
    components: list[ComponentAmplitude]


@dataclass
class MagnitudeResult:
    """The event's ML: median of its station magnitudes, the formula and the distance range used."""

    value: float
    stations: list[StationMagnitude]
    magnitude_type: str = "ML"
    formula: str = FORMULA
    distance_range_km: tuple[float, float] = DISTANCE_RANGE_KM
    notes: list[str] = field(default_factory=list)

    @property
    def station_count(self) -> int:
        return len(self.stations)

    def as_dict(self) -> dict:
        return {
            "value": round(self.value, 3),
            "type": self.magnitude_type,
            "formula": self.formula,
            "distance_range_km": list(self.distance_range_km),
            "station_count": self.station_count,
            "stations": [
                {
                    "station": s.station,
                    "ml": round(s.ml, 3),
                    "components": [
                        {
                            "trace_id": c.trace_id,
                            "amplitude_nm": round(c.amplitude_m * 1e9, 4),
                            "hypocentral_km": round(c.hypocentral_km, 3),
                            "ml": round(c.ml, 3),
                        }
                        for c in s.components
                    ],
                }
                for s in self.stations
            ],
        }


def local_magnitude(
    event: Event,
    stream: Stream,
    inventory: Inventory | None,
    station_elevation_m: dict[str, float] | None = None,
    vp: float = 6.0,
    vs: float = 3.5,
    distance_range_km: tuple[float, float] = DISTANCE_RANGE_KM,
) -> tuple[MagnitudeResult | None, list[str]]:
    """ML of ``event`` from ``stream`` (raw counts) and the responses in ``inventory``; (result or None, notes).

    The window of a station runs from its P pick (else the P time predicted with ``vp``) minus 1 s to its S
    pick (else predicted with ``vs``) plus the S-P time and at least 5 s.
    """
    notes: list[str] = []
    if inventory is None or not has_responses(inventory):
        return None, ["no magnitude: the station metadata holds no instrument responses (StationXML needed)"]
    o = event.origin
    by_station: dict[str, dict[str, float]] = {}
    for arrival in event.arrivals:
        by_station.setdefault(arrival.station, {})[arrival.phase] = arrival.time
    stations: list[StationMagnitude] = []
    elevations = station_elevation_m or {}
    for key, picked in sorted(by_station.items()):
        arrival = next(a for a in event.arrivals if a.station == key)
        depth = o.depth_km + elevations.get(key, 0.0) / 1000.0
        r = math.hypot(arrival.distance_km, depth)
        if not distance_range_km[0] <= r <= distance_range_km[1]:
            notes.append(f"{key}: hypocentral distance {r:.0f} km outside {distance_range_km} km, no ML")
            continue
        t_p = picked.get("P", o.time + r / vp)
        t_s = picked.get("S", o.time + r / vs)
        start = UTCDateTime(t_p - 1.0)
        end = UTCDateTime(t_s + max(t_s - t_p, 5.0))
        net, sta = key.split(".", 1)
        traces = stream.select(network=net, station=sta)
        components = []
        for tr in traces:
            if tr.stats.channel[-1:] not in HORIZONTAL:
                continue
            if tr.stats.endtime < start or tr.stats.starttime > end:
                continue
            try:
                peak, when = wood_anderson_peak(tr, inventory, start, end)
            except Exception as exc:  # ObsPy raises many kinds for a missing or broken response
                notes.append(f"{tr.id}: no Wood-Anderson amplitude ({type(exc).__name__}: {exc})")
                continue
            if not peak > 0:
                continue
            components.append(ComponentAmplitude(tr.id, peak, when, r, iaspei_ml(peak * 1e9, r)))
        if components:
            stations.append(StationMagnitude(key, float(np.median([c.ml for c in components])), components))
    if not stations:
        notes.append("no magnitude: no horizontal component with a response covered an arrival window")
        return None, notes
    value = float(np.median([s.ml for s in stations]))
    return MagnitudeResult(value, stations, distance_range_km=distance_range_km, notes=notes), notes


def wood_anderson_peak(
    trace, inventory: Inventory, start: UTCDateTime, end: UTCDateTime
) -> tuple[float, UTCDateTime]:
    """Peak |Wood-Anderson displacement| (m, magnification 1) of ``trace`` in [start, end] and its time.

    The trace (with up to 30 s before ``start`` for the filters to settle) is demeaned, tapered, corrected to
    ground velocity with ``remove_response`` and passed through the Wood-Anderson poles and zeros.
    """
    tr = trace.slice(start - 30.0, end + 5.0).copy()
    if tr.stats.npts < 10:
        raise ValueError("too few samples in the window")
    tr.data = tr.data.astype(np.float64)
    nyquist = tr.stats.sampling_rate / 2.0
    tr.detrend("demean")
    tr.taper(0.05, max_length=5.0)
    tr.remove_response(
        inventory=inventory,
        output="VEL",
        pre_filt=(0.05, 0.1, 0.8 * nyquist, 0.9 * nyquist),
        water_level=None,
    )
    tr.simulate(paz_remove=None, paz_simulate=WOOD_ANDERSON_UNIT)
    window = tr.slice(start, end)
    if window.stats.npts == 0:
        raise ValueError("the window holds no samples")
    index = int(np.argmax(np.abs(window.data)))
    return float(abs(window.data[index])), window.stats.starttime + index * window.stats.delta
