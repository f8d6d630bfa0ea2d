"""``seispick pick DIR --plot``: peak memory and time for few vs many recordings, with and without the plot.

Writes N synthetic recordings (one instrument each: 3 components of noise at 100 Hz, ``--seconds`` long) as
miniSEED files in a temporary folder and runs the whole ``seispick pick DIR -q -o picks.csv`` process on them,
without and with ``--plot picks.png``, in a fresh process each time. Prints per N the wall time, the peak RSS
(the child's ``ru_maxrss``), the pages written and whether matplotlib warned about open figures. The plot's
peak should not grow with N: pages are drawn, saved and closed one at a time.
Run by hand:  python bench/plot_memory.py [--counts 10 200] [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import obspy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.streams import noise_stream  # noqa: E402

# Runs one command and prints its wall time, peak RSS (KiB on Linux) and stderr as JSON.
MEASURE = """
import json, resource, subprocess, sys, time
t0 = time.perf_counter()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
wall = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"rc": done.returncode, "wall_s": wall, "peak_kib": peak, "stderr": done.stderr}))
"""


def write_recordings(folder: Path, count: int, seconds: float) -> None:
    start = obspy.UTCDateTime("2026-03-01T08:00:00")
    for i in range(count):
        stream = noise_stream(start + 7 * i, seconds, station=f"S{i:03d}", seed=i)
        stream.write(str(folder / f"S{i:03d}.mseed"), format="MSEED")


def measure(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-c", MEASURE, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--counts", type=int, nargs="+", default=[10, 200])
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    print(f"{'recordings':>10} {'plot':>5} {'wall s':>7} {'peak MB':>8} {'pages':>5}  warning")
    for count in args.counts:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "in"
            folder.mkdir()
            write_recordings(folder, count, args.seconds)
            base = [sys.executable, "-m", "seispick.cli.main", "pick", str(folder), "-q"]
            for plot in (False, True):
                extra = ["--plot", str(Path(tmp) / "picks.png")] if plot else []
                run = measure(base + ["-o", str(Path(tmp) / "picks.csv"), *extra])
                if run["rc"] != 0:
                    raise SystemExit(f"seispick pick failed:\n{run['stderr']}")
                pages = len(list(Path(tmp).glob("picks*.png")))
                warned = "More than 20 figures" in run["stderr"]
                print(
                    f"{count:>10} {'yes' if plot else 'no':>5} {run['wall_s']:>7.1f} "
                    f"{run['peak_kib'] / 1024:>8.0f} {pages if plot else '-':>5}  "
                    f"{'too many open figures' if warned else '-'}"
                )


if __name__ == "__main__":
    main()
