"""Shared pieces of the real-time routers: ``since`` parsing, Server-Sent Events and WebSocket feeds of
published records (picks, detections, events), and the WebSocket's API-key check.

Every feed is unsubscribed when its client goes, whatever its filter: an SSE response closes its subscription
when it ends (finished, cancelled or never started), a WebSocket feed watches for the client's disconnect
(uvicorn's pings find clients that vanished). Every open feed is listed in the app's :class:`ClientFeeds`, so
that a stop can say goodbye to all at once: SSE streams end, WebSockets close with 1001 (going away).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Callable

from fastapi import HTTPException, Request, WebSocket, WebSocketDisconnect, status
from fastapi.responses import StreamingResponse
from obspy import UTCDateTime
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocketState

from seispick.service.api.dependencies import API_KEY_HEADER
from seispick.service.api.schemas import ErrorResponse
from seispick.service.api.state import ServiceState
from seispick.service.publish.publisher import Record, Subscription

HEARTBEAT_S = 15.0
BAD_QUERY = {422: {"model": ErrorResponse, "description": "A query parameter out of range or not a time"}}
Render = Callable[[Record], str | None]  # a record as JSON text, or None to leave it out
GOING_AWAY = 1001  # WebSocket close code: the server is stopping
log = logging.getLogger(__name__)


class ClientFeeds:
    """The subscriptions of the SSE and WebSocket clients connected now (``app.state.client_feeds``)."""

    def __init__(self) -> None:
        self.open: set[Subscription] = set()
        self.closing = False

    def add(self, subscription: Subscription) -> None:
        if self.closing:
            subscription.close(drop=True)
        self.open.add(subscription)

    def discard(self, subscription: Subscription) -> None:
        subscription.close(drop=True)
        self.open.discard(subscription)

    async def goodbye(self, wait_s: float = 1.0) -> int:
        """End every feed now (no record still queued is sent) and give their handlers up to ``wait_s``
        to close their connections; how many there were."""
        self.closing = True
        count = len(self.open)
        for subscription in list(self.open):
            subscription.close(drop=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while self.open and loop.time() < deadline:
            await asyncio.sleep(0.01)
        if count:
            log.info("said goodbye to %d live subscriber(s)", count)
        return count


def client_feeds(scope_holder: Request | WebSocket) -> ClientFeeds:
    """The app's :class:`ClientFeeds` (one is made for an app built without :func:`create_app`)."""
    state = scope_holder.app.state
    feeds = getattr(state, "client_feeds", None)
    if feeds is None:
        feeds = state.client_feeds = ClientFeeds()
    return feeds


class _FeedResponse(StreamingResponse):
    """A streaming response that unsubscribes its feed however it ends (a client that disconnects before
    the first byte included: its body generator never starts, so its own ``finally`` cannot)."""

    def __init__(self, content, feeds: ClientFeeds, subscription: Subscription, **kwargs) -> None:
        super().__init__(content, **kwargs)
        self._feeds, self._subscription = feeds, subscription

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._feeds.discard(self._subscription)


def parse_since(value: str | None) -> UTCDateTime | None:
    """``since`` as a time; 422 naming the value when it is not one."""
    if value is None:
        return None
    try:
        return UTCDateTime(value)
    except Exception as exc:  # noqa: BLE001 - ObsPy raises several types for bad times
        raise HTTPException(422, f"since: not a time: {value!r}") from exc


def sse_response(
    request: Request, subscription: Subscription, render: Render, banner: str
) -> StreamingResponse:
    """``subscription``'s records as Server-Sent Events (``id``, ``event``: the record kind, ``data``: JSON),
    with a comment every ``HEARTBEAT_S`` seconds so proxies keep the connection."""

    feeds = client_feeds(request)
    feeds.add(subscription)

    async def events():
        try:
            yield f": {banner}\n\n"
            while not await request.is_disconnected():
                try:
                    record = await asyncio.wait_for(subscription.get(), HEARTBEAT_S)
                except asyncio.TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                except StopAsyncIteration:  # closed: the server stops (or the publisher did)
                    return
                data = render(record)
                if data is not None:
                    yield f"id: {record.key}\nevent: {record.kind}\ndata: {data}\n\n"
        finally:
            feeds.discard(subscription)

    return _FeedResponse(
        events(), feeds, subscription, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


async def websocket_feed(
    websocket: WebSocket,
    api_key: str | None,
    subscribe: Callable[[ServiceState], Subscription | None],
    render: Render,
    unavailable: str,
) -> None:
    """Records as JSON text messages; the key in X-API-Key or ``?api_key=``; closes with ``unavailable`` as
    the reason when ``subscribe`` has nothing to follow."""
    state: ServiceState = websocket.app.state.seispick
    if not key_ok(state, websocket.headers.get(API_KEY_HEADER) or api_key):
        await websocket.close(code=status.WS_1008_POLICY_VIOLATION, reason="missing or invalid API key")
        return
    subscription = subscribe(state)
    if subscription is None:
        await websocket.close(code=status.WS_1011_INTERNAL_ERROR, reason=unavailable)
        return
    feeds = client_feeds(websocket)
    feeds.add(subscription)
    watcher: asyncio.Task[None] | None = None
    try:
        await websocket.accept()
        watcher = asyncio.create_task(_until_disconnected(websocket, feeds, subscription))
        async for record in subscription:
            data = render(record)
            if data is not None:
                await websocket.send_text(data)
        if feeds.closing and websocket.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await websocket.close(code=GOING_AWAY, reason="the server is stopping")
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass
    finally:
        feeds.discard(subscription)
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)


async def _until_disconnected(websocket: WebSocket, feeds: ClientFeeds, subscription: Subscription) -> None:
    """Read (and ignore) what the client sends until it disconnects, then end its feed: a client that goes
    is unsubscribed at once, not when a record it wants is next published."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass
    feeds.discard(subscription)


def key_ok(state: ServiceState, key: str | None) -> bool:
    """Whether ``key`` is one of the configured API keys (always, when none are configured)."""
    keys = state.settings.api_keys
    if not keys:
        return True
    return bool(key) and any(hmac.compare_digest(key.encode(), k.get_secret_value().encode()) for k in keys)
