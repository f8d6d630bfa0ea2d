"""End-to-end latency of picks and events: real recordings through `seispick replay` -> `seispick serve` -> Redis.

The demo archive (seispick/service/stream/demo/: the earthquake of demo/event/ on nine stations EV01-EV09 at
2:00 and 7:00 of every 10-minute loop, placed at the travel times from the hypocentre of event.json, plus the
noise-and-events stations DEMO1-3; copies of DEMO1-3 under new names beyond 12 stations, each rolled by a random
number of samples so that their picks fall at unrelated times) is replayed by
``seispick replay --speed 1 --restamp --loop`` and served by ``seispick serve --seedlink ... --stations
coordinates.csv --redis-url redis://127.0.0.1:6379/0`` (association on: EV01-EV09 at the demo's coordinates,
with --locate-copies the copies at random places within 150 km; DEMO1-3 without coordinates),
each Redis key under a prefix of this run (``bench-latency-<hex>:``) deleted at the end. After --duration
seconds from the replay's start both processes are stopped and the streams are read back:

- picks: for every pick id (and every ``status`` it was published with, when records carry one: preliminary
  and final), its first publication minus its ``peak_time``. Publication is the Redis entry id's time (the
  XADD, Redis's clock) and the record's ``published_at`` (the service's hand-over to the publisher). Restamping
  shifts every record's start time by one offset per loop (seispick.miniseed.pack.shift_record), set so the
  archive's first sample is the wall clock at the replay's start and each record is released when the wall
  clock passes its (restamped) end: the published peak_time is on the restamped clock, which is the wall
  clock at which that sample was "recorded", so the difference is the latency a live station would see,
  including the replay's record packing (a sample waits for the end of its 512-byte record). Picks whose
  peak_time precedes the service's readiness (backlog) are left out and counted.
- events: for every event id, its first publication minus the peak_time of the pick that made it locatable:
  the min_picks-th earliest (default 8) of all the picks that any version of it carried; versions per id;
  distinct states per id (origin time to 0.1 s, latitude and longitude to 0.01 deg, depth to 1 km, and the
  pick set); duplicate ids (ids with the same pick set as another id, in any version) and ids sharing picks.

Run by hand:  python bench/latency.py [--duration 540] [--stations 10]
(the demo's second event is published about 8 minutes after the replay starts: --duration 540 sees both).
SEISPICK_STREAMING__FIRST_LOOK_STRIDE_S in the environment reaches the service; no other SEISPICK_* does.
A committed tree ("before" figures):  git archive COMMIT | tar -x -C /tmp/head; cp bench/latency.py
/tmp/head/bench/; cd /tmp/head && PYTHONPATH=/tmp/head python bench/latency.py (the processes inherit PYTHONPATH).
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import redis
from realtime import (  # bench/realtime.py beside this script: one copy of the process helpers
    free_port,
    stop_processes,
    wait_for_port,
)

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "seispick" / "service" / "stream" / "demo"
REDIS_URL = "redis://127.0.0.1:6379/0"
# SEISPICK_* variables the run takes from this shell (every other one is dropped: the service's defaults)
PASSED = ("SEISPICK_STREAMING__FIRST_LOOK_STRIDE_S",)
COPY_RADIUS_KM = 150.0  # beyond 12 stations, copies of DEMO1-3 placed at random within this of the network


def epoch(iso: str) -> float:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def write_archive(folder: Path, n: int, locate: bool) -> tuple[Path, Path]:
    """EV01-EV09 first, then DEMO1-3, then renamed copies of DEMO1-3; returns the station list and the station
    coordinates: the demo's for EV01-EV09, and with ``locate`` beyond 12 stations each copy at a random place
    within ``COPY_RADIUS_KM`` of the demo network's centre (seeded), so that the associator works on the whole
    network: the copies' picks (their own small events in noise) are picks of no event there."""
    import numpy as np
    import obspy
    from obspy.geodetics import kilometers2degrees

    names = [f"EV{i:02d}" for i in range(1, 10)] + ["DEMO1", "DEMO2", "DEMO3"]
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n):
        if i < len(names):
            src = DEMO / ("event" if names[i].startswith("EV") else "") / f"SP.{names[i]}.mseed"
            (folder / src.name).symlink_to(src)
            lines.append(f"SP_{names[i]}:HH?")
            continue
        st = obspy.read(str(DEMO / f"SP.DEMO{i % 3 + 1}.mseed"))
        name = f"X{i:04d}"
        shift = int(rng.integers(len(st[0].data)))  # copies rolled apart: their picks do not line up in time
        for tr in st:
            tr.stats.station = name
            tr.data = np.roll(tr.data, shift)
        st.write(str(folder / f"SP.{name}.mseed"), format="MSEED", encoding="STEIM2", reclen=512)
        lines.append(f"SP_{name}:HH?")
    station_file = folder / "stations.txt"
    station_file.write_text("\n".join(lines) + "\n")
    rows = (DEMO / "stations.csv").read_text().splitlines()
    if locate and n > len(names):
        demo = [r.split(",") for r in rows[1:] if r.strip()]
        lat0 = float(np.mean([float(r[2]) for r in demo]))
        lon0 = float(np.mean([float(r[3]) for r in demo]))
        for i in range(len(names), n):
            r = kilometers2degrees(COPY_RADIUS_KM) * math.sqrt(rng.uniform())
            a = rng.uniform(0, 2 * math.pi)
            lat, lon = lat0 + r * math.sin(a), lon0 + r * math.cos(a) / math.cos(math.radians(lat0))
            rows.append(f"SP,X{i:04d},{lat:.5f},{lon:.5f},0")
    coordinates = folder / "coordinates.csv"
    coordinates.write_text("\n".join(rows) + "\n")
    return station_file, coordinates


def updates_supported() -> bool:
    """Whether this tree's service publishes pick updates (preliminary picks) on a stream of their own."""
    from seispick.service.settings import Settings

    streaming = Settings.model_fields["streaming"].annotation
    return "preliminary_key" in getattr(streaming, "model_fields", {})


def run(
    n: int, duration: float, prefix: str, model: str | None, preliminary: bool | None, locate: bool
) -> dict:
    sl_port, http_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEISPICK_") or k in PASSED}
    env.update(
        SEISPICK_ACCESS_LOG="false",
        SEISPICK_LOG_LEVEL="warning",
        SEISPICK_STREAMING__STREAM_KEY=f"{prefix}picks",
        SEISPICK_STREAMING__DETECTIONS_KEY=f"{prefix}detections",
        SEISPICK_STREAMING__CHANNEL=f"{prefix}picks:live",
        SEISPICK_STREAMING__POSITIONS_KEY=f"{prefix}positions",
        SEISPICK_EVENTS__STREAM_KEY=f"{prefix}events",
        SEISPICK_EVENTS__CHANNEL=f"{prefix}events:live",
    )
    if (
        updates_supported()
    ):  # the pick updates' stream (preliminary, confirmed, rejected), where the tree has it
        env.update(
            SEISPICK_STREAMING__PRELIMINARY_KEY=f"{prefix}picks:preliminary",
            SEISPICK_STREAMING__PRELIMINARY_CHANNEL=f"{prefix}picks:preliminary:live",
        )
        if preliminary is not None:
            env["SEISPICK_STREAMING__PRELIMINARY_PICKS"] = str(preliminary).lower()
    with tempfile.TemporaryDirectory() as tmp:
        station_file, coordinates = write_archive(Path(tmp), n, locate)
        replay = subprocess.Popen(
            ["seispick", "replay", tmp, "--port", str(sl_port), "--speed", "1", "--restamp", "--loop"],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        serve = None
        started = time.time()
        ready = None
        try:
            wait_for_port(sl_port, replay, 120)
            cmd = ["seispick", "serve", "--port", str(http_port), "--seedlink", f"127.0.0.1:{sl_port}",
                   "--station-file", str(station_file), "--stations", str(coordinates),
                   "--redis-url", REDIS_URL] + (["--model", model] if model else [])  # fmt: skip
            serve = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
            base = f"http://127.0.0.1:{http_port}"
            while time.time() - started < duration:
                if serve.poll() is not None:
                    raise RuntimeError(f"seispick serve exited with {serve.returncode}")
                if ready is None:
                    try:
                        if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                            ready = time.time()
                            print(
                                f"service ready {ready - started:.1f} s after the replay's start", flush=True
                            )
                    except httpx.HTTPError:
                        pass
                time.sleep(1.0)
        finally:
            stop_processes((serve, replay), timeout=60)
    return {"started": started, "ready": ready or started}


def entry_time(entry_id: str) -> float:
    return int(entry_id.split("-")[0]) / 1000


def read_stream(client: redis.Redis, key: str) -> list[tuple[float, dict[str, str]]]:
    return [(entry_time(i), f) for i, f in client.xrange(key)]


def quantiles(values: list[float]) -> str:
    if not values:
        return "- | - | -"
    a = np.array(values)
    return f"{np.median(a):.1f} | {np.quantile(a, 0.9):.1f} | {a.max():.1f}"


def pick_rows(picks: list[tuple[float, dict[str, str]]], ready: float) -> tuple[list[str], dict, int]:
    """Table rows of pick latencies; the peak time of every pick id; how many were backlog."""
    first: dict[tuple[str, str], tuple[float, float, float]] = {}  # (id, status) -> (entry, published, peak)
    peaks: dict[str, float] = {}
    for t, f in picks:
        peak = epoch(f["peak_time"])
        peaks[f["id"]] = peak
        key = (f["id"], f.get("status", "final (pick stream)"))
        if key not in first or t < first[key][0]:
            first[key] = (t, epoch(f["published_at"]), peak)
    backlog = {k for k, v in first.items() if v[2] < ready}
    kept = {k: v for k, v in first.items() if k not in backlog}
    rows = []
    groups = {"every pick, first publication of any status": None}
    groups.update({s: s for s in sorted({k[1] for k in kept})})
    for label, status in groups.items():
        if status is None:
            per_id: dict[str, tuple[float, float, float]] = {}
            for (pid, _), v in kept.items():
                per_id[pid] = min(per_id.get(pid, v), v)
            values = list(per_id.values())
        else:
            values = [v for k, v in kept.items() if k[1] == status]
        rows.append(
            f"| picks: {label} | {len(values)} | {quantiles([v[0] - v[2] for v in values])} "
            f"| {quantiles([v[1] - v[2] for v in values])} |"
        )
    return rows, peaks, len({k[0] for k in backlog})


def event_report(events: list[tuple[float, dict[str, str]]], peaks: dict[str, float], min_picks: int) -> dict:
    by_id: dict[str, list[tuple[float, dict[str, str]]]] = {}
    for t, f in events:
        by_id.setdefault(f["id"], []).append((t, f))
    lat_entry, lat_pub, versions, states, unknown = [], [], [], [], 0
    sets: dict[str, set[frozenset[str]]] = {}
    union: dict[str, set[str]] = {}
    for eid, entries in by_id.items():
        entries.sort(key=lambda e: e[0])
        versions.append(len({f["version"] for _, f in entries}))
        seen = set()
        for _, f in entries:
            pick_set = frozenset(p for p in f["pick_ids"].split(",") if p)
            origin = (
                round(epoch(f["origin_time"]), 1),
                round(float(f["latitude"]), 2),
                round(float(f["longitude"]), 2),
                round(float(f["depth_km"])),
            )
            seen.add((origin, pick_set))
            sets.setdefault(eid, set()).add(pick_set)
            union.setdefault(eid, set()).update(pick_set)
        states.append(len(seen))
        times = sorted(peaks[p] for p in union[eid] if p in peaks)
        if len(times) < min_picks or len(times) < len(union[eid]):
            unknown += (
                1  # a pick of the event not in the picks stream (published before the stream was read?)
            )
        if len(times) >= min_picks:
            locatable = times[min_picks - 1]
            lat_entry.append(entries[0][0] - locatable)
            lat_pub.append(epoch(entries[0][1]["published_at"]) - locatable)
    ids = list(by_id)
    duplicates = {a for a in ids for b in ids if a != b and sets[a] & sets[b]}
    sharing = {a for a in ids for b in ids if a != b and union[a] & union[b]}
    return {
        "ids": len(ids),
        "entries": len(events),
        "lat_entry": lat_entry,
        "lat_pub": lat_pub,
        "versions": versions,
        "states": states,
        "duplicates": len(duplicates),
        "sharing": len(sharing),
        "unknown": unknown,
        "origins": sorted(
            (f["origin_time"], f["latitude"], f["longitude"], f["depth_km"], f["n_picks"], eid)
            for eid, entries in by_id.items()
            for f in [entries[-1][1]]
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=540.0, help="Seconds from the replay's start")
    parser.add_argument("--stations", type=int, default=10, help="Stations replayed (EV01-EV09 first)")
    parser.add_argument("--model", default=None, help="Picker (default: the service's)")
    parser.add_argument("--min-picks", type=int, default=8, help="The service's events.min_picks")
    parser.add_argument(
        "--locate-copies",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="Give the copies coordinates (their picks, small real events at unrelated times, then load the "
        "associator: about 5x the pick rate of bench/associate.py's synthetic network, so events of "
        "coincidences are found); default: only EV01-EV09 located",
    )
    parser.add_argument(
        "--preliminary",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Set streaming.preliminary_picks (default: the service's; only where the tree has it)",
    )
    args = parser.parse_args()
    prefix = f"bench-latency-{uuid.uuid4().hex[:12]}:"
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    passed = {k: os.environ[k] for k in PASSED if k in os.environ}
    print(
        f"load average at start: {os.getloadavg()}; keys under {prefix}; settings passed: {passed}",
        flush=True,
    )
    try:
        times = run(args.stations, args.duration, prefix, args.model, args.preliminary, args.locate_copies)
        picks = read_stream(client, f"{prefix}picks")
        updates = read_stream(client, f"{prefix}picks:preliminary")
        events = read_stream(client, f"{prefix}events")
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
    print(f"load average at end: {os.getloadavg()}", flush=True)
    rows, peaks, backlog = pick_rows(picks + updates, times["ready"])
    ev = event_report(events, peaks, args.min_picks)
    print(
        f"\n{args.stations} stations (EV01-EV09 first), {args.duration:.0f} s from the replay's start, service "
        f"ready after {times['ready'] - times['started']:.0f} s; {len(picks)} pick entries "
        f"({backlog} picks with peak_time before ready left out), {len(updates)} pick-update entries, "
        f"{ev['entries']} event entries, "
        f"{os.cpu_count()} cores\n"
    )
    print(
        "| what | n | Redis entry - reference p50 | p90 | max (s) | published_at - reference p50 | p90 | max (s) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(row)
    print(
        f"| events: first version - peak_time of the {args.min_picks}th pick | {len(ev['lat_entry'])} | "
        f"{quantiles(ev['lat_entry'])} | {quantiles(ev['lat_pub'])} |"
    )
    # the demo earthquake's events: those carrying a pick of EV01-EV09 (beyond 12 stations others are found too)
    on_ev = {f["id"] for _, f in picks + updates if f.get("station", "").startswith("EV")}
    ids = {f["id"] for _, f in events if on_ev & set(f["pick_ids"].split(","))}
    quake = event_report([(t, f) for t, f in events if f["id"] in ids], peaks, args.min_picks)
    print(
        f"| events carrying EV01-EV09 picks (the demo earthquake) | {len(quake['lat_entry'])} | "
        f"{quantiles(quake['lat_entry'])} | {quantiles(quake['lat_pub'])} |"
    )
    print(f"  their versions per id {quake['versions']}, distinct states {quake['states']}")
    v, s = ev["versions"], ev["states"]
    print(
        f"\nevent ids {ev['ids']}; versions per id {v} (mean {np.mean(v) if v else 0:.1f}); distinct states "
        f"(origin to 0.1 s / 0.01 deg / 1 km + pick set) per id {s}; ids with a pick set another id also had: "
        f"{ev['duplicates']}; ids sharing a pick with another id: {ev['sharing']}; ids with picks missing from "
        f"the picks stream: {ev['unknown']}"
    )
    for origin in ev["origins"]:
        print(f"  last version: origin {origin[0]} lat {origin[1]} lon {origin[2]} depth {origin[3]} km, "
              f"{origin[4]} picks, {origin[5]}")  # fmt: skip


if __name__ == "__main__":
    main()
