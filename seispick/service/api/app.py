"""The app factory, its lifespan (:mod:`.lifecycle` starts and stops the service) and ``run_server`` for
``seispick serve``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi

from seispick import __version__
from seispick.service.api.dependencies import require_api_key
from seispick.service.api.docs import install_docs
from seispick.service.api.handlers import install_handlers
from seispick.service.api.lifecycle import ServiceLifecycle
from seispick.service.api.routers import detections, events, health, models, picks, stream
from seispick.service.api.routers import prometheus as metrics
from seispick.service.api.schemas import WaveformJsonBody
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
    app.include_router(health.router)
    app.include_router(metrics.router)
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


def run_server(settings: Settings | None = None) -> None:
    """Serve the app with uvicorn until interrupted (``seispick serve``)."""
    settings = settings or Settings()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.access_log,
        timeout_graceful_shutdown=10,
    )
