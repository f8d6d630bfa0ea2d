"""Write the bundled demo archive (seispick/service/stream/demo): 10 continuous minutes with real events.

* ``SP.DEMO1-3.mseed``: three stations; real NCEDC event recordings (PhaseNet repository, MIT) from
  tests/data/real laid end to end with low noise in between, per station (each its own events).
* ``event/``: one earthquake seen by nine stations (``SP.EV01``-``EV09``), twice (a repeating event, at 2:00 and
  7:00): nine real 3-component NCEDC recordings, each placed so that its analyst P and S fall at the P and S
  travel times (homogeneous 6.0 / 3.5 km/s, straight rays) from a chosen hypocentre to a station put at the
  hypocentral distance its own S-P time gives, at azimuths 40 degrees apart. ``stations.csv`` holds the nine
  stations' coordinates (DEMO1-3 have none: their picks are published and counted as unassociated);
  ``event/event.json`` the hypocentre and origin times; ``stations.xml`` the same stations with a nominal
  response (scripts/make_demo_inventory.py), for magnitudes.

STEIM2 miniSEED. ``seispick serve --demo`` replays the folder in a loop, re-stamped to now, through the SeedLink
replay server, and associates the picks with the bundled stations. Run by hand after changing the test data.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import make_demo_inventory
import numpy as np
import obspy
from pyproj import Geod

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "tests" / "data" / "real"
OUT = ROOT / "seispick" / "service" / "stream" / "demo"
STATIONS = ["DEMO1", "DEMO2", "DEMO3"]
MINUTES = 10
START = obspy.UTCDateTime(2020, 1, 1)

# The repeating event: hypocentre, velocities, origin times (s after START) and the recordings it is made of.
HYPOCENTRE = {"latitude": 37.5, "longitude": -121.9, "depth_km": 6.0}
VP, VS = 6.0, 3.5
ORIGINS_S = (120.0, 420.0)
EVENT_FILES = [  # 3-component NCEDC recordings whose P and S the shipped pickers find (S-P 1.1-4.8 s)
    "BG_LCK_2012031705445526",
    "BK_MHC_2016090415525913",
    "BG_AL2_2009091706111844",
    "BK_PKD_2014061613251098",
    "BG_STY_2013010900313751",
    "BK_SCZ_2014011401023067",
    "PG_LM_2004021011380730",
    "PG_AR_2004072706535818",
    "BK_HAST_2008122812025643",
]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    n = MINUTES * 60 * 100
    three_component = [
        st for st in (obspy.read(str(p)) for p in sorted(REAL.glob("*.mseed"))) if len(st) == 3
    ]
    for k, station in enumerate(STATIONS):
        events = three_component[k :: len(STATIONS)]
        channels = {}
        for comp in "ZNE":
            data = rng.normal(0, 20, n)
            for i, event in enumerate(events[: MINUTES - 1]):
                src = event.select(component=comp)[0].data.astype(np.float64)
                src = src / (np.abs(src).max() or 1.0) * 4000
                offset = (i * 60 + 10 + 7 * k) * 100
                data[offset : offset + len(src)] += src[: n - offset]
            channels[comp] = data
        write_station(OUT, station, channels)
    write_event_archive(rng)
    (OUT / "README.md").write_text(
        "Demo archive for `seispick serve --demo` (10 minutes at 100 Hz, network SP; real NCEDC event\n"
        "recordings from the PhaseNet repository dataset, MIT licence):\n\n"
        "- SP.DEMO1-3.mseed: three stations, each with its own events laid end to end in noise;\n"
        "- event/: one earthquake on nine stations (EV01-EV09), twice (2:00 and 7:00): each station's real\n"
        "  recording placed so that its P and S fall at the travel times (6.0 / 3.5 km/s) from the hypocentre in\n"
        "  event/event.json to the station's coordinates in stations.csv.\n\n"
        "stations.xml is what `--demo` associates with (DEMO1-3 have no coordinates: their picks are counted as\n"
        "unassociated); stations.csv holds the same coordinates without responses.\n\n"
        "stations.xml gives every EV channel (HHZ/HHN/HHE) one nominal response: a 120 s velocity broadband of\n"
        "1500 V/(m/s) and a digitiser of 419,430 counts/V (6.29e8 counts/(m/s) at 1 Hz). The real responses are\n"
        "not available (the PhaseNet dataset keeps no channel metadata) and each recording was rescaled here to a\n"
        "peak of 4000 * min(10 km / distance, 1) counts, so the demo's magnitudes (offline\n"
        "`seispick associate --waveforms` and live ML alike, about ML 1.35) are nominal, not those of the\n"
        "original earthquakes. Written by scripts/make_demo_data.py (stations.xml by scripts/make_demo_inventory.py).\n"
    )
    make_demo_inventory.main()


def write_station(folder: Path, station: str, channels: dict[str, np.ndarray]) -> None:
    """SP.<station>.mseed: HH<component> int32 channels at 100 Hz from START, STEIM2 in 512-byte records."""
    traces = [
        obspy.Trace(
            np.round(data).astype(np.int32),
            header={
                "network": "SP",
                "station": station,
                "channel": f"HH{comp}",
                "sampling_rate": 100.0,
                "starttime": START,
            },
        )  # fmt: skip
        for comp, data in channels.items()
    ]
    obspy.Stream(traces).write(
        str(folder / f"SP.{station}.mseed"), format="MSEED", encoding="STEIM2", reclen=512
    )


def analyst_picks() -> dict[str, dict[str, obspy.UTCDateTime]]:
    """tests/data/real/picks.csv: trace id (NET.STA..BI) -> phase -> time."""
    with (REAL / "picks.csv").open() as handle:
        out: dict[str, dict[str, obspy.UTCDateTime]] = {}
        for row in csv.DictReader(handle):
            out.setdefault(row["trace_id"], {})[row["phase"]] = obspy.UTCDateTime(row["time"])
    return out


def write_event_archive(rng: np.random.Generator) -> None:
    """event/: the repeating event on EV01-EV09, stations.csv and event/event.json (see the module docstring)."""
    folder = OUT / "event"
    folder.mkdir(parents=True, exist_ok=True)
    picks = analyst_picks()
    geod = Geod(ellps="WGS84")
    n = MINUTES * 60 * 100
    rows, stations = [], {}
    depth = HYPOCENTRE["depth_km"]
    for k, name in enumerate(EVENT_FILES):
        code = f"EV{k + 1:02d}"
        event = obspy.read(str(REAL / f"{name}.mseed"))
        times = picks[event[0].id[:-1]]
        hypocentral = (times["S"] - times["P"]) / (1 / VS - 1 / VP)  # where this recording's S-P belongs
        epicentral = float(np.sqrt(hypocentral**2 - depth**2))
        lon, lat, _ = geod.fwd(HYPOCENTRE["longitude"], HYPOCENTRE["latitude"], 40.0 * k, epicentral * 1000)
        rows.append(
            dict(network="SP", station=code, latitude=f"{lat:.5f}", longitude=f"{lon:.5f}", elevation_m=0)
        )
        stations[code] = {"recording": name, "hypocentral_km": round(hypocentral, 3)}
        scale = 4000.0 * min(10.0 / hypocentral, 1.0)
        channels = {}
        for comp in "ZNE":
            data = rng.normal(0, 20, n)
            src = event.select(component=comp)[0].copy()
            src.detrend("demean").taper(0.05, max_length=2.0)
            values = src.data.astype(np.float64) / (np.abs(src.data).max() or 1.0) * scale
            for origin in ORIGINS_S:  # the recording's P lands at the P travel time after the origin
                p_time = origin + hypocentral / VP
                first = int(round((p_time - (times["P"] - src.stats.starttime)) * 100))
                data[first : first + len(values)] += values[: n - first]
            channels[comp] = data
        write_station(folder, code, channels)
    with (OUT / "stations.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    description = {
        "hypocentre": HYPOCENTRE,
        "velocity_km_s": {"vp": VP, "vs": VS},
        "origin_times": [str(START + t) for t in ORIGINS_S],
        "stations": stations,
        "made_by": "scripts/make_demo_data.py",
    }
    (folder / "event.json").write_text(json.dumps(description, indent=2) + "\n")


if __name__ == "__main__":
    main()
