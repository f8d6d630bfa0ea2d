"""What one running app holds: settings, metrics, the registry, loaded models, the batcher, a Redis client,
the real-time job and its live association (filled and emptied by :mod:`.lifecycle`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from redis.asyncio import Redis

from seispick.models.inference import OnnxModel
from seispick.models.registry import ModelRegistry
from seispick.service.app_metrics import ServiceMetrics
from seispick.service.batcher import MicroBatcher
from seispick.service.errors import ModelNotFound
from seispick.service.settings import Settings
from seispick.service.stream.analyst import AnalystAgreement
from seispick.service.stream.association import LiveEvents
from seispick.service.stream.job import RealtimeJob
from seispick.service.stream.shadow import ShadowAgreement

log = logging.getLogger(__name__)


@dataclass
class ServiceState:
    """Lives on ``app.state.seispick``; filled by ``ServiceLifecycle.start()``, emptied by its ``stop()``."""

    settings: Settings
    metrics: ServiceMetrics
    registry: ModelRegistry | None = None
    models: dict[str, OnnxModel] = field(default_factory=dict)
    batcher: MicroBatcher | None = None
    redis: Redis | None = None
    streaming: RealtimeJob | None = None  # when a real-time source is configured
    events: LiveEvents | None = None  # when the service associates its picks
    shadows: ShadowAgreement | None = None  # when the stream runs shadow models (their agreement)
    analysts: AnalystAgreement | None = None  # when streaming.analyst_picks_key is set

    def show_roles(self) -> None:
        """The stream's pickers by role in ``seispick_model_stream_role`` (at start and after a promotion)."""
        config = self.settings.streaming
        live = [m for m in config.live_models(self.settings.default_model) if m in self.models]
        self.metrics.set_roles(live, [m for m in config.shadow_models if m in self.models])

    @property
    def ready(self) -> bool:
        return self.settings.default_model in self.models and bool(self.batcher and self.batcher.running)

    def model(self, name: str | None) -> OnnxModel:
        """A loaded model by name (the default when None); 404 otherwise. Never resolves file paths."""
        name = name or self.settings.default_model
        model = self.models.get(name)
        if model is None:
            known = ", ".join(sorted(self.models)) or "none"
            raise ModelNotFound(f"unknown model {name!r}; loaded models: {known}")
        return model


def load_models(registry: ModelRegistry, settings: Settings) -> dict[str, OnnxModel]:
    """Load ``settings.models`` (names or patterns; every registry model when empty) plus the default model
    and the stream's models.

    A model named in the settings that fails to load stops start-up; with "load everything", a broken
    folder other than the default model's is logged and skipped.
    """
    explicit = bool(settings.models)
    selected, unmatched = settings.select_models(registry.names())
    for pattern in unmatched:
        log.warning("configuration: models pattern %r matches no installed model", pattern)
    streamed = settings.streaming.stream_models(settings.default_model)
    names = list(dict.fromkeys([*selected, settings.default_model, *streamed]))
    models = {}
    for name in names:
        if name not in registry.names():
            raise ValueError(f"model {name!r} is not in the registry (known: {', '.join(registry.names())})")
        try:
            models[name] = registry.load(
                name, threads=settings.inference_threads, backend=settings.inference_backend
            )
        except Exception:
            if explicit or name == settings.default_model:
                raise
            log.exception("model %s could not be loaded; it is not served", name)
    return models
