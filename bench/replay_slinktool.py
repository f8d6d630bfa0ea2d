"""`seispick replay` against EarthScope's slinktool (libslink), SeedLink 3.1 and 4.0, on real data.

slinktool is not shipped: build it from its public source (github.com/EarthScope/slinktool, `make`) and
pass its path (5.x: SeedLink 3.1 with -3 and 4.0 with -4; 4.x: 3.1 only). Two checks per protocol,
every client asking for all archive stations plus one the archive lacks (XX_NONE):

1. Archive (speed 0, 20 real miniSEED files): a time window (-ts/-te, -tw) and a dial-up fetch from the first
   sequence (-d with a state file at sequence 0). Every record the server holds must arrive exactly once,
   byte-identical, and the decoded samples must equal the source files.
2. Live (speed 1, real 60-s traces of 4 stations on a common start): a client with a state file is
   stopped (SIGTERM) and restarted --restarts times at random moments while streaming, so every restart
   resumes caught up with `DATA seq+1 [time]`; then it runs to the end. No record may arrive twice or be
   missing. Both protocol versions run at once against one server.

Prints one table per check. Run by hand:  python bench/replay_slinktool.py /tmp/slinktool/slinktool
"""

from __future__ import annotations

import argparse
import collections
import io
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import obspy

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from seispick.miniseed.pack import RECLEN, load_records  # noqa: E402

REAL = ROOT / "tests" / "data" / "real"
SERVICE = ROOT / "tests" / "data" / "service"
MISSING = "XX_NONE"
LIVE_FILES = ("109C.TA_20060723155859_EV", "BG_AL2_2009091706111844", "BG_LCK_2012031705445526",
              "BK_BKS_2017071510492061")  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_replay(folder: Path, port: int, speed: float, log: Path) -> subprocess.Popen:
    command = [
        "seispick",
        "replay",
        str(folder),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--speed",
        str(speed),
    ]
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            if process.poll() is not None:
                raise SystemExit(f"seispick replay exited: {log.read_text()[-2000:]}") from None
            time.sleep(0.2)
    process.kill()
    raise SystemExit("seispick replay did not start listening")


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def read_records(path: Path) -> list[bytes]:
    data = path.read_bytes() if path.exists() else b""
    if len(data) % RECLEN:
        raise SystemExit(f"{path}: {len(data)} bytes is not a whole number of {RECLEN}-byte records")
    return [data[i : i + RECLEN] for i in range(0, len(data), RECLEN)]


def station_list(records: list) -> str:
    return ",".join(sorted({f"{r.network}_{r.station}" for r in records}) + [MISSING])


class Slinktool:
    """How one slinktool version is driven: 5.x speaks 3.1 (-3) and 4.0 (-4); 4.x speaks 3.1 only."""

    def __init__(self, path: str) -> None:
        self.path = path
        out = subprocess.run([path, "-V"], capture_output=True, text=True)
        self.version = (out.stdout + out.stderr).strip().split()[-1]
        self.legacy = int(self.version.split(".")[0]) < 5
        self.protocols = ("3",) if self.legacy else ("3", "4")

    def protocol_args(self, proto: str) -> list[str]:
        return [] if self.legacy else [f"-{proto}"]

    def window_args(self) -> list[str]:
        if self.legacy:
            return ["-tw", "1980,01,01,00,00,00:2030,01,01,00,00,00"]
        return ["-ts", "1980-01-01T00:00:00", "-te", "2030-01-01T00:00:00"]

    def seed_state(self, path: Path, streams: str) -> None:
        """A state file at sequence 0 for every station: libslink then asks for DATA/FETCH 1 (the first)."""
        stations = streams.split(",")
        if self.legacy:
            path.write_text("".join(f"{s.replace('_', ' ', 1)} 0\n" for s in stations))
        else:
            path.write_text("#V2\n" + "".join(f"{s} 0\n" for s in stations))


def compare(expected: list[bytes], got: list[bytes]) -> dict[str, int]:
    want, have = collections.Counter(expected), collections.Counter(got)
    return {
        "expected": len(expected),
        "received": len(got),
        "duplicated": sum(n - 1 for n in have.values() if n > 1),
        "missing": sum((want - have).values()),
        "unexpected": sum(n for record, n in have.items() if record not in want),  # not in the archive
    }


def same_samples(files: list[Path], got: list[bytes]) -> bool:
    """Decoded received records equal the source files, sample for sample, segment by segment."""

    def segments(stream: obspy.Stream) -> list[tuple[str, int, np.ndarray]]:
        stream.merge(method=-1)
        return sorted((t.id, t.stats.starttime.ns, t.data) for t in stream.split())

    source = obspy.Stream()
    for path in files:
        source += obspy.read(str(path))
    mine = segments(obspy.read(io.BytesIO(b"".join(got)))) if got else []
    theirs = segments(source)
    return len(mine) == len(theirs) and all(
        a[:2] == b[:2] and np.array_equal(a[2], b[2]) for a, b in zip(mine, theirs)
    )


def run_slinktool(slinktool: Slinktool, args: list[str], port: int, timeout: float, log: Path) -> int:
    command = [slinktool.path, *args, "-nd", "1", "-nt", "20", f"127.0.0.1:{port}"]
    with log.open("a") as out:
        out.write("$ " + " ".join(command) + "\n")
        out.flush()
        try:
            return subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            return -1


def archive_check(slinktool: Slinktool, work: Path) -> list[dict]:
    folder = work / "archive"
    folder.mkdir()
    files = sorted(REAL.glob("*.mseed"))[:18] + sorted(SERVICE.glob("*.mseed"))
    for path in files:
        shutil.copy(path, folder)
    records = load_records([folder])
    expected = [r.data for r in records]
    streams = station_list(records)
    port = free_port()
    server = start_replay(folder, port, 0, work / "archive-server.log")
    rows = []
    try:
        for proto in slinktool.protocols:
            for mode in ("window", "dial-up"):
                out = work / f"archive-v{proto}-{mode}.mseed"
                args = [*slinktool.protocol_args(proto), "-S", streams, "-o", str(out)]
                if mode == "window":
                    args += slinktool.window_args()
                else:
                    state = work / f"archive-v{proto}.state"
                    slinktool.seed_state(state, streams)
                    args += ["-d", "-x", str(state)]
                rc = run_slinktool(slinktool, args, port, 120, work / "slinktool.log")
                got = read_records(out)
                rows.append({"check": f"archive v{proto} {mode}", "rc": rc, **compare(expected, got),
                             "samples": "identical" if same_samples(files, got) else "DIFFER"})  # fmt: skip
    finally:
        stop(server)
    return rows


def live_archive(folder: Path) -> None:
    """Real 60-s traces of four stations, moved to one common start so they stream side by side."""
    start = obspy.UTCDateTime(2024, 1, 1)
    for name in LIVE_FILES:
        stream = obspy.read(str(REAL / f"{name}.mseed"))
        for trace in stream:
            trace.stats.starttime = start
        stream.write(str(folder / f"{name}.mseed"), format="MSEED", reclen=4096)


def live_check(slinktool: Slinktool, work: Path, restarts: int, seed: int) -> list[dict]:
    folder = work / "live"
    folder.mkdir()
    live_archive(folder)
    records = load_records([folder])
    duration = (max(r.end_ns for r in records) - min(r.start_ns for r in records)) / 1e9
    expected = [r.data for r in records]
    streams = station_list(records)
    port = free_port()
    server = start_replay(folder, port, 1.0, work / "live-server.log")
    rng = random.Random(seed)
    clients: dict[str, dict] = {}
    for proto in slinktool.protocols:
        state = work / f"live-v{proto}.state"
        slinktool.seed_state(state, streams)
        # restart moments spread over the stream, random within their slot
        slots = np.linspace(1.0, duration - 4.0, restarts + 1)
        moments = [rng.uniform(a, b) for a, b in zip(slots[:-1], slots[1:])]
        clients[proto] = {"state": state, "moments": moments, "runs": 0, "outputs": [], "process": None}
    began = time.monotonic()
    log = work / "slinktool-live.log"

    def launch(proto: str) -> None:
        client = clients[proto]
        out = work / f"live-v{proto}-{client['runs']:02d}.mseed"
        client["outputs"].append(out)
        client["runs"] += 1
        args = [slinktool.path, *slinktool.protocol_args(proto), "-v", "-k", "2", "-nd", "1", "-nt", "20", "-S", streams,
                "-x", str(client["state"]), "-o", str(out), f"127.0.0.1:{port}"]  # fmt: skip
        with log.open("a") as handle:
            handle.write("$ " + " ".join(args) + "\n")
            handle.flush()
            client["process"] = subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT)

    try:
        for proto in clients:
            launch(proto)
        while any(c["moments"] for c in clients.values()):
            now = time.monotonic() - began
            for proto, client in clients.items():
                if client["moments"] and now >= client["moments"][0]:
                    client["moments"].pop(0)
                    client["process"].send_signal(signal.SIGTERM)  # slinktool saves its state and exits
                    client["process"].wait(10)
                    launch(proto)
            time.sleep(0.05)
        time.sleep(max(duration - (time.monotonic() - began), 0) + 5)  # the last run sees the end
    finally:
        for client in clients.values():
            if client["process"] is not None and client["process"].poll() is None:
                client["process"].send_signal(signal.SIGTERM)
                client["process"].wait(10)
        stop(server)
    text = log.read_text()
    rows = []
    for proto, client in clients.items():
        got = [record for out in client["outputs"] for record in read_records(out)]
        rows.append({"check": f"live v{proto}", "runs": client["runs"], **compare(expected, got),
                     "resumes": text.count("resuming data from") if proto == "3" else "-"})  # fmt: skip
    return rows


def print_table(rows: list[dict]) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    widths = {c: max(len(c), *(len(str(row.get(c, ""))) for row in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns))
    print()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("slinktool", help="path to a slinktool binary built from its public source")
    parser.add_argument("--restarts", type=int, default=12, help="client restarts during live streaming")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, received data)")
    args = parser.parse_args()
    slinktool = Slinktool(args.slinktool)
    print(f"slinktool {slinktool.version}: SeedLink {' and '.join(f'v{p}' for p in slinktool.protocols)}\n")
    work = Path(tempfile.mkdtemp(prefix="replay-slinktool-"))
    try:
        print_table(archive_check(slinktool, work))
        print_table(live_check(slinktool, work, args.restarts, args.seed))
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
