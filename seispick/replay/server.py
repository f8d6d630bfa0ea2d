"""Asyncio SeedLink server that replays a miniSEED archive as a live stream, in SeedLink 3.1 and 4.0.

The archive is re-packed into 512-byte records (see :mod:`seispick.miniseed.pack`) and released
into per-station ring buffers as the replay clock passes each record's end time: ``speed`` times real
time, or everything at once for ``speed`` 0 or infinity (:mod:`seispick.seedlink.server.ring`). Clients resume
with ``DATA seq`` without gaps or duplicates, also across a server ``stop()``/``start()`` (the replay
state survives; the clock keeps running while the port is closed).

Each connection is a :class:`~seispick.seedlink.server.session.Session`; it speaks SeedLink 3.1
(:mod:`seispick.seedlink.server.dialect_v3`: HELLO, CAT, CAPABILITIES, BATCH, INFO, STATION, SELECT, DATA, FETCH,
TIME, END, ENDFETCH, BYE) until the client negotiates ``SLPROTO 4.0``
(:mod:`seispick.seedlink.server.dialect_v4`: STATION/SELECT/DATA with stream-ID patterns, ``SE`` packets, JSON
INFO). Where a resume starts is decided in :mod:`seispick.seedlink.server.requests`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from seispick.miniseed.pack import load_records
from seispick.seedlink.protocol import (
    SEQ_MODULUS,
    Selector,
    parse_seedlink_time,
    selection_matches,
)
from seispick.seedlink.server.info import PROTOCOLS
from seispick.seedlink.server.ring import Packet, Replay, StationBuffer
from seispick.seedlink.server.session import Session

logger = logging.getLogger(__name__)

__all__ = [
    "SEQ_MODULUS",
    "Packet",
    "Replay",
    "SeedLinkReplayServer",
    "Selector",
    "StationBuffer",
    "ThreadedReplayServer",
    "parse_seedlink_time",
    "run_replay_server",
    "selection_matches",
]

T = TypeVar("T")


class SeedLinkReplayServer:
    """Serve archived miniSEED as a live SeedLink stream (protocol 3.1 and 4.0).

    ``speed``: replay rate (1 = real time; 0 or ``inf`` = everything at once). ``restamp``: shift all
    times so the first sample is "now" at the first start. ``loop``: replay again after the end, shifted
    by the archive duration. ``port=0`` binds a free port, kept for later restarts. ``protocols``: the
    SeedLink versions offered, ``("3.1", "4.0")`` or ``("3.1",)`` to stand in for a 3.1-only server.
    """

    def __init__(
        self,
        paths: Iterable[str | Path],
        host: str = "127.0.0.1",
        port: int = 18000,
        speed: float = 1.0,
        restamp: bool = False,
        loop: bool = False,
        protocols: Iterable[str] = PROTOCOLS,
    ) -> None:
        self.protocols = tuple(sorted(set(protocols)))
        if "3.1" not in self.protocols or not set(self.protocols) <= set(PROTOCOLS):
            raise ValueError(f"protocols must include 3.1 and be among {', '.join(PROTOCOLS)}")
        if speed < 0 or math.isnan(speed):
            raise ValueError("speed must be >= 0 (0 or inf: as fast as possible)")
        if loop and (speed == 0 or math.isinf(speed)):
            raise ValueError("loop needs a finite speed: an endless replay cannot run as fast as possible")
        self.paths = [Path(p) for p in paths]
        self.host = host
        self.speed = float(speed)
        self.restamp = restamp
        self.loop = loop
        self._port = port
        self._replay: Replay | None = None
        self._server: asyncio.Server | None = None
        self._feed: asyncio.Task[None] | None = None
        self._sessions: dict[asyncio.Task[Any], Session] = {}
        self._stopped: asyncio.Event | None = None
        self.started_ns = 0

    @property
    def port(self) -> int:
        """The TCP port (the bound one once started, so ``port=0`` resolves to the free port picked)."""
        return self._port

    @property
    def replay(self) -> Replay:
        """Replay state (buffers, clock); available after the first ``start()``."""
        if self._replay is None:
            raise RuntimeError("the server has not been started")
        return self._replay

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def client_count(self) -> int:
        return len(self._sessions)

    async def start(self) -> None:
        """Load the archive (first time only), start the replay clock and listen."""
        if self._server is not None:
            return
        if self._replay is None:
            records = await asyncio.to_thread(load_records, self.paths)
            self._replay = Replay(records, self.speed, self.restamp, self.loop)
            self.started_ns = time.time_ns()
            logger.info("loaded %d records of %d station(s) from %d path(s)",
                        len(records), len(self._replay.buffers), len(self.paths))  # fmt: skip
        self._replay.changed = asyncio.Event()  # bind to the running loop
        self._replay.begin(asyncio.get_running_loop().time())
        self._server = await asyncio.start_server(self._handle_client, self.host, self._port)
        self._port = self._server.sockets[0].getsockname()[1]
        self._feed = asyncio.create_task(self._replay.run())
        self._stopped = asyncio.Event()
        logger.info("SeedLink replay server listening on %s:%d (speed %s, restamp %s, loop %s)",
                    self.host, self._port, self.speed, self.restamp, self.loop)  # fmt: skip

    async def stop(self) -> None:
        """Close the port and every client connection; replay state and sequences are kept for a restart."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        await self.disconnect_clients()
        if self._feed is not None:
            self._feed.cancel()
            await asyncio.gather(self._feed, return_exceptions=True)
            self._feed = None
        await server.wait_closed()
        if self._stopped is not None:
            self._stopped.set()
        logger.info("SeedLink replay server on port %d stopped", self._port)

    async def serve_forever(self) -> None:
        """Start if needed and serve until ``stop()`` (or cancellation, which also stops)."""
        await self.start()
        assert self._stopped is not None
        try:
            await self._stopped.wait()
        finally:
            await self.stop()

    # ------------------------------------------------------------------ fault injection for tests
    async def disconnect_clients(self) -> int:
        """Drop every client connection abruptly (as a network failure would); returns how many."""
        sessions = list(self._sessions.items())
        for task, session in sessions:
            session.abort()
            task.cancel()
        await asyncio.gather(*(task for task, _ in sessions), return_exceptions=True)
        return len(sessions)

    async def pause(self) -> None:
        """Stall the feed: nothing is released until ``resume()``, which then catches up in a burst."""
        self.replay.paused = True

    async def resume(self) -> None:
        """Undo ``pause()``."""
        self.replay.paused = False

    async def _handle_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        session = Session(self, reader, writer)
        self._sessions[task] = session
        try:
            await session.run()
        except asyncio.CancelledError:
            pass
        except Exception:
            logger.exception("client %s: session failed", session.peer)
        finally:
            self._sessions.pop(task, None)
            writer.close()


class ThreadedReplayServer:
    """Run a :class:`SeedLinkReplayServer` on its own event loop in a daemon thread.

    For synchronous callers (tests, ObsPy clients): ``with ThreadedReplayServer(paths, port=0) as s:``.
    ``call(coroutine_function)`` runs any server coroutine (``stop``, ``start``, fault hooks) on that loop.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.server = SeedLinkReplayServer(*args, **kwargs)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="seedlink-replay", daemon=True)

    @property
    def port(self) -> int:
        return self.server.port

    def call(self, function: Callable[[], Awaitable[T]], timeout: float = 30.0) -> T:
        """Run ``function()`` (a coroutine function) on the server loop and return its result."""

        async def runner() -> T:
            return await function()

        return asyncio.run_coroutine_threadsafe(runner(), self._loop).result(timeout)

    def start(self) -> None:
        if not self._thread.is_alive():
            self._thread.start()
        self.call(self.server.start)

    def stop(self) -> None:
        self.call(self.server.stop)

    def close(self) -> None:
        """Stop the server and the loop thread."""
        if self._thread.is_alive():
            self.call(self.server.stop)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> ThreadedReplayServer:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_replay_server(
    paths: Iterable[str | Path],
    host: str = "127.0.0.1",
    port: int = 18000,
    speed: float = 1.0,
    restamp: bool = False,
    loop: bool = False,
    protocols: Iterable[str] = PROTOCOLS,
) -> None:
    """Serve ``paths`` as a SeedLink stream until interrupted (blocking; for ``seispick replay``)."""
    server = SeedLinkReplayServer(
        paths, host=host, port=port, speed=speed, restamp=restamp, loop=loop, protocols=protocols
    )
    try:
        asyncio.run(server.serve_forever())
    except KeyboardInterrupt:
        logger.info("SeedLink replay server interrupted")
