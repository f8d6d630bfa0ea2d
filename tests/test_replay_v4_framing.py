"""SeedLink 4 ``SE`` packet framing (seispick.seedlink.packet_v4) against the byte layout of the specification."""

from __future__ import annotations

import pytest

from seispick.seedlink import packet_v4 as v4


def test_packet_layout_matches_the_specification() -> None:
    payload = b"x" * 512
    packet = v4.pack_packet(0x0102030405, "IU_ANMO", payload)
    # "SE", format '2', subformat 'D', uint32 LE length, uint64 LE sequence, uint8 id length, id, payload
    expected = (
        b"SE2D"
        + (512).to_bytes(4, "little")
        + (0x0102030405).to_bytes(8, "little")
        + b"\x07IU_ANMO"
        + payload
    )
    assert packet == expected
    assert v4.HEADER_LEN == 17


def test_parse_round_trip_and_streaming_read() -> None:
    packet = v4.pack_packet(77, "XX_ABC", b'{"a":1}', fmt="J", subformat="I")
    fixed = packet[: v4.HEADER_LEN]
    n = v4.station_id_length(fixed)
    header = v4.parse_header(packet[: v4.HEADER_LEN + n])
    assert header == v4.V4Header("J", "I", 7, 77, "XX_ABC")
    assert header.length == v4.HEADER_LEN + 6
    assert packet[header.length : header.length + header.payload_length] == b'{"a":1}'


def test_empty_station_id_for_info_packets() -> None:
    header = v4.parse_header(v4.pack_packet(v4.INFO_SEQUENCE, "", b"{}", "J", "E"))
    assert (header.station_id, header.sequence, header.subformat) == ("", 0, "E")


@pytest.mark.parametrize(
    "data", [b"SL000001" + b"\0" * 20, b"SE2D\0\0", v4.pack_packet(1, "NET_STA", b"")[:20]]
)
def test_bad_or_short_headers_are_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        v4.parse_header(data)


def test_out_of_range_values_are_refused() -> None:
    with pytest.raises(ValueError):
        v4.pack_packet(1 << 64, "A_B", b"")
    with pytest.raises(ValueError):
        v4.pack_packet(1, "A" * 256, b"")
