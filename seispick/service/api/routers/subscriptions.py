"""Shared pieces of the real-time routers: ``since`` parsing, Server-Sent Events and WebSocket feeds of
published records (detections, events), and the WebSocket's API-key check."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable

from fastapi import HTTPException, Request, WebSocket, WebSocketDisconnect, status
from fastapi.responses import StreamingResponse
from obspy import UTCDateTime

from seispick.service.api.dependencies import API_KEY_HEADER
from seispick.service.api.schemas import ErrorResponse
from seispick.service.api.state import ServiceState
from seispick.service.publish.publisher import Record, Subscription

HEARTBEAT_S = 15.0
BAD_QUERY = {422: {"model": ErrorResponse, "description": "A query parameter out of range or not a time"}}
Render = Callable[[Record], str | None]  # a record as JSON text, or None to leave it out


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

    async def events():
        try:
            yield f": {banner}\n\n"
            while not await request.is_disconnected():
                try:
                    record = await asyncio.wait_for(subscription.get(), HEARTBEAT_S)
                except asyncio.TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                data = render(record)
                if data is not None:
                    yield f"id: {record.key}\nevent: {record.kind}\ndata: {data}\n\n"
        finally:
            subscription.close()

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


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
    await websocket.accept()
    try:
        while True:
            record = await subscription.get()
            data = render(record)
            if data is not None:
                await websocket.send_text(data)
    except (WebSocketDisconnect, RuntimeError, StopAsyncIteration):
        pass
    finally:
        subscription.close()


def key_ok(state: ServiceState, key: str | None) -> bool:
    """Whether ``key`` is one of the configured API keys (always, when none are configured)."""
    keys = state.settings.api_keys
    if not keys:
        return True
    return bool(key) and any(hmac.compare_digest(key.encode(), k.get_secret_value().encode()) for k in keys)
