"""Write the analyst picks of a QuakeML or SeisComP XML catalogue to the Redis stream the service compares its
pickers with (``streaming.analyst_picks_key``): one entry per P or S pick with a waveform id (``waveform_id``,
``phase``, ``time``; manual picks only when the catalogue has any, as ``seispick evaluate --catalog`` reads it).

    python scripts/analyst_picks_to_redis.py events.xml --redis-url redis://127.0.0.1:6379/0 \\
        --key seispick:picks:analyst

Run it as the analysts' catalogue grows (e.g. from a cron job over an FDSN event service's new events); the
service reads entries added after it started. ``--maxlen`` bounds the stream (approximately, as XADD MAXLEN ~).
"""

from __future__ import annotations

import argparse

import redis

from seispick.events.catalog_evaluation import read_catalog, reference_picks


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("catalog", help="QuakeML or SCML file of events with picks")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--key", default="seispick:picks:analyst", help="streaming.analyst_picks_key")
    parser.add_argument("--maxlen", type=int, default=1_000_000)
    parser.add_argument("--picks", choices=("auto", "manual", "all"), default="auto")
    args = parser.parse_args(argv)
    manual = {"auto": None, "manual": True, "all": False}[args.picks]
    found = reference_picks(read_catalog(args.catalog), manual_only=manual)
    client = redis.Redis.from_url(args.redis_url)
    with client.pipeline(transaction=False) as pipe:
        for pick in sorted(found.picks, key=lambda p: p.time):
            fields = {"waveform_id": pick.waveform_id, "phase": pick.phase, "time": f"{pick.time:.6f}"}
            pipe.xadd(args.key, fields, maxlen=args.maxlen, approximate=True)
        pipe.execute()
    for note in found.notes:
        print(f"note: {note}")
    print(f"wrote {len(found.picks)} analyst picks of {found.n_events} events to {args.key}")


if __name__ == "__main__":
    main()
