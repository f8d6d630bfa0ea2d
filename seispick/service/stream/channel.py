"""The line between the API process and one picking process of ``serve --workers N``.

A Unix socket pair, one end passed to the worker process at start; each message is a 4-byte length and a
pickle (both ends are this package, parent and child). Writing never blocks the event loop (asyncio buffers
it; the messages sent in one turn of the loop go out in one write); a closed peer is ``EOFError`` on
:meth:`Channel.recv`.

Messages, as tuples whose first item names them:

* API -> worker: :class:`WorkerInit` (first), ``("view", id)``, ``("roles", shadow models)`` (a promotion),
  ``("stop",)``;
* worker -> API: ``("ready", info)``, ``("item", Pick | Detection)``, ``("status", dict)`` every second
  (readiness, latency and inference counts since the last one, selector counts), ``("reply", id, view)``,
  ``("stopped",)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import socket
import struct
from dataclasses import dataclass
from typing import Any

from seispick.service.settings import Settings

_HEADER = struct.Struct("!I")


@dataclass(frozen=True)
class WorkerInit:
    """What a picking process needs to start: the settings and its slot (``index`` of ``count``)."""

    settings: Settings
    index: int
    count: int
    demo_port: int | None = None  # the API process's demo replay server, with --demo


class Channel:
    """Length-prefixed pickled messages over a connected stream socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._out: list[bytes] = []  # messages sent in this turn of the event loop, written together
        self._flush_due = False

    @classmethod
    async def connect(cls, sock: socket.socket) -> Channel:
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        return cls(reader, writer)

    def send(self, message: Any) -> None:
        """Queue ``message`` for the peer (never blocks; dropped once the channel is closing)."""
        if self.writer.is_closing():
            return
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        self._out += (_HEADER.pack(len(data)), data)
        if not self._flush_due:  # one socket write for every message of this turn (a pick each, under load)
            self._flush_due = True
            try:
                asyncio.get_running_loop().call_soon(self._flush)
            except RuntimeError:  # no event loop running: at once
                self._flush()

    def _flush(self) -> None:
        self._flush_due = False
        out, self._out = self._out, []
        if out and not self.writer.is_closing():
            self.writer.writelines(out)

    async def drain(self) -> None:
        self._flush()
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()

    async def recv(self) -> Any:
        """The next message; ``EOFError`` once the peer has closed its end (or died)."""
        try:
            header = await self.reader.readexactly(_HEADER.size)
            data = await self.reader.readexactly(_HEADER.unpack(header)[0])
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise EOFError("the other process closed the channel") from exc
        return pickle.loads(data)

    async def close(self) -> None:
        self._flush()
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()
