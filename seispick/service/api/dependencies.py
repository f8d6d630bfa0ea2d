"""FastAPI dependencies: the app's state, settings, registry, batcher, and API-key authentication.

Keys come from the ``X-API-Key`` header (``/metrics`` also takes ``Authorization: Bearer``, which Prometheus
sends); only the WebSocket routes also take ``?api_key=`` (browsers cannot set their headers), and every log
line masks it (:mod:`.server`)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from seispick.models.registry import ModelRegistry
from seispick.service.api.state import ServiceState
from seispick.service.batcher import MicroBatcher
from seispick.service.settings import Settings

API_KEY_HEADER = "X-API-Key"
_api_key_header = APIKeyHeader(
    name=API_KEY_HEADER, auto_error=False, description="Required when keys are set"
)
_bearer = HTTPBearer(auto_error=False, description="The API key as a bearer token (/metrics, for Prometheus)")


def get_state(request: Request) -> ServiceState:
    return request.app.state.seispick


def get_settings(state: Annotated[ServiceState, Depends(get_state)]) -> Settings:
    return state.settings


def get_registry(state: Annotated[ServiceState, Depends(get_state)]) -> ModelRegistry:
    if state.registry is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "models are not loaded yet")
    return state.registry


def get_batcher(state: Annotated[ServiceState, Depends(get_state)]) -> MicroBatcher:
    if state.batcher is None or not state.batcher.running:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the inference batcher is not running")
    return state.batcher


def require_api_key(
    settings: Annotated[Settings, Depends(get_settings)],
    key: Annotated[str | None, Security(_api_key_header)] = None,
) -> None:
    """401 without a key, 403 with a wrong one; a no-op when no keys are configured."""
    if not settings.api_keys:
        return
    if not key:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            f"missing API key: send it in the {API_KEY_HEADER} header",
            headers={"WWW-Authenticate": API_KEY_HEADER},
        )
    given = key.encode()
    if not any(hmac.compare_digest(given, k.get_secret_value().encode()) for k in settings.api_keys):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid API key")


def require_metrics_key(
    settings: Annotated[Settings, Depends(get_settings)],
    key: Annotated[str | None, Security(_api_key_header)] = None,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
) -> None:
    """``/metrics``: the API key (header or bearer token) unless ``metrics_public``."""
    if settings.metrics_public:
        return
    require_api_key(settings, key or (bearer.credentials if bearer is not None else None))


StateDep = Annotated[ServiceState, Depends(get_state)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
BatcherDep = Annotated[MicroBatcher, Depends(get_batcher)]
