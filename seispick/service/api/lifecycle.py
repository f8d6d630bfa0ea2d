"""The service's life: what starts, in which order, and the reverse order in which it stops.

``start()`` fills the app's :class:`~.state.ServiceState`:

1. the model registry and the models (off the event loop);
2. the micro-batcher (shared by HTTP requests and the stream);
3. the Redis client (when ``redis_url`` is set; for ``/readyz``);
4. with a real-time source configured, the real-time job (a :class:`~seispick.service.stream.job.RealtimeJob`:
   one process, or a pool of picking processes), then its live association and the shadow models'
   agreement, subscribed to the job's publisher before any source runs, then the job itself (its publisher
   first, then picking and sources).

``stop()`` undoes it in reverse: the association first (its last event versions go out while the publisher
runs), then the job (sources, the picks at the end of every instrument's data, then the publisher's final
publish), the batcher, the Redis client, the models. A failed ``start()`` is not undone: the error stops the
app's start-up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from redis.asyncio import Redis

from seispick.models.inference import OnnxModel
from seispick.models.registry import ModelRegistry
from seispick.service.api.state import ServiceState, load_models
from seispick.service.batcher import MicroBatcher
from seispick.service.settings import Settings, model_warnings
from seispick.service.stream.analyst import start_analysts
from seispick.service.stream.association import start_events, tee_records
from seispick.service.stream.job import RealtimeJob
from seispick.service.stream.job_metrics import StreamMetrics
from seispick.service.stream.picker import first_look_samples
from seispick.service.stream.runtime import StreamingRuntime
from seispick.service.stream.shadow import start_shadows
from seispick.service.stream.worker_pool import WorkerPool

log = logging.getLogger(__name__)


class ServiceLifecycle:
    """Starts and stops what ``state`` holds; see the module docstring for the order."""

    def __init__(self, state: ServiceState, stream_metrics: StreamMetrics) -> None:
        self.state = state
        self.stream_metrics = stream_metrics

    async def start(self) -> None:
        state, settings = self.state, self.state.settings
        registry = await asyncio.to_thread(ModelRegistry, settings.model_dirs or None)
        state.registry = registry
        state.models = await asyncio.to_thread(load_models, registry, settings)
        state.metrics.set_models(list(state.models.values()))
        state.batcher = MicroBatcher(state.models, settings.batching, state.metrics)
        await state.batcher.start()
        if settings.redis_url:
            timeout = settings.redis_timeout_s
            try:
                state.redis = Redis.from_url(
                    settings.redis_url, socket_connect_timeout=timeout, socket_timeout=timeout
                )
            except ValueError as exc:  # one start-up line naming the setting (server.py)
                raise ValueError(f"--redis-url / SEISPICK_REDIS_URL: {exc}") from None
        if StreamingRuntime.wanted(settings):
            check_first_look(settings, state.models)  # here: picking processes would only crash on it
            job = state.streaming = self._job(state.batcher)
            job.selection.warnings += model_warnings(settings, registry.names())
            # association follows the publisher's picks from the first one (subscribed before sources start)
            state.events = await start_events(settings, job.publisher, state.metrics.registry, state.models)
            tee_records(job, state.events)
            state.shadows = await start_shadows(settings, job.publisher, state.metrics.registry, state.models)
            state.analysts = await start_analysts(
                settings, job.publisher, state.metrics.registry, state.models
            )
            state.show_roles()
            await job.start()
        log.info("serving models %s (default %s)", ", ".join(state.models), settings.default_model)

    async def stop(self) -> None:
        state = self.state
        if state.events is not None:  # its last versions go out before the publisher stops
            await state.events.stop()
            state.events = None
        if state.shadows is not None:
            await state.shadows.stop()
            state.shadows = None
        if state.analysts is not None:
            await state.analysts.stop()
            state.analysts = None
        if state.streaming is not None:
            await state.streaming.stop()
            state.streaming = None
        if state.batcher is not None:
            await state.batcher.stop()
        if state.redis is not None:
            await state.redis.aclose()
            state.redis = None
        state.models = {}

    def _job(self, batcher: MicroBatcher) -> RealtimeJob:
        """The real-time job: in this process, or in picking processes of its own, supervised from here."""
        state, settings = self.state, self.state.settings
        models = [state.model(name) for name in settings.streaming.stream_models(settings.default_model)]
        if settings.streaming.worker_count() > 1:
            return WorkerPool(settings, self.stream_metrics, state.metrics)
        return StreamingRuntime(settings, models, batcher.predict, self.stream_metrics)


def check_first_look(settings: Settings, models: Mapping[str, OnnxModel]) -> None:
    """Refuse (ValueError naming the setting) a first-look stride that some streamed model cannot take."""
    config = settings.streaming
    if config.preliminary_picks and config.first_look_stride_s:
        for name in config.stream_models(settings.default_model):
            if name in models:
                first_look_samples(models[name], config.first_look_stride_s)
