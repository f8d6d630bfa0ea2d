"""HTTP benchmark of ``seispick serve``: requests/s and p50/p99 latency with micro-batching on and off.

Starts the service under uvicorn in a subprocess, drives it with wrk (a native load generator, Debian's
package ``wrk``: the client costs little CPU next to the server) POSTing 60 s of 3-component 100 Hz miniSEED
(a real event from tests/data/service) at several concurrency levels for a fixed time each, and prints a
Markdown table. The last column is the service efficiency: HTTP requests/s divided by what the same
machine does in process on the same body (decode + ``annotate``, one thread per core).

    python bench/http_api.py                      # concurrency 1, 8, 32; batching on and off; ~1.5 min
    python bench/http_api.py --seconds 5 --concurrency 1 4
"""

from __future__ import annotations

import sys

# Run as a script, this folder is sys.path[0], where this file would shadow the standard library's ``http``;
# the script needs nothing from that folder.
sys.path.pop(0)

import argparse
import io
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import obspy
from prometheus_client.parser import text_string_to_metric_families

EVENT = Path(__file__).resolve().parents[1] / "tests" / "data" / "service" / "BG_AL4_2011050109272382.mseed"
MSEED = "application/vnd.fdsn.mseed"


@dataclass
class Cell:
    batching: bool
    concurrency: int
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    calls: float
    windows: float
    in_process: float = float("nan")  # decode + annotate calls/s in process on the same body

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def row(self) -> str:
        batch = self.windows / self.calls if self.calls else float("nan")
        calls = self.calls / self.requests if self.requests else float("nan")
        return (
            f"| {'on' if self.batching else 'off'} | {self.concurrency} | {self.throughput:.1f} | "
            f"{self.p50_ms:.0f} | {self.p99_ms:.0f} | {calls:.2f} | {batch:.1f} | {self.errors} | "
            f"{self.throughput / self.in_process:.2f} |"
        )


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/vnd.fdsn.mseed"
local f = assert(io.open("%s", "rb"))
wrk.body = f:read("*all")
f:close()
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, '
    .. '"socket_errors": %%d, "non2xx": %%d}\\n', summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), e.connect + e.read + e.write + e.timeout, e.status))
end
"""


def payload(seconds: float = 60.0) -> bytes:
    """The first ``seconds`` of the event, 3 channels at 100 Hz, as FLOAT32 miniSEED."""
    stream = obspy.read(str(EVENT))
    start = stream[0].stats.starttime
    stream.trim(start, start + seconds - 0.01)
    buffer = io.BytesIO()
    stream.write(buffer, format="MSEED", encoding="FLOAT32", reclen=4096)
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, batching: bool) -> subprocess.Popen:
    env = {
        **os.environ,
        "SEISPICK_PORT": str(port),
        "SEISPICK_LOG_LEVEL": "warning",
        "SEISPICK_ACCESS_LOG": "false",
        "SEISPICK_BATCHING__ENABLED": str(batching).lower(),
    }
    code = "from seispick.service.api.app import run_server; run_server()"
    server = subprocess.Popen([sys.executable, "-c", code], env=env)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if server.poll() is not None:
            raise RuntimeError("the server exited during start-up")
        time.sleep(0.2)
    server.kill()
    raise RuntimeError("the server did not become ready in 60 s")


def inference_counters(client: httpx.Client) -> tuple[float, float]:
    calls = windows = 0.0
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "seispick_inference_calls_total":
                calls += sample.value
            elif sample.name == "seispick_windows_processed_total":
                windows += sample.value
    return calls, windows


def wrk(base: str, body_file: Path, concurrency: int, seconds: float) -> dict:
    """Run wrk (one thread, ``concurrency`` connections) for ``seconds``; its summary as a dict."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % body_file)
    command = [
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "30s",
        "-s",
        script.name,
    ]
    out = subprocess.run(command + [f"{base}/v1/picks"], capture_output=True, text=True, check=True).stdout
    os.unlink(script.name)
    line = next(line for line in out.splitlines() if line.startswith("WRKJSON "))
    return json.loads(line.removeprefix("WRKJSON "))


def measure(base: str, batching: bool, concurrency: int, seconds: float, body_file: Path) -> Cell:
    """One table row: a 1 s warm-up, then ``seconds`` of load, with the server's ORT counters around it."""
    with httpx.Client(base_url=base) as admin:
        wrk(base, body_file, concurrency, 1)
        calls0, windows0 = inference_counters(admin)
        result = wrk(base, body_file, concurrency, seconds)
        calls1, windows1 = inference_counters(admin)
    cell = Cell(
        batching,
        concurrency,
        result["requests"] - result["non2xx"],
        result["socket_errors"] + result["non2xx"],
        result["duration_us"] / 1e6,
        result["p50_us"] / 1000,
        result["p99_us"] / 1000,
        calls1 - calls0,
        windows1 - windows0,
    )
    print(f"done: batching {batching} c={concurrency} {cell.throughput:.1f}/s", file=sys.stderr, flush=True)
    return cell


def in_process_rate(body: bytes, seconds: float) -> float:
    """Decode + annotate calls/s on ``body`` in this process, one thread per core (the ceiling for HTTP)."""
    from seispick.models.registry import ModelRegistry
    from seispick.picking.annotate import annotate

    model = ModelRegistry().load()
    threads = len(os.sched_getaffinity(0))

    def work(stop_at: float) -> int:
        done = 0
        while time.perf_counter() < stop_at:
            annotate(obspy.read(io.BytesIO(body), format="MSEED"), model)
            done += 1
        return done

    work(time.perf_counter() + 1)
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(work, [started + seconds] * threads))
    return total / (time.perf_counter() - started)


def bench(levels: list[int], seconds: float, body_file: Path) -> list[Cell]:
    """Both servers run side by side and the cells alternate, so load from elsewhere hits both alike."""
    servers = {}
    try:
        for batching in (True, False):
            port = free_port()
            servers[batching] = (start_server(port, batching), f"http://127.0.0.1:{port}")
        cells = []
        for concurrency in levels:
            for batching in (True, False):
                cells.append(measure(servers[batching][1], batching, concurrency, seconds, body_file))
        return cells
    finally:
        for server, _ in servers.values():
            server.terminate()
            server.wait(20)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds", type=float, default=8.0, help="measured time per cell (after 1 s warm-up)"
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    body = payload()
    print(
        f"seispick HTTP bench: POST /v1/picks, 60 s x 3 channels x 100 Hz miniSEED ({len(body)} bytes), "
        f"{args.seconds:g} s per cell, wrk on the same machine; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        body_file = Path(tmp) / "body.mseed"
        body_file.write_bytes(body)
        cells = bench(args.concurrency, args.seconds, body_file)
    rate = in_process_rate(body, args.seconds)
    print(f"in process (decode + annotate, one thread per core): {rate:.1f} calls/s\n")
    print(
        "| batching | concurrency | requests/s | p50 ms | p99 ms | ORT calls / request | windows / call | errors "
        "| efficiency |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for cell in sorted(cells, key=lambda c: (not c.batching, c.concurrency)):
        cell.in_process = rate
        print(cell.row())


if __name__ == "__main__":
    main()
