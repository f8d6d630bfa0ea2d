"""Write the bundled demo archive (seispick/service/stream/demo): three stations, 10 continuous minutes with real events.

Real NCEDC event recordings (PhaseNet repository, MIT) from tests/data/real are laid end to end with low
noise in between, per station, and written as STEIM2 miniSEED. `seispick serve --demo` replays them in a loop,
re-stamped to now, through the SeedLink replay server. Run by hand after changing the test data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import obspy

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "tests" / "data" / "real"
OUT = ROOT / "seispick" / "service" / "stream" / "demo"
STATIONS = ["DEMO1", "DEMO2", "DEMO3"]
MINUTES = 10
START = obspy.UTCDateTime(2020, 1, 1)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    n = MINUTES * 60 * 100
    three_component = [
        st for st in (obspy.read(str(p)) for p in sorted(REAL.glob("*.mseed"))) if len(st) == 3
    ]
    for k, station in enumerate(STATIONS):
        events = three_component[k :: len(STATIONS)]
        traces = []
        for comp in "ZNE":
            data = rng.normal(0, 20, n)
            for i, event in enumerate(events[: MINUTES - 1]):
                src = event.select(component=comp)[0].data.astype(np.float64)
                src = src / (np.abs(src).max() or 1.0) * 4000
                offset = (i * 60 + 10 + 7 * k) * 100
                data[offset : offset + len(src)] += src[: n - offset]
            band = "HH"
            traces.append(
                obspy.Trace(
                    np.round(data).astype(np.int32),
                    header={
                        "network": "SP",
                        "station": station,
                        "channel": f"{band}{comp}",
                        "sampling_rate": 100.0,
                        "starttime": START,
                    },
                )
            )
        obspy.Stream(traces).write(
            str(OUT / f"SP.{station}.mseed"), format="MSEED", encoding="STEIM2", reclen=512
        )
    (OUT / "README.md").write_text(
        "Demo archive for `seispick serve --demo`: 3 stations (network SP), 10 minutes at 100 Hz, real NCEDC\n"
        "event recordings (PhaseNet repository dataset, MIT licence) laid end to end in noise.\n"
        "Written by scripts/make_demo_data.py.\n"
    )


if __name__ == "__main__":
    main()
