"""miniSEED 3 payloads for SeedLink 4 clients that ask for them (``SELECT pattern:3``).

The replay keeps miniSEED 2 records; a stream selected with the ``3`` filter is converted record by
record with libmseed (pymseed): same source ID, start time, samples and encoding, miniSEED 3 header.
"""

from __future__ import annotations

from functools import lru_cache

import pymseed

MSEED3_RECLEN = 4096  # upper bound: libmseed writes each 512-byte record's samples as one shorter record


@lru_cache(maxsize=8192)
def to_mseed3(record: bytes) -> bytes:
    """The miniSEED 3 form of one miniSEED 2 record (a client-independent, cached conversion)."""
    parsed = pymseed.MS3Record.parse(record, unpack_data=True)
    parsed.formatversion = 3
    parsed.reclen = MSEED3_RECLEN
    out = list(parsed.generate())
    if len(out) != 1:
        raise ValueError(f"miniSEED 3 conversion gave {len(out)} records for one")
    return out[0]
