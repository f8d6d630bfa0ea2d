"""The numbers of miniSEED and its time base, each defined once: the modules of seispick import them here.

Two sampling-rate bounds exist in seispick and they are not the same limit: :data:`MAX_RECORD_SAMPLING_RATE`
is the plausibility check of real-time records (a larger rate means a corrupt header, see
:func:`seispick.miniseed.decode.plausible_rate`); the HTTP API's JSON request bodies have their own, wider
bound beside their other field limits (``seispick.service.api.schemas``).
"""

from __future__ import annotations

NS_PER_S = 1_000_000_000  # times are integer nanoseconds since the epoch throughout
TICK_NS = 100_000  # resolution of the miniSEED 2 BTIME field (100 microseconds)
RECLEN = 512  # the miniSEED 2 record length SeedLink 3 sends and the replay server packs
MAX_RECORD_SAMPLING_RATE = 10_000.0  # Hz; above any seismic channel: a record claiming more is corrupt
