"""The operator page at ``/``: one HTML page, one vanilla JavaScript file and one CSS file, shipped in the
package (``operator_page/``; no CDN, no map tiles, nothing from the internet), and the station coordinates it
draws (``GET /v1/stations/coordinates``).

The page reads only the service's own routes: ``GET /v1/stations`` (states, data latency, the latest pick's
latency stages; polled), ``GET /v1/stations/coordinates``, ``GET /v1/picks`` and ``GET /v1/events`` once, then
the live feeds ``/v1/stream/picks`` (final picks), ``/v1/stream/picks?status=preliminary,confirmed,rejected``
(pick updates) and ``/v1/stream/events`` (every event version) as Server-Sent Events (EventSource), and
``/metrics`` for the latency budget's p50 per stage. With API keys the page takes the key in its address
(``/#api_key=KEY``, never sent to the server as such), sends it as ``X-API-Key`` and follows the WebSocket
twins of the feeds (``?api_key=``), since EventSource cannot send headers.

``GET /`` answers the page to browsers; a client asking for JSON only (``Accept: application/json``) gets a
small index of the service's entry points instead (``/`` answered 404 before the page).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from seispick import __version__
from seispick.service.api.dependencies import StateDep
from seispick.service.api.routers import API_PREFIX

PAGE_DIR = Path(__file__).resolve().parent.parent / "operator_page"
ASSETS = {  # the only files served from PAGE_DIR, with their content types
    "operator.js": "text/javascript; charset=utf-8",
    "operator.css": "text/css; charset=utf-8",
}
ASSET_PREFIX = "/operator"
NO_CACHE = {"Cache-Control": "no-cache"}  # a new release's page and script are picked up at once

router = APIRouter(tags=["operator page"])  # the page and its assets hold no data: no key asked
api_router = APIRouter(prefix=API_PREFIX, tags=["stream"])

INDEX = {
    "operator_page": "/",
    "docs": "/docs",
    "openapi": "/openapi.json",
    "stations": f"{API_PREFIX}/stations",
    "station_coordinates": f"{API_PREFIX}/stations/coordinates",
    "picks": f"{API_PREFIX}/picks",
    "live_picks": f"{API_PREFIX}/stream/picks",
    "events": f"{API_PREFIX}/events",
    "live_events": f"{API_PREFIX}/stream/events",
    "fdsnws_event": "/fdsnws/event/1/",
    "health": "/healthz",
    "ready": "/readyz",
    "metrics": "/metrics",
}


def wants_json(request: Request) -> bool:
    """Whether the client asked for JSON and not for HTML (a browser's Accept names text/html)."""
    accept = request.headers.get("accept", "").lower()
    return "application/json" in accept and "text/html" not in accept


@router.get(
    "/",
    include_in_schema=False,
    summary="The operator page (HTML); with Accept: application/json an index of the service's routes",
)
async def operator_page(request: Request) -> Response:
    if wants_json(request):
        return JSONResponse({"service": "seispick", "version": __version__, "routes": INDEX})
    return FileResponse(PAGE_DIR / "index.html", media_type="text/html; charset=utf-8", headers=NO_CACHE)


@router.get(ASSET_PREFIX + "/{name}", include_in_schema=False)
async def operator_asset(name: str) -> Response:
    media_type = ASSETS.get(name)
    if media_type is None:
        return JSONResponse({"detail": f"no operator page asset {name!r}"}, status_code=404)
    return FileResponse(PAGE_DIR / name, media_type=media_type, headers=NO_CACHE)


@api_router.get(
    "/stations/coordinates",
    summary="Coordinates of the stations the service associates with (empty when it does not associate)",
)
async def station_coordinates(state: StateDep) -> dict[str, Any]:
    live = state.events
    table = None if live is None else live.stations
    if table is None:
        return {"stations": [], "count": 0, "source": None, "without_coordinates": []}
    stations = [
        {
            "key": s.key,
            "network": s.network,
            "station": s.station,
            "latitude": s.latitude,
            "longitude": s.longitude,
            "elevation_m": s.elevation_m,
        }
        for s in sorted(table.stations.values(), key=lambda s: s.key)
    ]
    return {
        "stations": stations,
        "count": len(stations),
        "source": Path(table.source).name if table.source else "events.stations",
        "without_coordinates": sorted(table.without_coordinates),
    }
