"""Write the small real-data test set (tests/data/real) from ../shared/data. Run by hand; tests never read shared/.

NCEDC traces (PhaseNet repository, MIT) are cut to 60 s with P at 20 s; TA.109C traces (STEAD subset from the
EQTransformer repository, MIT / CC BY 4.0) are kept whole. Each is written as FLOAT32 miniSEED with a chosen
start time, and the analyst picks go to picks.csv (trace_id, phase, time).
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import h5py
import numpy as np
import obspy

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "real"
N_NCEDC, N_STEAD = 24, 8


def write(traces: list[obspy.Trace], name: str) -> None:
    obspy.Stream(traces).write(str(OUT / f"{name}.mseed"), format="MSEED", encoding="FLOAT32", reclen=4096)


def ncedc(rows: list[dict], picks: list[tuple[str, str, str]]) -> None:
    for row in rows:
        data = np.load(SHARED / "ncedc_phasenet" / "waveform_train" / row["fname"])["data"]
        net, sta, stamp = row["fname"].split("_")[:3]
        start = obspy.UTCDateTime.strptime(stamp[:14], "%Y%m%d%H%M%S") + int(stamp[14:16]) / 100 + 10.0
        channels = row["channels"].split("_")
        columns = {"E": 0, "N": 1, "Z": 2}
        traces = [
            obspy.Trace(
                data[1000:7000, columns[ch[-1]]].astype(np.float32),
                header={
                    "network": net,
                    "station": sta,
                    "channel": ch,
                    "sampling_rate": 100.0,
                    "starttime": start,
                },
            )
            for ch in channels
        ]
        write(traces, row["fname"].removesuffix(".npz"))
        trace_id = f"{net}.{sta}..{channels[0][:2]}"
        picks.append((trace_id, "P", str(start + (int(row["itp"]) - 1000) / 100)))
        picks.append((trace_id, "S", str(start + (int(row["its"]) - 1000) / 100)))


def stead(picks: list[tuple[str, str, str]]) -> None:
    with h5py.File(SHARED / "stead_ta109c" / "waveforms.hdf5") as h5:
        group = h5["earthquake/local"]
        for name in sorted(group)[:N_STEAD]:
            ds = group[name]
            start = obspy.UTCDateTime(ds.attrs["trace_start_time"])
            traces = [
                obspy.Trace(
                    ds[:, i].astype(np.float32),
                    header={
                        "network": "TA",
                        "station": "109C",
                        "channel": f"BH{c}",
                        "sampling_rate": 100.0,
                        "starttime": start,
                    },
                )
                for i, c in enumerate("ENZ")
            ]
            write(traces, name)
            picks.append(("TA.109C..BH", "P", str(start + float(ds.attrs["p_arrival_sample"]) / 100)))
            picks.append(("TA.109C..BH", "S", str(start + float(ds.attrs["s_arrival_sample"]) / 100)))


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with open(SHARED / "ncedc_phasenet" / "waveform.csv") as handle:
        rows = list(csv.DictReader(handle))
    rng = np.random.default_rng(1)
    chosen = [rows[i] for i in sorted(rng.choice(len(rows), N_NCEDC, replace=False))]
    picks: list[tuple[str, str, str]] = []
    ncedc(chosen, picks)
    stead(picks)
    with open(OUT / "picks.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["trace_id", "phase", "time"])
        writer.writerows(picks)
    shutil.copyfile(SHARED / "ncedc_phasenet" / "LICENSE", OUT / "LICENSE.ncedc_phasenet")
    shutil.copyfile(SHARED / "stead_ta109c" / "LICENSE", OUT / "LICENSE.stead_ta109c")
    (OUT / "README.md").write_text(
        "Real labelled traces for tests, written by scripts/make_test_data.py:\n"
        f"- {N_NCEDC} NCEDC traces from the PhaseNet repository's dataset (MIT, LICENSE.ncedc_phasenet), "
        "cut to 60 s with P at 20 s;\n"
        f"- {N_STEAD} TA.109C traces from the STEAD subset in the EQTransformer repository "
        "(MIT; STEAD CC BY 4.0, LICENSE.stead_ta109c).\n"
        "picks.csv holds the analyst P and S times.\n"
    )


if __name__ == "__main__":
    main()
