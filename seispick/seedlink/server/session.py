"""One client connection: read commands, let the protocol dialect answer them, then stream packets.

A session speaks SeedLink 3.1 until the client sends ``SLPROTO 4.0``. Commands may end in CR, LF or
CRLF (SeedLink 4 clients pipeline CR-terminated commands). While streaming, only INFO (keep-alives)
and BYE are answered; the stream ends with ``END`` in dial-up mode or once every time window is done.
"""

from __future__ import annotations

import asyncio
import logging
import re

from seispick.seedlink.server.dialect import Dialect, Negotiation, ServerView
from seispick.seedlink.server.dialect_v3 import V3Dialect
from seispick.seedlink.server.dialect_v4 import V4Dialect
from seispick.seedlink.server.requests import CommandError, StationRequest, Subscription, subscribe

logger = logging.getLogger(__name__)

MAX_COMMAND_BYTES = 1024
_DRAIN_EVERY = 64  # packets written between flow-control waits
_EOL = re.compile(rb"[\r\n]")
_DIALECTS: dict[str, type[Dialect]] = {"3.1": V3Dialect, "4.0": V4Dialect}


class Session:
    """One client connection: command negotiation, then streaming while answering INFO and BYE."""

    def __init__(self, server: ServerView, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.server = server
        self.replay = server.replay
        self.reader = reader
        self.writer = writer
        self.peer = writer.get_extra_info("peername")
        self.state = Negotiation()
        self.dialect: Dialect = V3Dialect(server, self.state, self.writer.write)
        self._buffer = bytearray()

    async def run(self) -> None:
        """Serve the connection until the client leaves, the stream ends or the server stops."""
        logger.info("client %s connected", self.peer)
        try:
            if await self._negotiate():
                await self._stream()
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            logger.info("client %s dropped: %s", self.peer, exc)
        finally:
            logger.info("client %s disconnected", self.peer)

    def abort(self) -> None:
        """Cut the connection at once (server stop or injected fault)."""
        self.writer.transport.abort()

    async def _read_command(self) -> str | None:
        """Next non-empty command line (CR, LF or CRLF terminated), or None at end of input."""
        while True:
            match = _EOL.search(self._buffer)
            if match:
                line = bytes(self._buffer[: match.start()])
                del self._buffer[: match.end()]
                if line.strip():
                    return line.decode("ascii", "replace").strip()
                continue
            if len(self._buffer) > MAX_COMMAND_BYTES:
                raise ConnectionError("command line too long")
            chunk = await self.reader.read(4096)
            if not chunk:
                return None
            self._buffer += chunk

    async def _negotiate(self) -> bool:
        """Handle commands until streaming starts (True) or the client leaves (False)."""
        while True:
            line = await self._read_command()
            if line is None:
                return False
            logger.debug("client %s [%s]: %s", self.peer, self.dialect.version, line)
            action = self.dialect.handle(line)
            if self.state.version != self.dialect.version:
                self.dialect = _DIALECTS[self.state.version](self.server, self.state, self.writer.write)
                logger.info("client %s speaks SeedLink %s", self.peer, self.state.version)
            await self.writer.drain()
            if action is not None:
                return action == "stream"

    # -------------------------------------------------------------------------------- streaming
    def _subscriptions(self) -> list[Subscription]:
        state = self.state
        requests = state.requests or [state.uni or StationRequest(selectors=state.selectors)]
        subscriptions: dict[tuple[str, str], Subscription] = {}
        for request in requests:  # a station matched by an earlier STATION keeps that request
            selectors = request.selectors or state.selectors
            for key in request.stations(self.replay):
                if key not in subscriptions:
                    subscriptions[key] = subscribe(self.replay.buffers[key], request, selectors, self.replay)
        return list(subscriptions.values())

    async def _stream(self) -> None:
        subscriptions = self._subscriptions()
        state = self.state
        dialup = state.dialup or any(r.dialup for r in state.requests) or bool(state.uni and state.uni.dialup)
        logger.info("client %s streams %d station(s)%s", self.peer, len(subscriptions), " (dial-up)" * dialup)
        tasks = {
            asyncio.create_task(self._send_packets(subscriptions, dialup)),
            asyncio.create_task(self._listen()),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _send_packets(self, subscriptions: list[Subscription], dialup: bool) -> None:
        windowed = bool(subscriptions) and all(s.end_ns is not None for s in subscriptions)
        frame = self.dialect.frame
        replay = self.replay
        by_station = {(s.buffer.network, s.buffer.station): s for s in subscriptions}
        position: int | None = None  # in the replay's release log: stations appended to since are looked at
        while True:
            changed = replay.changed
            stations = None
            if position is not None:
                stations, position = replay.touched_since(position)
            else:
                position = replay.touched_end
            todo = subscriptions if stations is None else [by_station[k] for k in stations if k in by_station]
            sent = 0
            for subscription in todo:
                for packet in subscription.pending():
                    self.writer.write(frame(subscription.buffer, packet, subscription.filter_of(packet)))
                    sent += 1
                    if sent % _DRAIN_EVERY == 0:
                        await self.writer.drain()
            await self.writer.drain()
            finishing = dialup or windowed
            if (
                finishing
                and all(s.caught_up() for s in subscriptions)
                and (dialup or self._windows_complete(subscriptions))
            ):
                self.writer.write(b"END")
                await self.writer.drain()
                return
            await changed.wait()

    def _windows_complete(self, subscriptions: list[Subscription]) -> bool:
        return all(s.end_ns is not None and self.replay.window_complete(s.end_ns) for s in subscriptions)

    async def _listen(self) -> None:
        """While streaming, answer INFO (keep-alives) and stop on BYE or end of input."""
        while True:
            line = await self._read_command()
            if line is None:
                return
            verb, *args = line.split()
            if verb.upper() == "BYE":
                return
            if verb.upper() == "INFO":
                try:
                    self.dialect.info(args)
                except CommandError as exc:
                    logger.debug("client %s: %s", self.peer, exc)
            else:
                logger.debug("client %s: ignoring %r while streaming", self.peer, line)
