"""Stream builders and paths of the test data, shared by the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import obspy

DATA = Path(__file__).parent / "data"
REAL = DATA / "real"


def noise_stream(
    start: obspy.UTCDateTime,
    seconds: float,
    station: str = "AAA",
    rate: float = 100.0,
    components: str = "ZNE",
    seed: int = 0,
    network: str = "XX",
    band: str = "HH",
) -> obspy.Stream:
    """Coloured noise with slowly varying amplitude on the given components."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * rate))
    envelope = 1 + 3 * np.sin(np.arange(n) / (5 * rate)) ** 8
    return obspy.Stream(
        [
            obspy.Trace(
                (np.cumsum(rng.standard_normal(n)) * 0.05 + rng.standard_normal(n) * envelope).astype(
                    np.float32
                ),
                header={
                    "network": network,
                    "station": station,
                    "channel": f"{band}{c}",
                    "sampling_rate": rate,
                    "starttime": start,
                },
            )
            for c in components
        ]
    )


def event_hour(start: obspy.UTCDateTime, station: str = "AAA", seed: int = 0) -> tuple[obspy.Stream, list]:
    """One hour of noise at 100 Hz with real events from tests/data/real pasted in; returns stream and P times."""
    stream = noise_stream(start, 3600.0, station=station, seed=seed)
    files = sorted(REAL.glob("B*.mseed"))  # 3-component NCEDC traces (BG/BK), P at 20 s
    rng = np.random.default_rng(seed)
    p_times = []
    for k, offset in enumerate(range(120, 3500, 300)):
        event = obspy.read(str(files[(k + seed) % len(files)]))
        for tr in stream:
            src = event.select(component=tr.stats.channel[-1])
            if not src:
                continue
            data = src[0].data.astype(np.float64)
            data = data / (np.abs(data).max() or 1.0) * 40 * rng.uniform(0.5, 2.0)
            i = int(offset * 100)
            tr.data[i : i + len(data)] += data.astype(np.float32)
        p_times.append(start + offset + 20.0)
    return stream, p_times


def write_station_archive(
    folder: Path, start: obspy.UTCDateTime, seconds: float, stations: dict[str, str], seed: int, step: int
) -> obspy.Stream:
    """Random-walk int32 traces (HHZ/HHN/HHE, 100 Hz) per station (code -> location), one miniSEED file each."""
    rng = np.random.default_rng(seed)
    original = obspy.Stream()
    for station, location in stations.items():
        traces = obspy.Stream()
        for channel in ("HHZ", "HHN", "HHE"):
            data = np.cumsum(rng.integers(-step, step, int(seconds * 100))).astype(np.int32)
            header = dict(network="XX", station=station, location=location, channel=channel,
                          sampling_rate=100.0, starttime=start)  # fmt: skip
            traces += obspy.Trace(data=data, header=header)
        traces.write(str(folder / f"{station}.mseed"), format="MSEED", reclen=4096)
        original += traces
    return original
