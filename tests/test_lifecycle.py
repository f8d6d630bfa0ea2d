"""The service lifecycle: both real-time jobs are a ``RealtimeJob``, and the service starts its parts in order
and stops them in reverse."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from seispick.service.api import lifecycle
from seispick.service.api.lifecycle import ServiceLifecycle
from seispick.service.api.state import ServiceState
from seispick.service.app_metrics import ServiceMetrics
from seispick.service.batcher import MicroBatcher
from seispick.service.ingest.manager import SourceManager
from seispick.service.publish.publisher import PickPublisher
from seispick.service.settings import Settings, StreamingSettings
from seispick.service.stream.job import RealtimeJob
from seispick.service.stream.job_metrics import StreamMetrics
from seispick.service.stream.runtime import StreamingRuntime
from seispick.service.stream.worker_pool import WorkerPool

JOB_METHODS = [
    "start",
    "stop",
    "refresh",
    "station_states",
    "state",
    "snapshot",
    "unready_reason",
    "set_roles",
]


async def _predict(name, windows):  # never called: no record arrives
    raise AssertionError("no inference expected")


def _runtime(shipped_model, tmp_path: Path, **kwargs) -> StreamingRuntime:
    settings = Settings(streaming=StreamingSettings(watch_dirs=[tmp_path], workers=1))
    return StreamingRuntime(settings, shipped_model, _predict, StreamMetrics(CollectorRegistry()), **kwargs)


def _pool(tmp_path: Path) -> WorkerPool:
    settings = Settings(streaming=StreamingSettings(watch_dirs=[tmp_path], workers=2))
    metrics = ServiceMetrics()
    return WorkerPool(settings, StreamMetrics(metrics.registry), metrics)


def test_the_protocol_names_what_both_jobs_share():
    members = {name for name, _ in inspect.getmembers(RealtimeJob) if not name.startswith("_")}
    assert members == {*JOB_METHODS, "publisher"}
    assert "selection" in RealtimeJob.__annotations__


@pytest.mark.parametrize("job_class", [StreamingRuntime, WorkerPool])
def test_both_jobs_have_the_protocols_signatures(job_class):
    """Every method: async where the protocol's is, its parameters first, extra ones with defaults, the same
    return type."""
    for name in JOB_METHODS:
        wanted, got = getattr(RealtimeJob, name), getattr(job_class, name)
        assert inspect.iscoroutinefunction(got) == inspect.iscoroutinefunction(wanted), name
        wanted_sig, got_sig = inspect.signature(wanted), inspect.signature(got)
        wanted_params, got_params = list(wanted_sig.parameters.values()), list(got_sig.parameters.values())
        assert [p.name for p in got_params[: len(wanted_params)]] == [p.name for p in wanted_params], name
        assert all(p.default is not p.empty for p in got_params[len(wanted_params) :]), name
        assert got_sig.return_annotation == wanted_sig.return_annotation, name
    publisher = job_class.__dict__.get("publisher")
    assert publisher is None or isinstance(publisher, property)  # an attribute set in __init__, or a property


def test_both_jobs_are_realtime_jobs(shipped_model, tmp_path):
    runtime, pool = _runtime(shipped_model, tmp_path), _pool(tmp_path)
    assert isinstance(runtime, RealtimeJob) and isinstance(pool, RealtimeJob)
    assert isinstance(runtime.publisher, PickPublisher) and isinstance(pool.publisher, PickPublisher)


def test_a_runtime_with_a_sink_has_no_publisher(shipped_model, tmp_path):
    """In a picking process of ``serve --workers N`` the runtime hands its picks to a sink: not a job of the API."""
    runtime = _runtime(shipped_model, tmp_path, sink=lambda item: None)
    assert not isinstance(runtime, RealtimeJob)
    with pytest.raises(AttributeError, match="sink"):
        runtime.publisher  # noqa: B018
    assert runtime.state()["publisher"] == {} and runtime.snapshot().publisher == {}


class _FakeEvents:
    magnitudes = None  # no live ML: nothing teed from the job

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    async def stop(self) -> None:
        self.calls.append("events.stop")


def _record(monkeypatch, calls: list[str], cls: type, name: str, label: str) -> None:
    original = getattr(cls, name)

    async def recorded(self, *args, **kwargs):
        calls.append(label)
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, recorded)


def test_the_service_starts_in_order_and_stops_in_reverse(monkeypatch, shipped_model, tmp_path):
    calls: list[str] = []
    for cls, name, label in [
        (MicroBatcher, "start", "batcher.start"),
        (MicroBatcher, "stop", "batcher.stop"),
        (PickPublisher, "start", "publisher.start"),
        (PickPublisher, "stop", "publisher.stop"),
        (SourceManager, "start", "sources.start"),
        (SourceManager, "stop", "sources.stop"),
    ]:
        _record(monkeypatch, calls, cls, name, label)
    seen = {}

    async def start_events(settings, publisher, registry, models):
        seen["publisher"] = publisher
        calls.append("events.start")
        return _FakeEvents(calls)

    monkeypatch.setattr(lifecycle, "start_events", start_events)
    settings = Settings(
        default_model=shipped_model.name,
        models=[shipped_model.name],
        streaming=StreamingSettings(watch_dirs=[tmp_path], workers=1),
    )
    metrics = ServiceMetrics()
    state = ServiceState(settings=settings, metrics=metrics)
    service = ServiceLifecycle(state, StreamMetrics(metrics.registry))

    async def run() -> None:
        await service.start()
        assert state.ready and isinstance(state.streaming, StreamingRuntime)
        assert seen["publisher"] is state.streaming.publisher  # association follows the job's publisher
        assert isinstance(state.events, _FakeEvents)
        calls.append("serving")
        await service.stop()

    asyncio.run(run())
    assert calls == [
        "batcher.start",
        "events.start",  # subscribed before the publisher and the sources start
        "publisher.start",
        "sources.start",
        "serving",
        "events.stop",  # its last versions go out while the publisher runs
        "sources.stop",
        "publisher.stop",  # the final publish, after the picks at the end of the data
        "batcher.stop",
    ]
    assert state.streaming is None and state.events is None and state.redis is None and state.models == {}
    assert state.batcher is not None and not state.batcher.running
