"""Exception handlers: every client mistake becomes a 4xx with ``{"detail": message}``, counted by kind."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

from seispick.picking.annotate import NoUsableDataError
from seispick.service.app_metrics import ServiceMetrics
from seispick.service.errors import ServiceError

log = logging.getLogger(__name__)


def _allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """Every method any route of the app serves on the request's path."""
    methods: set[str] = set()
    for route in app.router.routes:
        regex, route_methods = getattr(route, "path_regex", None), getattr(route, "methods", None)
        if regex is not None and route_methods and regex.match(request.url.path):
            methods |= set(route_methods)
    return sorted(methods)


def install_handlers(app: FastAPI, metrics: ServiceMetrics) -> None:
    """Register the service's exception handlers on ``app``."""

    async def service_error(request: Request, error: ServiceError) -> Response:
        if error.counts_as_input_error:
            metrics.input_errors.labels(error.kind).inc()
        return JSONResponse({"detail": error.message}, status_code=error.status, headers=error.headers)

    async def no_usable_data(request: Request, error: NoUsableDataError) -> Response:
        metrics.input_errors.labels("no_data").inc()
        return JSONResponse({"detail": str(error)}, status_code=422)

    async def query_error(request: Request, error: RequestValidationError) -> Response:
        metrics.input_errors.labels("query").inc()
        return await request_validation_exception_handler(request, error)

    async def http_error(request: Request, error: HTTPException) -> Response:
        if error.status_code in (401, 403):
            metrics.input_errors.labels("auth").inc()
        if error.status_code == 405:
            # Starlette lists only the first matching route's methods; one path may have several routes
            # (GET and POST /v1/picks live in different routers).
            error.headers = {**(error.headers or {}), "Allow": ", ".join(_allowed_methods(app, request))}
        return await http_exception_handler(request, error)

    async def unexpected(request: Request, error: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal server error"}, status_code=500)

    app.add_exception_handler(ServiceError, service_error)  # type: ignore[arg-type]
    app.add_exception_handler(NoUsableDataError, no_usable_data)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, query_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, unexpected)
