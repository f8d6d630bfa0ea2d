"""Offline picking speed: seispick vs SeisBench classify, same weights, overlap and stacking, same data.

10 stations x 1 h x 3 components at 100 Hz (noise with real events pasted in), each side timed over a few
repeats (best of). SeisBench is timed in process (``classify()`` alone: its start-up, imports and file reading
are free); seispick in process (``annotate``), with the OpenVINO backend where installed, and as what a user
runs: the whole ``seispick pick`` process on the same data written to miniSEED files (start-up, reading,
writing the CSV included). Prints a table of station-hours per second and the ratio to SeisBench.
Run by hand:  python bench/offline.py [--stations 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import obspy
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import seisbench.models as sbm  # noqa: E402

from seispick.models.inference import load_model_dir  # noqa: E402
from seispick.models.registry import ModelRegistry  # noqa: E402
from seispick.picking.annotate import annotate  # noqa: E402
from seispick.training.export.builders import import_seisbench  # noqa: E402
from seispick.training.export.convert import state_dict_from_tf  # noqa: E402
from tests.streams import DATA, event_hour  # noqa: E402


def network_stream(n_stations: int) -> obspy.Stream:
    """Stations starting on the window grid of both models (multiples of 15.00 s and 15.01 s since the epoch)."""
    stream = obspy.Stream()
    start = obspy.UTCDateTime(1501 * 1500 * 1000 / 100)  # 1971-06-02T13:00:00Z
    for i in range(n_stations):
        st, _ = event_hour(start, station=f"S{i:03d}", seed=i)
        stream += st
    return stream


def best_of(repeats: int, fn) -> tuple[float, object]:
    best, out = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stations", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    stream = network_stream(args.stations)
    hours = args.stations * 1.0
    sb_model = sbm.PhaseNet().eval()
    sb_model.load_state_dict(state_dict_from_tf(dict(np.load(DATA / "phasenet_original" / "weights.npz"))))
    with tempfile.TemporaryDirectory() as tmp:
        sb_model.save(f"{tmp}/pn", version_str="1")
        import_seisbench(f"{tmp}/pn.pt.v1", f"{tmp}/pn.json.v1", f"{tmp}/onnx", "pn-seisbench-layout")
        ours_same = load_model_dir(f"{tmp}/onnx")
        shipped = ModelRegistry().load("phasenet-original")
        files = Path(tmp) / "mseed"
        files.mkdir()
        for station in {tr.stats.station for tr in stream}:
            stream.select(station=station).write(str(files / f"{station}.mseed"), format="MSEED")

        rows = []
        t_sb, out_sb = best_of(args.repeats, lambda: sb_model.classify(stream, overlap=1500, stacking="avg"))
        rows.append(("SeisBench classify (torch, 3001)", t_sb, len(out_sb.picks)))
        t_same, res = best_of(args.repeats, lambda: annotate(stream, ours_same, batch_size=32))
        rows.append(("seispick, same weights (ONNX, 3001)", t_same, len(res.picks)))
        t_orig, res_orig = best_of(args.repeats, lambda: annotate(stream, shipped, batch_size=32))
        rows.append(("seispick, phasenet-original (3000)", t_orig, len(res_orig.picks)))
        try:
            vino = load_model_dir(f"{tmp}/onnx", backend="openvino")
        except Exception as exc:  # noqa: BLE001 - OpenVINO not installed: the row is left out, and said
            print(f"OpenVINO row left out: {exc}")
        else:
            t_vino, res_vino = best_of(args.repeats, lambda: annotate(stream, vino, batch_size=32))
            rows.append(("seispick, same weights, OpenVINO", t_vino, len(res_vino.picks)))
        command = [
            "seispick",
            "pick",
            str(files),
            "-o",
            f"{tmp}/picks.csv",
            "--model",
            f"{tmp}/onnx",
            "--quiet",
        ]

        def cli_row(name: str, extra: list[str]) -> None:
            t_cli, _ = best_of(
                args.repeats, lambda: subprocess.run(command + extra, check=True, capture_output=True)
            )
            with open(f"{tmp}/picks.csv") as handle:
                cli_picks = sum(1 for row in csv.DictReader(handle) if row["phase"] in ("P", "S"))
            rows.append((name, t_cli, cli_picks))

        cli_row("`seispick pick` process, same weights", [])
        if any(name.endswith("OpenVINO") for name, _, _ in rows):
            cli_row("`seispick pick --backend openvino` process", ["--backend", "openvino"])

    print(
        f"\n{args.stations} stations x 1 h x 3 components at 100 Hz, overlap 1500, avg stacking, "
        f"torch threads {torch.get_num_threads()}\n"
    )
    print(f"| {'run':<38} | {'seconds':>8} | {'station-h/s':>11} | {'vs SeisBench':>12} | {'picks':>5} |")
    print(f"|{'-' * 40}|{'-' * 10}|{'-' * 13}|{'-' * 14}|{'-' * 7}|")
    for name, seconds, n_picks in rows:
        print(
            f"| {name:<38} | {seconds:8.2f} | {hours / seconds:11.1f} | {t_sb / seconds:11.2f}x | {n_picks:5d} |"
        )


if __name__ == "__main__":
    main()
