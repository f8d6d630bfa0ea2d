"""Client-facing errors: each carries its HTTP status and a bounded ``kind`` for the error metric."""

from __future__ import annotations


class ServiceError(Exception):
    """An error answered with ``status`` and ``{"detail": message}``."""

    status: int = 400
    kind: str = "bad_request"
    counts_as_input_error: bool = True

    def __init__(
        self, message: str, *, status: int | None = None, kind: str | None = None, headers: dict | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status or self.status
        self.kind = kind or self.kind
        self.headers = headers


class BadBody(ServiceError):
    """The body is not what its content type says (corrupt miniSEED, broken JSON, multipart)."""

    status = 400


class InvalidInput(ServiceError):
    """The body parses but its content cannot be used (unequal channels, NaN, bad sampling rate...)."""

    status = 422
    kind = "validation"


class TooLarge(ServiceError):
    """Body or waveform duration over the configured limit."""

    status = 413
    kind = "too_large"


class UnsupportedMediaType(ServiceError):
    status = 415
    kind = "content_type"


class ModelNotFound(ServiceError):
    status = 404
    kind = "unknown_model"


class ServiceBusy(ServiceError):
    """Backpressure: the batcher queue is full."""

    status = 503
    kind = "busy"
    counts_as_input_error = False


class RequestTimeout(ServiceError):
    status = 504
    kind = "timeout"
    counts_as_input_error = False
