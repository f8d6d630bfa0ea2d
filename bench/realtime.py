"""Real-time capacity: N stations replayed at real time through the SeedLink replay server into `seispick serve`.

For each N: write an archive of N stations (3 x 100 Hz, a few minutes of noise with real events, looped and
re-stamped to now), start `seispick replay --speed 1 --restamp --loop` and `seispick serve --seedlink ...` as
separate processes, and sample /v1/stations and /metrics for --duration seconds. A run is sustained when the
data latency does not grow (median over stations in the last third within 2 s of the first third) and no
station falls silent. Prints a table: N, data latency p50 at start/end, pick latency p50/p99, picks.
Run by hand:  python bench/realtime.py --stations 100 300 1000 --duration 300
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_archive(folder: Path, n_stations: int, seconds: float) -> None:
    template, _ = event_hour(
        obspy.UTCDateTime(2020, 1, 1), station="T", seed=1
    )  # events every 300 s from 120 s
    t0 = template[0].stats.starttime + 100.0  # an event 20 s into every loop of the archive
    template.trim(starttime=t0, endtime=t0 + seconds - 0.01)
    for tr in template:
        tr.data = np.round(tr.data * 50).astype(np.int32)
    for i in range(n_stations):
        st = template.copy()
        for tr in st:
            tr.stats.network, tr.stats.station = "BN", f"S{i:04d}"
        st.write(str(folder / f"BN.S{i:04d}.mseed"), format="MSEED", encoding="STEIM2", reclen=512)


def histogram_quantile(families: dict, name: str, q: float) -> float | None:
    """Quantile from a Prometheus histogram summed over labels (upper bucket bound)."""
    buckets: dict[float, float] = {}
    for family in families.values():
        for sample in family.samples:
            if sample.name == f"{name}_bucket":
                le = float(sample.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + sample.value
    if not buckets or max(buckets.values()) == 0:
        return None
    total = buckets[float("inf")]
    for le in sorted(buckets):
        if buckets[le] >= q * total:
            return le
    return None


def run(n_stations: int, duration: float, archive_s: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_archive(folder, n_stations, archive_s)
        sl_port, http_port = free_port(), free_port()
        env = {**os.environ, "SEISPICK_ACCESS_LOG": "false", "SEISPICK_LOG_LEVEL": "warning"}
        replay = subprocess.Popen(
            [
                "seispick",
                "replay",
                str(folder),
                "--port",
                str(sl_port),
                "--speed",
                "1",
                "--restamp",
                "--loop",
            ],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(2.0 + n_stations / 200)
        serve = subprocess.Popen(
            [
                "seispick",
                "serve",
                "--port",
                str(http_port),
                "--seedlink",
                f"127.0.0.1:{sl_port}",
                "--select",
                "BN_*:HH?",
            ],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{http_port}"
        latencies: list[tuple[float, float, int]] = []
        t0 = time.time()
        try:
            while time.time() - t0 < duration:
                time.sleep(5.0)
                try:
                    states = httpx.get(f"{base}/v1/stations", timeout=10).json()["stations"]
                except (httpx.HTTPError, KeyError, ValueError):
                    continue
                if states:
                    lat = [s["data_latency_s"] + s["seconds_since_last_record"] for s in states]
                    streaming = sum(s["state"] == "streaming" for s in states)
                    latencies.append((time.time() - t0, float(np.median(lat)), streaming))
            metrics = httpx.get(f"{base}/metrics", timeout=10).text
        finally:
            for proc in (serve, replay):
                proc.send_signal(signal.SIGINT)
            for proc in (serve, replay):
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
    families = {f.name: f for f in text_string_to_metric_families(metrics)}
    picks = sum(s.value for f in families.values() for s in f.samples if s.name == "seispick_published_total")
    third = max(len(latencies) // 3, 1)
    first = float(np.median([x[1] for x in latencies[:third]])) if latencies else float("nan")
    last = float(np.median([x[1] for x in latencies[-third:]])) if latencies else float("nan")
    streaming_end = latencies[-1][2] if latencies else 0
    return {
        "stations": n_stations,
        "latency_first": first,
        "latency_last": last,
        "streaming": streaming_end,
        "pick_p50": histogram_quantile(families, "seispick_pick_latency_seconds", 0.5),
        "pick_p99": histogram_quantile(families, "seispick_pick_latency_seconds", 0.99),
        "picks": int(picks),
        "sustained": bool(latencies) and last - first < 2.0 and streaming_end == n_stations,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stations", type=int, nargs="+", default=[50, 200, 500, 1000])
    parser.add_argument("--duration", type=float, default=300.0, help="Seconds per N (the goal is 5 minutes)")
    parser.add_argument("--archive", type=float, default=180.0, help="Seconds of data per station (looped)")
    args = parser.parse_args()
    rows = [run(n, args.duration, args.archive) for n in args.stations]
    print(f"\n{args.duration:.0f} s per run, 3 x 100 Hz per station, replay and service on this machine\n")
    print(
        "| stations | data latency p50 start (s) | end (s) | streaming at end | pick latency p50 / p99 (s) | picks | sustained |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['stations']} | {r['latency_first']:.2f} | {r['latency_last']:.2f} | {r['streaming']} | "
            f"{r['pick_p50']} / {r['pick_p99']} | {r['picks']} | {'yes' if r['sustained'] else 'no'} |"
        )


if __name__ == "__main__":
    main()
