"""uvicorn as ``seispick serve`` runs it: bound first, stopped at once, guarded against slow clients, and no
secret in its logs.

* The port is bound before the app starts (a port in use is one line naming ``--port``); the start-up banner
  comes once the app has started and listens.
* A stop (SIGINT or SIGTERM) says goodbye to the live subscribers first (SSE streams end, WebSockets close
  with 1001) instead of waiting for them, then stops the app.
* HTTP/1.1 over httptools (h11 where it is missing) on uvloop (asyncio's loop where it is missing) with a
  deadline for each request's line and headers (``request_header_timeout_s``, from the connection's first byte
  or its opening): uvicorn times out only idle keep-alive connections, so a client that never finishes its
  headers would hold a connection for ever. Headers are bounded by ``max_header_bytes`` (400 past it); idle keep-alive connections close after ``keep_alive_s``; WebSocket clients that stop
  answering pings within ``ws_ping_s`` are disconnected (and unsubscribed).
* Every log line has ``api_key=`` (and ``token=``) query values masked: browsers' WebSockets can send the key
  only in the URL, which uvicorn's access and WebSocket lines would otherwise print.
* A start-up error (the app's lifespan failed) is logged as one line, not uvicorn's traceback.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import Callable, Iterable

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

try:  # httptools (llhttp) is a dependency; h11 stays the fallback (and the one the guards were first made for)
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover
    HttpToolsProtocol = H11Protocol  # type: ignore[assignment,misc]

from seispick.service.api.routers.subscriptions import ClientFeeds

log = logging.getLogger(__name__)

GOODBYE_S = 1.0  # longest wait for the live subscribers' handlers to close their connections
_SECRET_QUERY = re.compile(r"(?i)\b((?:api[_-]?key|token|access_token)=)[^&\s\"'#]+")
MASK = "****"


class StartupError(Exception):
    """``serve`` cannot start; the message names the option or variable."""


def redact(text: str) -> str:
    """``text`` with secret query values masked: ``/v1/ws/picks?api_key=s3cret`` -> ``?api_key=****``."""
    return _SECRET_QUERY.sub(rf"\g<1>{MASK}", text) if "=" in text else text


class RedactSecrets(logging.Filter):
    """Masks secret query values in a record's message and arguments (uvicorn's access formatter reads the
    arguments, so they are masked in place, not merged into the message)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()}
        return True


def install_redaction(
    logger_names: Iterable[str] = ("", "uvicorn", "uvicorn.error", "uvicorn.access"),
) -> None:
    """Mask secrets in every line these loggers and their handlers write (the app's ``seispick.*`` loggers
    reach the root's handlers, or Python's last-resort one)."""
    redactor = RedactSecrets()
    targets: list[logging.Filterer] = [logging.lastResort] if logging.lastResort else []
    for name in logger_names:
        logger = logging.getLogger(name)
        targets += [logger, *logger.handlers]
    for target in targets:
        if not any(isinstance(f, RedactSecrets) for f in target.filters):
            target.addFilter(redactor)


class _OneLineStartupError(logging.Filter):
    """uvicorn logs a failed lifespan start-up as the whole traceback: keep its last line only."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("Traceback (most recent call last)"):
            last = [line for line in message.splitlines() if line.strip()][-1]
            record.msg, record.args = f"start-up failed: {last}", ()
        elif record.exc_info and "lifespan" in message:
            exc = record.exc_info[1]
            record.msg, record.args = f"start-up failed: {type(exc).__name__}: {exc}", ()
            record.exc_info = record.exc_text = None
        return True


class _HeaderDeadline:
    """A deadline for each request's line and headers, for a uvicorn protocol class (mixed in before it):
    armed when a connection opens and when a request begins, disarmed once the headers are complete; past it
    the connection is closed. The protocol says whether it still waits for headers (``_awaiting_headers``)."""

    header_timeout_s: float = 10.0
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    client: tuple[str, int] | None

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def _awaiting_headers(self) -> bool:
        raise NotImplementedError

    def _arm(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self._awaiting_headers() and not self.transport.is_closing():
            log.debug("%s: request headers not complete within request_header_timeout_s: closed", self.client)
            self.transport.close()


class GuardedH11Protocol(_HeaderDeadline, H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's line and headers (see the module docstring)."""

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and self.conn.their_state is h11.IDLE:
            self._arm()  # a new request begins: its headers have header_timeout_s
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm()  # headers complete (or the connection is done)

    def _awaiting_headers(self) -> bool:
        return self.conn.their_state is h11.IDLE


def guarded_h11(header_timeout_s: float) -> type[GuardedH11Protocol]:
    """The protocol class with its header deadline (uvicorn instantiates the class it is given)."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"header_timeout_s": header_timeout_s})


class HeadersTooLarge(Exception):
    """The request line and headers passed ``max_header_bytes`` (httptools turns it into a parser error: 400)."""


class GuardedHttpToolsProtocol(_HeaderDeadline, HttpToolsProtocol):
    """uvicorn's httptools protocol (llhttp, in C: a fraction of h11's cost per request) with the guards of
    :class:`GuardedH11Protocol`: a deadline for each request's line and headers, and ``max_header_bytes`` for
    them (400, as h11 answers past its limit). The size is counted exactly as the parser hands the line and
    headers over; a header line that never ends (which the parser keeps until it does) is bounded by the bytes
    received while the headers are incomplete (``max_header_bytes`` plus one read)."""

    max_header_bytes: int = 16384
    READ_SLACK = 65536  # a read may carry the previous request's body with the next one's first bytes

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._in_headers = True  # a connection opens waiting for a request line
        self._header_size = 0  # bytes of line and headers handed over by the parser
        self._header_reads = 0  # bytes received while the headers are incomplete

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_headers and self.parser is not None and not self.transport.is_closing():
            self._header_reads += len(data)
            if self._header_reads > self.max_header_bytes + self.READ_SLACK:
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers, self._header_size, self._header_reads = True, 0, 0
        if self._header_timer is None:
            self._arm()  # a new request begins: its headers have header_timeout_s

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # "name: value\r\n"
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_headers, self._header_reads = False, 0
        self._disarm()
        super().on_headers_complete()

    def _awaiting_headers(self) -> bool:
        return self._in_headers

    def _count(self, size: int) -> None:
        self._header_size += size
        if self._header_size > self.max_header_bytes:
            raise HeadersTooLarge(f"request line and headers over {self.max_header_bytes} bytes")


def guarded_http(header_timeout_s: float, max_header_bytes: int) -> type[asyncio.Protocol]:
    """The HTTP/1.1 protocol class for uvicorn with the header guards: httptools' where it is installed (a
    dependency of seispick), else h11's (bounded by uvicorn's ``h11_max_incomplete_event_size``)."""
    if HttpToolsProtocol is H11Protocol:
        return guarded_h11(header_timeout_s)
    return type(
        "GuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {"header_timeout_s": header_timeout_s, "max_header_bytes": max_header_bytes},
    )


class SeispickServer(uvicorn.Server):
    """uvicorn's server with the goodbye to live subscribers and the banner after start-up (see the module
    docstring)."""

    def __init__(
        self, config: uvicorn.Config, feeds: ClientFeeds, on_ready: Callable[[], None] | None = None
    ) -> None:
        super().__init__(config)
        self.feeds = feeds
        self.on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        startup_errors = _OneLineStartupError()
        logging.getLogger("uvicorn.error").addFilter(startup_errors)
        try:
            await super().startup(sockets)
        finally:
            logging.getLogger("uvicorn.error").removeFilter(startup_errors)
        if self.started and self.on_ready is not None:
            self.on_ready()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await self.feeds.goodbye(GOODBYE_S)
        await super().shutdown(sockets)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; :class:`StartupError` naming the option when it cannot be had."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise StartupError(
            f"--host {host} (SEISPICK_HOST): cannot listen there: {exc.strerror or exc}"
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise StartupError(
            f"--port {port} (SEISPICK_PORT): cannot listen on {host}:{port}: {reason}"
        ) from None
    sock.set_inheritable(True)
    return sock
