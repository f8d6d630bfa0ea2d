"""HTTP benchmark of ``seispick serve``: requests/s and p50/p99 latency with micro-batching on and off.

Starts the service under uvicorn in a subprocess (so the load generator does not share its interpreter),
POSTs 60 s of 3-component 100 Hz miniSEED (a real event from tests/data/service) at several concurrency
levels for a fixed time each, and prints a Markdown table. The client runs on the same machine.

    python bench/http_api.py                      # concurrency 1, 8, 32; batching on and off; ~1.5 min
    python bench/http_api.py --seconds 5 --concurrency 1 4
"""

from __future__ import annotations

import sys

# Run as a script, this folder is sys.path[0], where this file would shadow the standard library's ``http``;
# the script needs nothing from that folder.
sys.path.pop(0)

import argparse
import asyncio
import io
import os
import platform
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
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
    latencies: np.ndarray
    calls: float
    windows: float

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def row(self) -> str:
        p50, p99 = (np.percentile(self.latencies, q) * 1000 for q in (50, 99))
        batch = self.windows / self.calls if self.calls else float("nan")
        return (
            f"| {'on' if self.batching else 'off'} | {self.concurrency} | {self.throughput:.1f} | {p50:.0f} | "
            f"{p99:.0f} | {self.calls / self.requests:.2f} | {batch:.1f} | {self.errors} |"
        )


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


async def load(base: str, body: bytes, concurrency: int, seconds: float) -> tuple[list[float], int, float]:
    """``concurrency`` clients posting back to back for ``seconds``: latencies of the 200s, errors, time."""
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:

        async def worker(stop_at: float) -> None:
            nonlocal errors
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                try:
                    response = await client.post("/v1/picks", content=body, headers={"content-type": MSEED})
                except httpx.TransportError as error:
                    print(f"transport error: {error!r}", file=sys.stderr)
                    errors += 1
                    continue
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(started + seconds) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return latencies, errors, elapsed


def measure(base: str, batching: bool, concurrency: int, seconds: float, body: bytes) -> Cell:
    """One table row: a 1 s warm-up, then ``seconds`` of load, with the server's ORT counters around it."""
    with httpx.Client(base_url=base) as admin:
        asyncio.run(load(base, body, concurrency, 1.0))
        calls0, windows0 = inference_counters(admin)
        latencies, errors, elapsed = asyncio.run(load(base, body, concurrency, seconds))
        calls1, windows1 = inference_counters(admin)
    cell = Cell(
        batching,
        concurrency,
        len(latencies),
        errors,
        elapsed,
        np.asarray(latencies),
        calls1 - calls0,
        windows1 - windows0,
    )
    print(f"done: {cell.row()}", file=sys.stderr, flush=True)
    return cell


def bench(levels: list[int], seconds: float, body: bytes) -> list[Cell]:
    """Both servers run side by side and the cells alternate, so load from elsewhere hits both alike."""
    servers = {}
    try:
        for batching in (True, False):
            port = free_port()
            servers[batching] = (start_server(port, batching), f"http://127.0.0.1:{port}")
        cells = []
        for concurrency in levels:
            for batching in (True, False):
                cells.append(measure(servers[batching][1], batching, concurrency, seconds, body))
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
    body = payload()
    print(
        f"seispick HTTP bench: POST /v1/picks, 60 s x 3 channels x 100 Hz miniSEED ({len(body)} bytes), "
        f"{args.seconds:g} s per cell; {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        "client on the same machine\n"
    )
    print(
        "| batching | concurrency | requests/s | p50 ms | p99 ms | ORT calls / request | windows / call | errors |"
    )
    print("|---|---|---|---|---|---|---|---|")
    cells = bench(args.concurrency, args.seconds, body)
    for cell in sorted(cells, key=lambda c: (not c.batching, c.concurrency)):
        print(cell.row())


if __name__ == "__main__":
    main()
