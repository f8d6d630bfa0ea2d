"""Real-time capacity: N stations replayed at real time through the SeedLink replay server into `seispick serve`.

For each N: write an archive of N stations (3 x 100 Hz, a few minutes of noise with real events, looped and
re-stamped to now), start `seispick replay --speed 1 --restamp --loop` and `seispick serve --seedlink ...
--workers W` as separate processes on this machine's cores, and sample /v1/stations for --duration seconds
after a warm-up. A run is sustained when the data latency does not grow (median over stations in the last
third within 2 s of the first third), every station is still streaming and the stream is not behind at the
end. CPU time comes from /proc/<pid>/stat (user + system, of the process and all its descendants, reaped
children included) over the measured stretch, per station-hour of data; pick latency p50/p99 is from the
service's histogram over the same stretch (bucket upper bounds).
Run by hand:  python bench/realtime.py --stations 1000 3000 5000 --workers 1 2 --duration 300
(SEISPICK_STREAMING__FIRST_LOOK_STRIDE_S=3 in the environment reaches the service; no other SEISPICK_* does.)
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import obspy
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.streams import event_hour  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# SEISPICK_* variables the runs take from this shell (every other one is dropped: the service's defaults)
PASSED = ("SEISPICK_STREAMING__FIRST_LOOK_STRIDE_S",)
STRIDE_S = 15.0  # phasenet-original's stride (1500 of 3000 samples at 100 Hz): the latency goal is p99 < 16 s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_archive(folder: Path, n_stations: int, seconds: float) -> Path:
    """N station files and a station list (one NET_STA:HH? per line); returns the list's path."""
    template, _ = event_hour(
        obspy.UTCDateTime(2020, 1, 1), station="T", seed=1
    )  # events every 300 s from 120 s
    t0 = template[0].stats.starttime + 100.0  # an event 20 s into every loop of the archive
    template.trim(starttime=t0, endtime=t0 + seconds - 0.01)
    for tr in template:
        tr.data = np.round(tr.data * 50).astype(np.int32)
    lines = []
    for i in range(n_stations):
        st = template.copy()
        for tr in st:
            tr.stats.network, tr.stats.station = "BN", f"S{i:04d}"
        st.write(str(folder / f"BN.S{i:04d}.mseed"), format="MSEED", encoding="STEIM2", reclen=512)
        lines.append(f"BN_S{i:04d}:HH?")
    station_file = folder / "stations.txt"
    station_file.write_text("\n".join(lines) + "\n")
    return station_file


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its descendants (and of their reaped children)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = sum(int(x) for x in fields[11:15]) / CLOCK_TICKS  # utime stime cutime cstime
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, pp in parents.items() if pp == parent and p not in tree]
        tree.update(children)
        frontier += children
    return sum(times.get(p, 0.0) for p in tree)


def histogram(text: str, name: str) -> dict[float, float]:
    """Cumulative bucket counts of a histogram, summed over its labels."""
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{name}_bucket":
                le = float(sample.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + sample.value
    return buckets


def quantile(buckets: dict[float, float], q: float) -> float | None:
    """Upper bound of the bucket holding the ``q`` quantile."""
    if not buckets or buckets.get(float("inf"), 0) == 0:
        return None
    total = buckets[float("inf")]
    for le in sorted(buckets):
        if buckets[le] >= q * total:
            return le
    return None


def stop_processes(procs, timeout: float) -> None:
    """SIGINT to each started process, then wait for each (killed past ``timeout``)."""
    started = [p for p in procs if p is not None]
    for proc in started:
        proc.send_signal(signal.SIGINT)
    for proc in started:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_for_port(port: int, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"replay server exited with {process.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(1.0)
    raise RuntimeError(f"replay server not listening after {timeout:.0f} s")


def get(url: str, **kwargs) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=30, **kwargs)
    except httpx.HTTPError:
        return None


def run(folder: Path, station_file: Path, n: int, workers: int, duration: float, warmup: float) -> dict:
    sl_port, http_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEISPICK_") or k in PASSED}
    env.update(SEISPICK_ACCESS_LOG="false", SEISPICK_LOG_LEVEL="warning")
    replay_cmd = [
        "seispick",
        "replay",
        str(folder),
        "--port",
        str(sl_port),
        "--speed",
        "1",
        "--restamp",
        "--loop",
    ]
    replay = subprocess.Popen(replay_cmd, env=env, stderr=subprocess.DEVNULL)
    serve = None
    samples: list[tuple[float, float, int, bool]] = []
    try:
        wait_for_port(sl_port, replay, 1800)
        load = os.getloadavg()[0]
        serve_cmd = ["seispick", "serve", "--port", str(http_port), "--seedlink", f"127.0.0.1:{sl_port}",
                     "--station-file", str(station_file), "--workers", str(workers)]  # fmt: skip
        serve = subprocess.Popen(serve_cmd, env=env, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{http_port}"
        deadline = time.time() + 600
        while (r := get(f"{base}/readyz")) is None or r.status_code != 200:
            if time.time() > deadline or serve.poll() is not None:
                raise RuntimeError("the service did not get ready")
            time.sleep(2.0)
        time.sleep(warmup)  # the first windows complete after 30 s of data
        cpu0 = {"serve": cpu_seconds(serve.pid), "replay": cpu_seconds(replay.pid)}
        metrics0 = get(f"{base}/metrics")
        t0 = time.time()
        while time.time() - t0 < duration:
            time.sleep(10.0)
            r = get(f"{base}/v1/stations")
            if r is None or r.status_code != 200:
                continue
            view = r.json()
            states = view["stations"]
            if states:
                lat = [s["data_latency_s"] + s["seconds_since_last_record"] for s in states]
                streaming = sum(s["state"] == "streaming" for s in states)
                samples.append(
                    (time.time() - t0, float(np.median(lat)), streaming, view["overload"]["behind"])
                )
        elapsed = time.time() - t0
        cpu = {
            "serve": cpu_seconds(serve.pid) - cpu0["serve"],
            "replay": cpu_seconds(replay.pid) - cpu0["replay"],
        }
        metrics1 = get(f"{base}/metrics")
        load = max(load, os.getloadavg()[0])
    finally:
        stop_processes((serve, replay), timeout=90)
    name = "seispick_pick_latency_seconds"
    before = histogram(metrics0.text, name) if metrics0 is not None else {}
    after = histogram(metrics1.text, name) if metrics1 is not None else {}
    window = {le: count - before.get(le, 0.0) for le, count in after.items()}
    third = max(len(samples) // 3, 1)
    first = float(np.median([x[1] for x in samples[:third]])) if samples else float("nan")
    last = float(np.median([x[1] for x in samples[-third:]])) if samples else float("nan")
    streaming_end = samples[-1][2] if samples else 0
    behind_end = samples[-1][3] if samples else True
    station_hours = n * elapsed / 3600
    return {
        "stations": n,
        "workers": workers,
        "latency_first": first,
        "latency_last": last,
        "streaming": streaming_end,
        "pick_p50": quantile(window, 0.5),
        "pick_p99": quantile(window, 0.99),
        "picks": int(window.get(float("inf"), 0)),
        "serve_cpu": cpu["serve"] / station_hours,
        "replay_cpu": cpu["replay"] / station_hours,
        "serve_cores": cpu["serve"] / elapsed,
        "replay_cores": cpu["replay"] / elapsed,
        "load": load,
        "sustained": bool(samples) and last - first < 2.0 and streaming_end == n and not behind_end,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stations", type=int, nargs="+", default=[1000, 3000, 5000])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--duration", type=float, default=300.0, help="Measured seconds per run (goal: 5 min)"
    )
    parser.add_argument("--warmup", type=float, default=60.0, help="Seconds after ready before measuring")
    parser.add_argument("--archive", type=float, default=180.0, help="Seconds of data per station (looped)")
    args = parser.parse_args()
    rows = []
    failed: set[int] = set()  # worker counts that did not sustain a smaller N (larger ones are skipped)
    passed = {k: os.environ[k] for k in PASSED if k in os.environ}
    print(f"load average at start: {os.getloadavg()}; settings passed: {passed}", flush=True)
    for n in args.stations:
        with tempfile.TemporaryDirectory() as tmp:
            station_file = write_archive(Path(tmp), n, args.archive)
            for workers in args.workers:
                if workers in failed:
                    continue
                try:
                    rows.append(run(Path(tmp), station_file, n, workers, args.duration, args.warmup))
                except RuntimeError as exc:
                    print(f"{n} stations, {workers} workers: {exc}", flush=True)
                    failed.add(workers)
                    continue
                print(rows[-1], flush=True)
                if not rows[-1]["sustained"]:
                    failed.add(workers)
    print(f"load average at end: {os.getloadavg()}", flush=True)
    print(f"\n{args.duration:.0f} s measured per run after {args.warmup:.0f} s of warm-up, 3 x 100 Hz per "
          f"station, replay and service on the same {os.cpu_count()} cores\n")  # fmt: skip
    print(
        "| stations | workers | data latency p50 start / end (s) | streaming at end | pick latency p50 / p99 (s) "
        "| service CPU s per station-hour (cores) | replay CPU s per station-hour (cores) | load | sustained |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['stations']} | {r['workers']} | {r['latency_first']:.2f} / {r['latency_last']:.2f} | "
            f"{r['streaming']} | {r['pick_p50']} / {r['pick_p99']} | {r['serve_cpu']:.2f} ({r['serve_cores']:.2f}) "
            f"| {r['replay_cpu']:.2f} ({r['replay_cores']:.2f}) | {r['load']:.1f} | "
            f"{'yes' if r['sustained'] else 'no'} |"
        )


if __name__ == "__main__":
    main()
