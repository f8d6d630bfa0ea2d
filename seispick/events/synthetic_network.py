"""Synthetic networks and picks for tests, benchmarks and demos: straight rays in a homogeneous half-space.

Travel times use geodesic distances (ObsPy ``gps2dist_azimuth``), independently of the associator's map
projection. Spurious picks are drawn uniformly in time over the stations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from obspy import UTCDateTime
from obspy.geodetics import gps2dist_azimuth

from seispick.events.stations import Station, StationTable
from seispick.picking.results import Pick


@dataclass(frozen=True)
class Hypocentre:
    time: UTCDateTime
    latitude: float
    longitude: float
    depth_km: float


def network(
    n: int, latitude: float, longitude: float, radius_km: float, seed: int = 0, net: str = "SY"
) -> StationTable:
    """``n`` stations scattered in a disc of ``radius_km`` around (latitude, longitude), elevations 0-500 m."""
    rng = np.random.default_rng(seed)
    r = radius_km * np.sqrt(rng.uniform(0.05, 1.0, n))
    az = rng.uniform(0, 2 * np.pi, n)
    dlat = r * np.cos(az) / 111.19
    dlon = r * np.sin(az) / (111.19 * math.cos(math.radians(latitude)))
    stations = {}
    for i in range(n):
        code = f"S{i:03d}" if n <= 1000 else f"S{i:04d}"
        st = Station(
            net, code, float(latitude + dlat[i]), float(longitude + dlon[i]), float(rng.uniform(0, 500))
        )
        stations[st.key] = st
    return StationTable(stations, source="synthetic")


def arrival_times(
    stations: StationTable, hypo: Hypocentre, vp: float, vs: float
) -> dict[str, dict[str, float]]:
    """{station key: {"P": epoch s, "S": epoch s}} for straight rays from ``hypo``."""
    out = {}
    for key, st in stations.stations.items():
        metres, _, _ = gps2dist_azimuth(hypo.latitude, hypo.longitude, st.latitude, st.longitude)
        r = math.hypot(metres / 1000.0, hypo.depth_km + st.elevation_m / 1000.0)
        out[key] = {"P": hypo.time.timestamp + r / vp, "S": hypo.time.timestamp + r / vs}
    return out


def make_pick(
    station: Station, phase: str, time: float, probability: float = 0.9, model: str = "synthetic"
) -> Pick:
    t = UTCDateTime(round(time, 2))
    return Pick(f"{station.key}..HH", phase, t, probability, t - 0.1, t + 0.1, model, "")


def event_picks(
    stations: StationTable,
    hypo: Hypocentre,
    vp: float = 6.0,
    vs: float = 3.5,
    noise_s: float = 0.05,
    max_distance_km: float | None = None,
    rng: np.random.Generator | None = None,
) -> list[Pick]:
    """P and S picks of ``hypo`` with uniform noise of +-``noise_s`` (stations within ``max_distance_km``)."""
    rng = rng or np.random.default_rng(0)
    picks = []
    for key, times in arrival_times(stations, hypo, vp, vs).items():
        st = stations.stations[key]
        if max_distance_km is not None and (times["P"] - hypo.time.timestamp) * vp > max_distance_km:
            continue
        for phase in ("P", "S"):
            picks.append(make_pick(st, phase, times[phase] + rng.uniform(-noise_s, noise_s)))
    return picks


def spurious_picks(
    stations: StationTable, count: int, start: float, end: float, rng: np.random.Generator | None = None
) -> list[Pick]:
    """``count`` picks at random stations, phases and times in [start, end)."""
    rng = rng or np.random.default_rng(1)
    keys = list(stations.stations)
    out = []
    for _ in range(count):
        st = stations.stations[keys[int(rng.integers(len(keys)))]]
        out.append(make_pick(st, "P" if rng.random() < 0.5 else "S", float(rng.uniform(start, end)), 0.4))
    return out
