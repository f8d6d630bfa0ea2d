"""A SeedLink server that misbehaves in one chosen way, for the client's bounds (tests/test_seedlink_hostile.py).

Modes (``HostileSeedLink(mode)``):

* ``silent``: accepts the connection and never answers (a handshake that hangs);
* ``blank_lines``: answers ``HELLO`` with an endless flood of empty lines;
* ``garbage``: answers ``HELLO`` with endless binary garbage (no newline);
* ``endless_cat``: a SeedLink 3 server without wildcards whose ``CAT`` never ends (listing lines for ever, at
  about 5 MB/s);
  ``INFO`` answers ``ERROR``;
* ``huge_info``: ``CAT`` not implemented (as ringserver), ``INFO STATIONS`` an endless run of ``SLINFO *``
  records (a 100 MB answer and more);
* ``huge_record``: a normal handshake, then a SeedLink 3 packet whose miniSEED 3 header declares a 256 MiB
  record, followed by as many zero bytes as the client reads.

Anything not named answers like a plain SeedLink 3.1 server (``OK``). ``sent`` counts the bytes written,
``connections`` the connections accepted, ``commands`` every command line received.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
from collections.abc import Callable

from seispick.miniseed.pack import text_records
from tests.seedlink_fakes import FakeServer, Session

IDENT = b"SeedLink v3.1 (Hostile/0.1) :: SLPROTO:3.1\r\nHostile test server\r\n"
HUGE_RECORD = 256 << 20
MODES = ("silent", "blank_lines", "garbage", "endless_cat", "huge_info", "huge_record")


def huge_record_packet(sequence: int = 1) -> bytes:
    """``SL`` + sequence + a 64-byte miniSEED 3 header declaring a ``HUGE_RECORD``-byte payload."""
    head = bytearray(64)
    head[:3] = b"MS\x03"
    struct.pack_into("<BHI", head, 33, 8, 0, HUGE_RECORD)  # source id length, extra length, payload length
    head[40:48] = b"FDSN:XX_"
    return b"SL%06X" % sequence + bytes(head)


class HostileSeedLink(FakeServer):
    """See the module docstring (the TCP plumbing and the command loop are the fakes' own)."""

    def __init__(self, mode: str) -> None:
        assert mode in MODES, mode
        super().__init__()
        self.mode = mode
        self.sent = 0

    def session(self, writer: asyncio.StreamWriter) -> HostileSession:
        return HostileSession(self, writer)


class HostileSession(Session):
    """Answers a command at once, or starts a flood: ``stream()``, which the server's loop runs as it runs a
    data stream, writes ``flood()`` (every ``pause_s``) until the client goes."""

    def __init__(self, server: HostileSeedLink, writer: asyncio.StreamWriter) -> None:
        super().__init__(writer)
        self.server = server
        self.flood: Callable[[], bytes] | None = None
        self.pause_s = 0.0

    def send(self, data: bytes | str) -> None:
        super().send(data)
        self.server.sent += len(data)

    def command(self, line: str) -> str | None:
        verb, mode = line.split()[0].upper(), self.server.mode
        if mode == "silent" or self.streaming:
            return None
        if verb == "HELLO" and mode == "blank_lines":
            self.start_flood(lambda: b"\r\n" * 8192)
        elif verb == "HELLO" and mode == "garbage":
            self.start_flood(lambda: os.urandom(65536).replace(b"\n", b"x"))
        elif verb == "HELLO":
            self.send(IDENT)
        elif verb == "CAT" and mode == "endless_cat":
            lines = b"".join(b"XX S%04d Endless station\n" % (n % 10_000) for n in range(2000))
            self.start_flood(lambda: lines, pause_s=0.01)  # about 5 MB/s, for ever
        elif verb == "CAT":
            self.send(b"CAT command not implemented\r\n")
        elif verb == "INFO" and mode == "huge_info":
            xml = '<?xml version="1.0"?>\n<seedlink>' + '<station name="S" network="XX"/>' * 1000
            records = b"".join(b"SLINFO *" + record for record in text_records(xml))
            self.start_flood(lambda: records)
        elif verb == "INFO":
            self.send(b"ERROR\r\n")
        elif verb == "END" and mode == "huge_record":
            self.send(huge_record_packet())
            self.start_flood(lambda: bytes(65536))
        elif verb in ("STATION", "SELECT", "DATA", "TIME", "CAPABILITIES"):
            self.send(b"OK\r\n")
        return None

    def start_flood(self, flood: Callable[[], bytes], pause_s: float = 0.0) -> None:
        self.flood, self.pause_s, self.streaming = flood, pause_s, True

    async def stream(self) -> None:
        assert self.flood is not None
        with contextlib.suppress(ConnectionError, OSError):
            while not self.writer.is_closing():
                self.send(self.flood())
                await self.writer.drain()
                if self.pause_s:
                    await asyncio.sleep(self.pause_s)
