"""Association throughput and live latency: `seispick associate` against PyOcto called directly.

A synthetic network of N stations (default 1,000 in a disc of 300 km) and a day of picks: events uniform in time
and space, P and S picks (+-0.05 s) at the stations within a magnitude-dependent distance, plus 30 % spurious
picks; about 300,000 picks in all by default. Three runs on the same picks:

1. PyOcto directly: one ``OctoAssociator.associate`` on the pick DataFrame in memory (same settings);
2. ``seispick associate picks.csv --stations stations.csv -o events.csv`` as a process (reading the CSV, time
   slices, least-squares refinement and uncertainties, writing the events);
3. live: ``LiveAssociator`` fed the picks in arrival order (0.5-3 s after their time) with a step every
   ``--live-step-s`` of simulated time, over ``--live-minutes``; step compute time is measured, the latency is the simulated wait
   (delay + step) plus the compute time of the step that published the event version.

Runs 1 and 2 alternate ``--repeat`` times (best of each). Prints a table: picks/s of each, the overhead ratio
(goal <= 1.2x), events found, how many of the true events `seispick associate` found (within 10 km and 2 s)
and how many of its events match none, and live latency quantiles.
Run by hand:  python bench/associate.py [--stations 1000 --hours 24 --threads 2]
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from obspy import UTCDateTime

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from seispick.events.associate import AssociationConfig, Associator  # noqa: E402
from seispick.events.live import LiveAssociator, LiveConfig  # noqa: E402
from seispick.events.stations import Station, StationTable  # noqa: E402
from seispick.picking.formats import picks_to_csv  # noqa: E402
from seispick.picking.results import Pick  # noqa: E402

KM = 111.19
VP, VS = 6.0, 3.5
T0 = UTCDateTime("2024-05-01T00:00:00").timestamp


def network(n: int, radius_km: float, rng) -> StationTable:
    r = radius_km * np.sqrt(rng.uniform(0, 1, n))
    az = rng.uniform(0, 2 * np.pi, n)
    lat = 40.0 + r * np.cos(az) / KM
    lon = 10.0 + r * np.sin(az) / (KM * math.cos(math.radians(40.0)))
    stations = {
        f"BN.S{i:04d}": Station("BN", f"S{i:04d}", float(lat[i]), float(lon[i]), 0.0) for i in range(n)
    }
    return StationTable(stations, source="bench")


def day_of_picks(stations: StationTable, hours: float, target: int, radius_km: float, rng):
    """(station keys, phases, times) of events and 30 % spurious picks (about ``target`` in all), the true
    events (origin time, latitude, longitude, depth) and the number of true picks."""
    keys = np.array(list(stations.stations))
    lat = np.array([s.latitude for s in stations.stations.values()])
    lon = np.array([s.longitude for s in stations.stations.values()])
    coslat = math.cos(math.radians(40.0))
    true_target = int(target * 0.7)
    st_k, ph_k, t_k = [], [], []
    n_true = 0
    truth = []  # (origin time, latitude, longitude, depth) of each event
    while n_true < true_target:
        r = radius_km * math.sqrt(rng.uniform(0, 1))
        az = rng.uniform(0, 2 * np.pi)
        elat, elon = 40.0 + r * math.cos(az) / KM, 10.0 + r * math.sin(az) / (KM * coslat)
        depth = rng.uniform(2, 25)
        origin = T0 + rng.uniform(0, hours * 3600)
        reach = rng.choice([40.0, 60.0, 90.0, 150.0], p=[0.5, 0.3, 0.15, 0.05])  # small events are many
        dist = np.hypot((lat - elat) * KM, (lon - elon) * KM * coslat)
        near = np.flatnonzero(dist < reach)
        if len(near) < 5:
            continue
        hyp = np.hypot(dist[near], depth)
        for phase, v in (("P", VP), ("S", VS)):
            keep = rng.uniform(0, 1, len(near)) < 0.9  # a picker misses some
            st_k.append(keys[near][keep])
            ph_k.append(np.full(keep.sum(), phase))
            t_k.append(origin + hyp[keep] / v + rng.uniform(-0.05, 0.05, keep.sum()))
            n_true += int(keep.sum())
        truth.append((origin, elat, elon, depth))
    n_spurious = int(n_true * 0.3 / 0.7)
    st_k.append(keys[rng.integers(0, len(keys), n_spurious)])
    ph_k.append(np.where(rng.uniform(0, 1, n_spurious) < 0.5, "P", "S"))
    t_k.append(T0 + rng.uniform(0, hours * 3600, n_spurious))
    station, phase, times = np.concatenate(st_k), np.concatenate(ph_k), np.round(np.concatenate(t_k), 2)
    order = np.argsort(times, kind="stable")
    return station[order], phase[order], times[order], np.array(truth), n_true


def write_inputs(folder: Path, stations: StationTable, station, phase, times) -> tuple[Path, Path]:
    st_file = folder / "stations.csv"
    with st_file.open("w") as handle:
        handle.write("network,station,latitude,longitude,elevation_m\n")
        for s in stations.stations.values():
            handle.write(f"{s.network},{s.station},{s.latitude},{s.longitude},{s.elevation_m}\n")
    picks = [
        Pick(f"{k}..HH", p, UTCDateTime(t), 0.8, UTCDateTime(t - 0.1), UTCDateTime(t + 0.1), "bench", "")
        for k, p, t in zip(station, phase, times)
    ]
    picks_file = folder / "picks.csv"
    picks_file.write_text(picks_to_csv(picks))
    return st_file, picks_file


def match(truth: np.ndarray, found: np.ndarray, km: float = 10.0, seconds: float = 2.0) -> tuple[int, int]:
    """(true events found, found events matching no true one): within ``km`` epicentral and ``seconds``."""
    if len(found) == 0:
        return 0, 0
    coslat = math.cos(math.radians(40.0))
    hit = np.zeros(len(found), bool)
    n_found = 0
    for t, lat, lon, _ in truth:
        near = (np.abs(found[:, 0] - t) < seconds) & (
            np.hypot((found[:, 1] - lat) * KM, (found[:, 2] - lon) * KM * coslat) < km
        )
        n_found += bool(near.any())
        hit |= near
    return n_found, int((~hit).sum())


def run_pyocto(associator: Associator, station, phase, times) -> tuple[float, int]:
    frame = pd.DataFrame({"station": station, "time": times, "phase": phase})
    start = time.perf_counter()
    events, _ = associator.octo.associate(frame, associator.station_frame)
    return time.perf_counter() - start, len(events)


def run_cli(
    picks_file: Path, st_file: Path, out: Path, threads: int | None, cutoff_km: float
) -> tuple[float, int]:
    cmd = [
        sys.executable,
        "-m",
        "seispick.cli.main",
        "associate",
        str(picks_file),
        "--stations",
        str(st_file),
    ]
    cmd += ["-o", str(out), "-q"] + (["--cutoff-km", str(cutoff_km)] if cutoff_km else [])
    cmd += ["--threads", str(threads)] if threads else []
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    events = pd.read_csv(out)
    found = np.column_stack(
        [
            [UTCDateTime(t).timestamp for t in events["origin_time"]],
            events["latitude"].to_numpy(float),
            events["longitude"].to_numpy(float),
        ]
    )
    return seconds, found


def run_live(
    associator: Associator, station, phase, times, minutes: float, step_s: float, rng, legacy: bool = False
) -> dict:
    """Picks of the first ``minutes`` in arrival order; one step every ``step_s`` of simulated time; the
    service's association (settle, delay 2 s, versions 10 s apart) or with ``legacy`` the one before it
    (delay 10 s, every change a version)."""
    end = T0 + minutes * 60
    sel = np.flatnonzero(times < end)
    arrival = times[sel] + rng.uniform(0.5, 3.0, len(sel))
    order = sel[np.argsort(arrival)]
    arrival = np.sort(arrival)
    picks = [
        Pick(
            f"{station[i]}..HH",
            str(phase[i]),
            UTCDateTime(times[i]),
            0.8,
            UTCDateTime(times[i]),
            UTCDateTime(times[i]),
            "bench",
            "",
        )
        for i in order
    ]
    clock = [T0]
    delay = 10.0 if legacy else 2.0
    config = (
        LiveConfig(window_s=120.0, delay_s=delay)
        if legacy
        else LiveConfig(window_s=120.0, delay_s=delay, settle=True, min_version_interval_s=10.0)
    )
    live = LiveAssociator(associator, config, wall_clock=lambda: clock[0])
    arrived = {p.id: float(t) for p, t in zip(picks, arrival)}
    steps, latencies, j = [], [], 0
    first: dict[str, float] = {}  # event id -> its first version (simulated time + step compute)
    versions: dict[str, list] = {}
    for now in np.arange(T0, end + 130, step_s):
        clock[0] = float(now)
        while j < len(picks) and arrival[j] <= now:
            live.add(picks[j])
            j += 1
        before = len(live.stats.latencies)
        started = time.perf_counter()
        out = live.step(float(now))
        compute = time.perf_counter() - started
        steps.append(compute)
        latencies += [lat + compute for lat in live.stats.latencies[before:]]
        for event in out:
            first.setdefault(event.event_id, float(now) + compute)
            versions.setdefault(event.event_id, []).append(event)
    for event in live.flush():
        versions.setdefault(event.event_id, []).append(event)
    locating, states, duplicates = [], [], 0
    pick_sets: dict[frozenset, str] = {}
    for eid, evs in versions.items():
        seen = set()
        for e in evs:
            ids = frozenset(a.pick_id for a in e.arrivals)
            o = e.origin
            seen.add((ids, round(o.time, 1), round(o.x_km), round(o.y_km), round(o.depth_km)))
            other = pick_sets.setdefault(ids, eid)
            duplicates += other != eid
        states.append(len(seen))
        times = sorted(arrived[a.pick_id] for a in evs[-1].arrivals if a.pick_id in arrived)
        if eid in first and len(times) >= associator.config.min_picks:
            locating.append(first[eid] - times[associator.config.min_picks - 1])
    return {
        "versions": np.array([len(v) for v in versions.values()]),
        "states": np.array(states),
        "duplicates": duplicates,
        "locating": np.array(locating),
        "picks": len(picks),
        "rate": len(picks) / (minutes * 60),
        "steps": np.array(steps),
        "latency": np.array(latencies),
        "declared": live.stats.declared,
        "updated": live.stats.updated,
        "delay": delay,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stations", type=int, default=1000)
    parser.add_argument("--radius-km", type=float, default=300.0)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--picks", type=int, default=300_000, help="picks per day (scaled to --hours)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--live-minutes", type=float, default=5.0)
    parser.add_argument("--live-step-s", type=float, default=5.0, help="live association interval")
    parser.add_argument("--live-only", action="store_true", help="only the live part (no day of picks)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=2, help="alternated runs of each; the best is reported")
    parser.add_argument(
        "--cutoff-km", type=float, default=None, help="association cutoff distance (default: seispick's rule)"
    )
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    stations = network(args.stations, args.radius_km, rng)
    target = int(args.picks * args.hours / 24)
    station, phase, times, truth, n_true = day_of_picks(stations, args.hours, target, args.radius_km, rng)
    print(
        f"{args.stations} stations, {args.hours:g} h, {len(times)} picks ({n_true} of {len(truth)} events, "
        f"{len(times) - n_true} spurious), {args.threads} threads",
        flush=True,
    )
    associator = Associator(stations, AssociationConfig(n_threads=args.threads, cutoff_km=args.cutoff_km))
    print(f"association cutoff {associator.cutoff_km:g} km, time before {associator.time_before_s:.0f} s")
    if not args.live_only:
        day(args, associator, stations, station, phase, times, truth)
    for legacy in (True, False):
        live = run_live(
            associator,
            station,
            phase,
            times,
            args.live_minutes,
            args.live_step_s,
            np.random.default_rng(1),
            legacy,
        )
        report_live(args, live, "before (delay 10 s, every change a version)" if legacy else
                    "the service's (settle, delay 2 s, versions >= 10 s apart)")  # fmt: skip


def day(args, associator: Associator, stations, station, phase, times, truth) -> None:
    """PyOcto directly against ``seispick associate`` on the whole day of picks."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        st_file, picks_file = write_inputs(folder, stations, station, phase, times)
        print(f"wrote the picks CSV in {time.perf_counter() - started:.1f} s", flush=True)
        direct, cli = [], []
        for _ in range(args.repeat):  # alternated, best of each: the machine is shared
            direct.append(run_pyocto(associator, station, phase, times))
            cli.append(run_cli(picks_file, st_file, folder / "events.csv", args.threads, args.cutoff_km))
            print(f"PyOcto {direct[-1][0]:.1f} s, seispick associate {cli[-1][0]:.1f} s", flush=True)
        direct_s, direct_events = min(direct)
        cli_s, found = min(cli, key=lambda run: run[0])
    recalled, false = match(truth, found)
    n = len(times)
    print()
    print("| run | seconds | picks/s | vs PyOcto | events |")
    print("|---|---|---|---|---|")
    print(
        f"| PyOcto `associate` directly (DataFrame in memory) | {direct_s:.1f} | {n / direct_s:,.0f} | 1.00x | {direct_events} |"
    )
    print(
        f"| `seispick associate` (CSV in, events CSV out, process) | {cli_s:.1f} | {n / cli_s:,.0f} | {cli_s / direct_s:.2f}x | {len(found)} |"
    )
    print(
        f"\ntrue events found by `seispick associate` (within 10 km and 2 s): {recalled} of {len(truth)} "
        f"({recalled / len(truth):.1%}); found events matching none: {false}"
    )
    sys.stdout.flush()


def report_live(args, live: dict, name: str) -> None:
    steps, lat, loc = live["steps"], live["latency"], live["locating"]
    v, st = live["versions"], live["states"]
    print()
    print(
        f"live, {name}: {args.stations} stations, {live['picks']} picks over {args.live_minutes:g} min "
        f"({live['rate']:.1f} picks/s), window 120 s, a step every {args.live_step_s:g} s"
    )
    print("| quantity | p50 | p95 | max |")
    print("|---|---|---|---|")
    print(
        f"| step compute (s) | {np.median(steps):.3f} | {np.quantile(steps, 0.95):.3f} | {steps.max():.3f} |"
    )
    if len(lat):
        print(
            f"| last new pick to publication (s) | {np.median(lat):.2f} | {np.quantile(lat, 0.95):.2f} | {lat.max():.2f} |"
        )
    if len(loc):
        print(
            f"| first version - arrival of its min_picks-th pick (s) | {np.median(loc):.2f} | "
            f"{np.quantile(loc, 0.95):.2f} | {loc.max():.2f} |"
        )
    if len(v):
        print(f"| versions per event | {np.median(v):.0f} | {np.quantile(v, 0.95):.0f} | {v.max()} |")
        print(
            f"| distinct states per event | {np.median(st):.0f} | {np.quantile(st, 0.95):.0f} | {st.max()} |"
        )
    print(
        f"events {len(v)}: declared {live['declared']}, versions {int(v.sum()) if len(v) else 0} of which "
        f"{int((v - st).sum()) if len(v) else 0} repeat a state; versions with another id's pick set: "
        f"{live['duplicates']}"
    )


if __name__ == "__main__":
    main()
