"""SeedLink 4.0 packet framing: the ``SE`` header both ends of a v4 connection read and write.

A v4 packet is a 17-byte fixed header, the station ID and the payload (SeedLink 4.0 specification;
libslink ``receive_header``, ringserver ``SendPacket``)::

    offset  size  field
    0       2     signature b"SE"
    2       1     payload format: '2' miniSEED 2, '3' miniSEED 3, 'J' JSON, 'X' XML
    3       1     payload subformat: 'D' data (miniSEED), 'I' INFO or 'E' ERROR (JSON)
    4       4     payload length, unsigned little-endian
    8       8     sequence number, unsigned little-endian
    16      1     station ID length N
    17      N     station ID, ASCII "NET_STA" (empty for INFO and ERROR packets)

Reading from a stream: read ``HEADER_LEN`` bytes, then ``station_id_length(fixed)`` more, then hand
both to :func:`parse_header`, then read ``header.payload_length`` payload bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from seispick.seedlink.protocol import SEQ_MODULUS_V4

SIGNATURE = b"SE"
HEADER_LEN = 17  # fixed part, without the station ID
MAX_STATION_ID = 255  # one length byte (libslink stores at most 21 characters)
FORMAT_MSEED2 = "2"
FORMAT_MSEED3 = "3"
FORMAT_JSON = "J"
FORMAT_XML = "X"
SUBFORMAT_DATA = "D"
SUBFORMAT_INFO = "I"
SUBFORMAT_ERROR = "E"
INFO_SEQUENCE = 0  # ringserver numbers INFO/ERROR packets 0 (they are not part of any station's stream)
UNSET_SEQUENCE = SEQ_MODULUS_V4 - 1  # libslink's SL_UNSETSEQUENCE
_FIXED = struct.Struct("<2sccIQB")


@dataclass(frozen=True, slots=True)
class V4Header:
    """A parsed ``SE`` header."""

    format: str
    subformat: str
    payload_length: int
    sequence: int
    station_id: str

    @property
    def length(self) -> int:
        """Header bytes on the wire: fixed part plus station ID."""
        return HEADER_LEN + len(self.station_id)


def station_id(network: str, station: str) -> str:
    """The v4 station ID of a network and station: ``NET_STA``."""
    return f"{network}_{station}"


def pack_header(
    seq: int, station_id: str, payload_length: int, fmt: str = FORMAT_MSEED2, subformat: str = SUBFORMAT_DATA
) -> bytes:
    """The ``SE`` header for a payload of ``payload_length`` bytes."""
    sid = station_id.encode("ascii")
    if len(sid) > MAX_STATION_ID:
        raise ValueError(f"station ID longer than {MAX_STATION_ID} bytes: {station_id!r}")
    if len(fmt) != 1 or len(subformat) != 1:
        raise ValueError("format and subformat are single characters")
    if not 0 <= seq < SEQ_MODULUS_V4 or not 0 <= payload_length < 1 << 32:
        raise ValueError("sequence or payload length out of range")
    return _FIXED.pack(SIGNATURE, fmt.encode(), subformat.encode(), payload_length, seq, len(sid)) + sid


def pack_packet(
    seq: int, station_id: str, payload: bytes, fmt: str = FORMAT_MSEED2, subformat: str = SUBFORMAT_DATA
) -> bytes:
    """A whole v4 packet: header plus ``payload``."""
    return pack_header(seq, station_id, len(payload), fmt, subformat) + payload


def station_id_length(fixed: bytes) -> int:
    """Station ID bytes that follow a fixed header (the first ``HEADER_LEN`` bytes of a packet)."""
    if len(fixed) < HEADER_LEN:
        raise ValueError(f"a SeedLink 4 header needs {HEADER_LEN} bytes, got {len(fixed)}")
    return fixed[HEADER_LEN - 1]


def parse_header(data: bytes) -> V4Header:
    """Parse the header at the start of ``data`` (fixed part and station ID; the payload may follow).

    Raises ``ValueError`` for a wrong signature or when ``data`` is shorter than the header.
    """
    if data[:2] != SIGNATURE:
        raise ValueError(f"not a SeedLink 4 packet: signature {bytes(data[:2])!r}")
    sid_len = station_id_length(data)
    if len(data) < HEADER_LEN + sid_len:
        raise ValueError(f"SeedLink 4 header truncated: station ID needs {sid_len} bytes")
    _, fmt, subformat, length, seq, _ = _FIXED.unpack_from(data)
    sid = bytes(data[HEADER_LEN : HEADER_LEN + sid_len]).decode("ascii", "replace")
    return V4Header(fmt.decode("ascii", "replace"), subformat.decode("ascii", "replace"), length, seq, sid)
