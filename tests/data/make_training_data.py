"""Rebuild the small training-data fixtures under tests/data from /work/shared/data (run by hand, not by tests).

- ncedc/: 4 PhaseNet npz files (4 stations; 3-component and vertical-only) + waveform.csv rows + LICENSE.
  Arrays, keys and dtypes as upstream; only the npz container is compressed to keep the folder small.
- stead/: 4 STEAD traces of TA.109C (2006-2007) in the same HDF5 layout (earthquake/local/<trace_name>, same
  attributes, gzip) + their metadata.csv lines + LICENSE.
- seisbench/: 4 synthetic traces written by SeisBench's own WaveformDataWriter (bucketed, "bucket0$i,:3,:n").
"""

import shutil
import sys
from pathlib import Path

import h5py
import numpy as np

SHARED = Path("/work/shared/data")
HERE = Path(__file__).resolve().parent
NCEDC = [
    "NC_MEM_2017100709282692.npz",
    "NC_MTU_2014071807051236_02.npz",
    "NC_GDXB_2008072815280414.npz",
    "NN_OMMB_2012062718271748.npz",
]
STEAD = [
    "109C.TA_20060723155859_EV",
    "109C.TA_20070109140205_EV",
    "109C.TA_20070608061311_EV",
    "109C.TA_20070805160423_EV",
]


def ncedc() -> None:
    out = HERE / "ncedc"
    (out / "waveform_train").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SHARED / "ncedc_phasenet/LICENSE", out / "LICENSE")
    lines = (SHARED / "ncedc_phasenet/waveform.csv").read_text().splitlines()
    keep = [lines[0]] + [line for line in lines[1:] if line.split(",")[0] in NCEDC]
    (out / "waveform.csv").write_text("\n".join(keep) + "\n")
    for name in NCEDC:
        with np.load(SHARED / "ncedc_phasenet/waveform_train" / name) as src:
            np.savez_compressed(out / "waveform_train" / name, **{k: src[k] for k in src.files})


def stead() -> None:
    out = HERE / "stead"
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SHARED / "stead_ta109c/LICENSE", out / "LICENSE")
    lines = (SHARED / "stead_ta109c/metadata.csv").read_text().splitlines()
    keep = [lines[0]] + [line for line in lines[1:] if line.split(",")[-1] in STEAD]
    (out / "metadata.csv").write_text("\n".join(keep) + "\n")
    with h5py.File(SHARED / "stead_ta109c/waveforms.hdf5") as src, h5py.File(out / "waveforms.hdf5", "w") as dst:
        group = dst.create_group("earthquake/local")
        for name in STEAD:
            ds = src["earthquake/local"][name]
            new = group.create_dataset(name, data=ds[()], compression="gzip", compression_opts=9, shuffle=True)
            for key, value in ds.attrs.items():
                new.attrs[key] = value


def seisbench() -> None:
    import seisbench.data as sbd

    sys.path.insert(0, str(HERE.parents[1]))
    from seispick.training.data.synthetic_waveforms import SyntheticConfig, synthetic_event  # noqa: E402

    out = HERE / "seisbench"
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    with sbd.WaveformDataWriter(out / "metadata.csv", out / "waveforms.hdf5") as writer:
        writer.data_format = {"dimension_order": "CW", "component_order": "ZNE", "sampling_rate": 100,
                              "measurement": "velocity", "unit": "counts", "instrument_response": "not restituted"}
        for i, n in enumerate((1000, 1200, 800, 1000)):
            s = synthetic_event(rng, SyntheticConfig(n_samples=n, p_window=(0.1, 0.3), distance_km=(5, 30)))
            meta = {
                "trace_name": f"synthetic_{i}",
                "station_network_code": "XX",
                "station_code": f"S{i % 3}",
                "trace_start_time": f"2020-01-0{i + 1}T00:00:00.000000Z",
                "source_id": f"ev{i}",
                "source_origin_time": f"2020-01-0{i + 1}T00:00:00.000000Z",
                "source_latitude_deg": 33.0 + i / 10,
                "source_longitude_deg": -117.0,
                "trace_P_arrival_sample": s.p_index,
                "trace_S_arrival_sample": s.s_index,
                "trace_sampling_rate_hz": 100,
            }
            if i == 2:  # an extra P-type phase column: the reader must take the earliest P-type arrival
                meta["trace_Pg_arrival_sample"] = s.p_index + 5
            writer.add_trace(meta, s.waveform.round(4))


if __name__ == "__main__":
    ncedc()
    stead()
    seisbench()
