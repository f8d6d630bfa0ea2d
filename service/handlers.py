"""Exception handlers: every client mistake becomes a 4xx with ``{"detail": message}``, counted by kind."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

from seispick.models.annotate import NoUsableDataError

from .errors import ServiceError
from .metrics import ServiceMetrics

log = logging.getLogger(__name__)


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
        return await http_exception_handler(request, error)

    async def unexpected(request: Request, error: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal server error"}, status_code=500)

    app.add_exception_handler(ServiceError, service_error)  # type: ignore[arg-type]
    app.add_exception_handler(NoUsableDataError, no_usable_data)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, query_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, unexpected)
