"""What both SeedLink versions share in a session: negotiation state and the version-independent commands.

A :class:`Dialect` turns command lines into replies and negotiation state, frames data packets and
answers INFO. :mod:`seispick.seedlink.server.dialect_v3` and :mod:`seispick.seedlink.server.dialect_v4` say how each
protocol version does it; the session switches from 3.1 to 4.0 on ``SLPROTO 4.0``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from seispick.seedlink.server.info import hello_lines
from seispick.seedlink.server.requests import AnySelector, CommandError, StationRequest
from seispick.seedlink.server.ring import Packet, Replay, StationBuffer

logger = logging.getLogger(__name__)

_PROTO_VERSION = re.compile(r"^(\d+)\.(\d+)$")

Action = str | None  # None: keep negotiating; "stream": start data transfer; "close": end the session
Handler = Callable[[list[str]], Action]


class ServerView(Protocol):
    """The server facts a session needs."""

    @property
    def replay(self) -> Replay: ...

    started_ns: int
    protocols: tuple[str, ...]  # versions offered: ("3.1",) or ("3.1", "4.0")


@dataclass
class Negotiation:
    """A session's handshake so far."""

    requests: list[StationRequest] = field(default_factory=list)
    selectors: list[AnySelector] = field(default_factory=list)  # before any STATION
    uni: StationRequest | None = None  # SeedLink 3 uni-station start
    batch: bool = False
    extreply: bool = False
    dialup: bool = False  # ENDFETCH
    begun: bool = False  # a selection command came: SLPROTO is no longer allowed
    version: str = "3.1"
    useragent: str = ""

    def current(self) -> StationRequest | None:
        return self.requests[-1] if self.requests else None

    def select_target(self) -> list[AnySelector]:
        """Where a SELECT's selectors go: the current STATION's, else the connection-wide ones."""
        current = self.current()
        return current.selectors if current is not None else self.selectors


class Dialect:
    """Base of the two protocol versions: shared commands, reply and framing hooks."""

    version = "3.1"

    def __init__(self, server: ServerView, state: Negotiation, send: Callable[[bytes], None]) -> None:
        self.server = server
        self.state = state
        self.send = send
        self.handlers: dict[str, Handler] = {
            "HELLO": self._hello,
            "SLPROTO": self._slproto,
            "USERAGENT": self._useragent,
            "INFO": self._info_command,
            "END": self._end,
            "ENDFETCH": self._endfetch,
            "BYE": lambda args: "close",
        }
        self.handlers.update(self.commands())

    def commands(self) -> dict[str, Handler]:
        """This version's own commands (added to, or replacing, the shared ones)."""
        return {}

    @property
    def replay(self) -> Replay:
        return self.server.replay

    # ----------------------------------------------------------------------------- entry points
    def handle(self, line: str) -> Action:
        """Run one command line; refusals are answered here in this version's form."""
        verb, *args = line.split()
        handler = self.handlers.get(verb.upper())
        try:
            if handler is None:
                raise CommandError("UNSUPPORTED", f"unrecognized command: {line[:50]}")
            return handler(args)
        except CommandError as exc:
            logger.debug("refused %r: %s", line[:80], exc)
            self.refuse(exc, unknown=handler is None)
            return None

    def ok(self) -> None:
        """Acknowledge an accepted command."""
        self.send(b"OK\r\n")

    def refuse(self, error: CommandError, unknown: bool = False) -> None:
        """Answer a refused command (version-specific form)."""
        raise NotImplementedError

    def frame(self, buffer: StationBuffer, packet: Packet, filter: str = "") -> bytes:
        """The wire bytes of a data packet (version-specific header; ``filter`` from a v4 SELECT)."""
        raise NotImplementedError

    def info(self, args: list[str]) -> None:
        """Answer INFO (during negotiation and while streaming)."""
        raise NotImplementedError

    # --------------------------------------------------------------------------- shared commands
    def _hello(self, args: list[str]) -> Action:
        self.send(hello_lines(self.server.protocols))
        return None

    def _slproto(self, args: list[str]) -> Action:
        match = _PROTO_VERSION.match(args[0]) if len(args) == 1 else None
        version = "3.1" if match and match[1] == "3" else args[0] if args else ""
        if match is None or version not in self.server.protocols:
            raise CommandError("UNSUPPORTED", "unsupported protocol version")
        if self.state.begun:
            raise CommandError("UNEXPECTED", "SLPROTO must come before any station selection")
        self.state.version = version
        self.ok()
        return None

    def _useragent(self, args: list[str]) -> Action:
        self.state.useragent = " ".join(args)
        logger.info("client user agent: %s", self.state.useragent)
        self.ok()
        return None

    def _info_command(self, args: list[str]) -> Action:
        self.info(args)
        return None

    def _end(self, args: list[str]) -> Action:
        if not self.state.requests:
            self.state.uni = StationRequest(selectors=self.state.selectors, dialup=self.state.dialup)
        return "stream"

    def _endfetch(self, args: list[str]) -> Action:
        self.state.dialup = True
        return self._end(args)
