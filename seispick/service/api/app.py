"""The app factory, its lifespan (:mod:`.lifecycle` starts and stops the service) and ``run_server`` for
``seispick serve``."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import uvicorn
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi

from seispick import __version__
from seispick.service.api.dependencies import require_api_key, require_metrics_key
from seispick.service.api.docs import install_docs
from seispick.service.api.handlers import install_handlers
from seispick.service.api.lifecycle import ServiceLifecycle
from seispick.service.api.routers import detections, events, fdsnws_event, health, models, picks, stream
from seispick.service.api.routers import operator as operator_page
from seispick.service.api.routers import prometheus as metrics
from seispick.service.api.routers.subscriptions import ClientFeeds
from seispick.service.api.schemas import WaveformJsonBody
from seispick.service.api.server import SeispickServer, bind, guarded_http, install_redaction
from seispick.service.api.state import ServiceState
from seispick.service.app_metrics import HttpMetricsMiddleware, ServiceMetrics
from seispick.service.settings import Settings
from seispick.service.stream.job_metrics import StreamMetrics


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the service (models, batcher, Redis client, real-time job; order in :mod:`.lifecycle`), stop it
    on shutdown."""
    lifecycle = ServiceLifecycle(app.state.seispick, app.state.stream_metrics)
    await lifecycle.start()
    try:
        yield
    finally:
        await lifecycle.stop()


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new service app; models load when its lifespan starts."""
    settings = settings or Settings()
    service_metrics = ServiceMetrics()
    app = FastAPI(
        title="seispick",
        version=__version__,
        summary="Seismic phase picking (PhaseNet in ONNX) with cross-request micro-batching",
        lifespan=lifespan,
        docs_url=None,  # served by install_docs from local assets (no CDN)
        redoc_url=None,
    )
    install_docs(app)
    app.state.seispick = ServiceState(settings=settings, metrics=service_metrics)
    app.state.stream_metrics = StreamMetrics(service_metrics.registry)
    app.state.client_feeds = ClientFeeds()  # live SSE/WebSocket subscribers, ended at once by a stop
    install_handlers(app, service_metrics)
    # Only with keys configured does the API (and its OpenAPI document) ask for X-API-Key.
    secured = [Depends(require_api_key)] if settings.api_keys else []
    app.include_router(picks.router, dependencies=secured)
    app.include_router(models.router, dependencies=secured)
    app.include_router(stream.router, dependencies=secured)
    app.include_router(stream.ws_router)  # checks the key itself (header or ?api_key=)
    for router in (detections, events):
        app.include_router(router.router, dependencies=secured)
        app.include_router(router.ws_router)
    app.include_router(fdsnws_event.router, dependencies=secured)  # FDSN clients: /fdsnws/event/1
    app.include_router(health.router)
    app.include_router(operator_page.router)  # the operator page at / and its assets: no data, no key
    app.include_router(operator_page.api_router, dependencies=secured)
    # /metrics asks for a key too (X-API-Key or Authorization: Bearer) unless metrics_public
    app.include_router(
        metrics.router, dependencies=[Depends(require_metrics_key)] if settings.api_keys else []
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "X-API-Key"],
        )
    app.add_middleware(HttpMetricsMiddleware, metrics=service_metrics)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict:
    """FastAPI's schema plus the JSON waveform body, which the picks route reads by hand."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, summary=app.summary, routes=app.routes, openapi_version="3.1.0"
    )
    body = WaveformJsonBody.model_json_schema(ref_template="#/components/schemas/{model}")
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(body.pop("$defs", {}))
    components["WaveformJsonBody"] = body
    app.openapi_schema = schema
    return schema


def run_server(settings: Settings | None = None, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve the app with uvicorn until SIGINT or SIGTERM (``seispick serve``); ``on_ready`` gets the URL once
    the app has started and listens. The port is bound first (:class:`~.server.StartupError` names it when it
    cannot be); a failed start-up exits non-zero. The stop and the guards: :mod:`.server`."""
    settings = settings or Settings()
    sock = bind(settings.host, settings.port)
    port = sock.getsockname()[1]
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=port,
        log_level=settings.log_level,
        access_log=settings.access_log,
        timeout_graceful_shutdown=10,
        timeout_keep_alive=settings.keep_alive_s,
        loop="auto",  # uvloop where installed (a dependency on Linux and macOS)
        http=guarded_http(settings.request_header_timeout_s, settings.max_header_bytes),
        h11_max_incomplete_event_size=settings.max_header_bytes,  # the h11 fallback's bound
        ws_ping_interval=settings.ws_ping_s,
        ws_ping_timeout=settings.ws_ping_s,
    )
    install_redaction()  # after uvicorn.Config, which sets up the logging
    where = f"http://{f'[{settings.host}]' if ':' in settings.host else settings.host}:{port}"
    server = SeispickServer(config, app.state.client_feeds, on_ready and (lambda: on_ready(where)))
    # uvicorn shuts down gracefully on SIGTERM/SIGINT (the lifespan stops the job: last picks and kept
    # positions out), then raises the signal again to this handler: a clean stop exits with status 0.
    previous = {sig: signal.signal(sig, _stopped) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not server.started:
        raise SystemExit(3)  # uvicorn's exit code for a failed start-up (logged in one line)


def _stopped(signum: int, frame: object) -> None:
    """A stop signal outside uvicorn's own handling (re-raised after its shutdown, or before it started)."""
    raise SystemExit(0)
