"""Peak memory of ``seispick serve`` under the costly bodies of issue 19 and fuzzed bodies.

Starts ``seispick serve`` in a subprocess with its default limits, sends each body over one keep-alive HTTP
connection and samples the server's resident memory (``/proc/PID/status``: VmRSS, and VmHWM, the peak) every
10 ms. Prints, per body, the answer, its time, the peak RSS while it ran and the RSS after it; then the peak
over the run and the RSS once everything is done (is the memory given back?).

    python bench/resource_bodies.py               # the costly bodies and 300 fuzzed ones, about 1 min
    python bench/resource_bodies.py --fuzz 0
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import io
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import obspy
import pymseed

ROOT = Path(__file__).resolve().parents[1]
EVENT = ROOT / "tests" / "data" / "service" / "BG_AL4_2011050109272382.mseed"
MSEED = "application/vnd.fdsn.mseed"


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class Sampler(threading.Thread):
    """The largest VmRSS of ``pid`` since the last ``take``, sampled every 10 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.01):
            self.peak = max(self.peak, status_kb(self.pid, "VmRSS"))

    def take(self) -> int:
        peak, self.peak = self.peak, status_kb(self.pid, "VmRSS")
        return peak


def to_bytes(stream: obspy.Stream, fmt: str = "MSEED", **kwargs) -> bytes:
    buffer = io.BytesIO()
    stream.write(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def constant_records(seconds: int, rate: float, per_second: int) -> bytes:
    """``seconds`` x ``per_second`` zero samples at ``rate`` Hz as Steim-2 miniSEED (4096-byte records)."""
    out = []
    for second in range(seconds):
        record = pymseed.MS3Record()
        record.sourceid = "FDSN:XX_BIG__H_H_Z"
        record.starttime = 1_577_836_800 * 10**9 + second * per_second * int(1e9 / rate)
        record.samprate, record.formatversion, record.reclen = rate, 2, 4096
        record.encoding = pymseed.DataEncoding.STEIM2
        out += list(record.generate(np.zeros(per_second, dtype=np.int32), "i"))
    return b"".join(out)


def costly_bodies() -> list[tuple[str, bytes, str]]:
    """(label, body, content type) of the findings of issue 19."""
    event = EVENT.read_bytes()
    nan = np.ones(39_000, dtype=np.float32)
    nan[1::2] = np.nan
    nan_trace = obspy.Trace(
        nan, header={"network": "XX", "station": "NAN", "channel": "HHZ", "sampling_rate": 100.0}
    )
    sac_b = bytearray(to_bytes(obspy.Stream([obspy.read(str(EVENT))[0]]), "SAC"))
    sac_b[20:24] = np.float32(3.4e38).tobytes()
    corrupt = bytearray(event)
    corrupt[30:32] = (60_000).to_bytes(2, "big")
    rng = np.random.default_rng(0)
    three_days = obspy.Trace(rng.integers(-1, 2, 3 * 86_400 * 100).astype(np.int32))
    three_days.stats.update(dict(network="XX", station="DAYS", channel="HHZ", sampling_rate=100.0))
    bodies = [(f"empty gzip members x{n} + event (6 MB)", gzip.compress(b"") * n + gzip.compress(event), MSEED)
              for n in (9_000, 300_000)]  # fmt: skip
    hour = obspy.read(str(EVENT))
    for trace in hour:
        trace.data = np.tile(trace.data, 40)[:360_000]  # an hour at 100 Hz: the duration limit
    hour_body = to_bytes(hour)
    bodies += [
        ("event (90 s, 3 channels)", event, MSEED),
        ("an hour, 3 channels at 100 Hz (the duration limit)", hour_body, MSEED),
        ("the same again", hour_body, MSEED),
        ("and again", hour_body, MSEED),
        (
            "float32 value/NaN alternating (SAC)",
            to_bytes(obspy.Stream([nan_trace]), "SAC"),
            "application/x-sac",
        ),
        ("100 million samples at 1 MHz (gzip)", gzip.compress(constant_records(100, 1e6, 1_000_000)), MSEED),
        (
            "3 days at 100 Hz (gzip)",
            gzip.compress(to_bytes(obspy.Stream([three_days]), encoding="STEIM2")),
            MSEED,
        ),
        ("bzip2 of 100 million samples", bz2.compress(constant_records(100, 1e6, 1_000_000)), MSEED),
        ("record declaring 60,000 samples", bytes(corrupt), MSEED),
        ("SAC with b = 3.4e38", bytes(sac_b), "application/x-sac"),
    ]
    for year in (0, 65535, 10208):
        patched = bytearray(event)
        for offset in range(0, len(patched), 4096):
            patched[offset + 20 : offset + 22] = year.to_bytes(2, "big")
        bodies.append((f"records of year {year}", bytes(patched), MSEED))
    return bodies


def fuzzed_bodies(count: int, seed: int = 0) -> list[tuple[str, bytes, str]]:
    """Seeded mutations of the event: bit flips (mostly in headers), cuts, gzip'ed."""
    rng = np.random.default_rng(seed)
    event = EVENT.read_bytes()
    out = []
    for index in range(count):
        data = bytearray(event[: int(rng.integers(512, len(event)))] if rng.random() < 0.3 else event)
        for _ in range(int(rng.integers(1, 8))):
            position = int(rng.integers(0, 64)) + 4096 * int(rng.integers(0, max(len(data) // 4096, 1)))
            if position < len(data):
                data[position] = int(rng.integers(0, 256))
        body = gzip.compress(bytes(data)) if rng.random() < 0.2 else bytes(data)
        out.append((f"fuzz {index}", body, MSEED))
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fuzz", type=int, default=300, help="fuzzed bodies after the costly ones")
    args = parser.parse_args()
    bodies = costly_bodies() + fuzzed_bodies(args.fuzz)
    port = free_port()
    env = {**os.environ, "SEISPICK_PORT": str(port), "SEISPICK_ACCESS_LOG": "false"}
    server = subprocess.Popen([sys.executable, "-m", "seispick.cli.main", "serve"], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=300) as client:
            for _ in range(600):
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            sampler = Sampler(server.pid)
            sampler.start()
            start_rss = status_kb(server.pid, "VmRSS")
            print(f"server ready: RSS {start_rss / 1024:.0f} MiB\n")
            print("| body | bytes | answer | s | peak RSS MiB | RSS after MiB |\n|---|---|---|---|---|---|")
            statuses: dict[int, int] = {}
            fuzz_peak = 0
            for label, body, kind in bodies:
                sampler.take()
                before = status_kb(server.pid, "VmRSS")
                started = time.perf_counter()
                response = client.post("/v1/picks", content=body, headers={"content-type": kind})
                seconds = time.perf_counter() - started
                peak = max(sampler.take(), status_kb(server.pid, "VmRSS"))
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                if label.startswith("fuzz"):
                    fuzz_peak = max(fuzz_peak, peak)
                    if peak - before > 50 * 1024:  # a fuzzed body that cost more than 50 MiB: shown
                        print(f"| {label} | {len(body):,} | {response.status_code} {response.text[:70]} | "
                              f"{seconds:.2f} | {peak / 1024:.0f} | {status_kb(server.pid, 'VmRSS') / 1024:.0f} |")  # fmt: skip
                    continue
                detail = response.json().get("detail", "") if response.status_code != 200 else "picks"
                print(f"| {label} | {len(body):,} | {response.status_code} {str(detail)[:70]} | {seconds:.2f} | "
                      f"{peak / 1024:.0f} | {status_kb(server.pid, 'VmRSS') / 1024:.0f} |")  # fmt: skip
            sampler.stop.set()
            print(f"\nfuzzed bodies: {args.fuzz}, answers {dict(sorted(statuses.items()))} (all bodies), "
                  f"peak RSS during them {fuzz_peak / 1024:.0f} MiB")  # fmt: skip
            print(f"server peak RSS (VmHWM) over the run: {status_kb(server.pid, 'VmHWM') / 1024:.0f} MiB; "
                  f"RSS at start {start_rss / 1024:.0f} MiB, at the end {status_kb(server.pid, 'VmRSS') / 1024:.0f} MiB")  # fmt: skip
            if any(code >= 500 for code in statuses):
                raise SystemExit("a 5xx answer")
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
