"""Write a pick table (CSV: trace_id,phase,time, as tests/data/real/picks.csv) as a QuakeML catalogue of manual
picks, so that `seispick evaluate --catalog` can score models against it (README "Choosing a model").

Picks of one trace within --gap seconds of each other form one event (no origin: only picks are needed).

    python scripts/picks_to_quakeml.py tests/data/real/picks.csv -o real-events.xml
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from obspy import UTCDateTime
from obspy.core.event import Catalog, Event, Pick, WaveformStreamID


def catalog_from_rows(rows: list[dict], gap: float = 120.0) -> Catalog:
    """One event per trace and run of picks less than ``gap`` seconds apart; P on the Z channel, S on E
    (channel codes: the trace id's band and instrument + component)."""
    rows = sorted(rows, key=lambda r: (r["trace_id"], UTCDateTime(r["time"])))
    catalog, last, event = Catalog(), None, None
    for r in rows:
        time = UTCDateTime(r["time"])
        if event is None or last is None or last[0] != r["trace_id"] or time - last[1] > gap:
            event = Event()
            catalog.append(event)
        net, sta, loc, code = (r["trace_id"].split(".") + ["", "", "", ""])[:4]
        channel = code + ("Z" if r["phase"].upper().startswith("P") else "E") if len(code) == 2 else code
        event.picks.append(
            Pick(
                time=time,
                phase_hint=r["phase"],
                evaluation_mode="manual",
                waveform_id=WaveformStreamID(net, sta, loc, channel),
            )
        )
        last = (r["trace_id"], time)
    catalog.events.sort(key=lambda e: min(p.time for p in e.picks))
    return catalog


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("picks", type=Path, help="CSV with columns trace_id, phase, time")
    parser.add_argument("-o", "--out", type=Path, required=True, help="QuakeML file to write")
    parser.add_argument("--gap", type=float, default=120.0, help="seconds between picks of separate events")
    args = parser.parse_args()
    with open(args.picks) as handle:
        rows = list(csv.DictReader(handle))
    catalog = catalog_from_rows(rows, args.gap)
    catalog.write(str(args.out), format="QUAKEML")
    print(f"wrote {args.out}: {len(catalog)} events, {len(rows)} picks")


if __name__ == "__main__":
    main()
