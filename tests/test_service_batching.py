"""Micro-batching: concurrent requests share onnxruntime calls, and each still gets exactly its own picks."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pytest
from service_harness import MSEED, ServiceHarness, metric, to_mseed, variant

from seispick.models.registry import DEFAULT_MODEL, ModelRegistry
from seispick.picking.annotate import annotate
from seispick.service.batcher import MicroBatcher
from seispick.service.errors import ServiceBusy
from seispick.service.settings import BatchingSettings, Settings

N_REQUESTS = 20


@pytest.fixture(scope="module")
def model():
    return ModelRegistry().load()


@pytest.fixture(scope="module")
def requests_and_truth(model):
    """20 requests with distinct stations and start times, and what annotate() finds in each."""
    streams = [variant(i, f"S{i:02d}", shift_s=i * 37.13) for i in range(N_REQUESTS)]
    requests = [
        {"method": "POST", "url": "/v1/picks", "content": to_mseed(s), "headers": {"content-type": MSEED}}
        for s in streams
    ]
    truth = [[p.as_dict() for p in annotate(s, model).picks] for s in streams]
    return requests, truth


def run_concurrently(settings: Settings, requests: list[dict]):
    with ServiceHarness(settings) as service:
        responses = service.gather(requests)
        samples = service.metrics()
    return responses, samples


def test_concurrent_requests_share_inference_calls(requests_and_truth):
    requests, truth = requests_and_truth
    settings = Settings(batching=BatchingSettings(enabled=True, max_batch=64, max_wait_ms=50))
    responses, samples = run_concurrently(settings, requests)
    for response, expected in zip(responses, truth):
        assert response.status_code == 200, response.text
        assert response.json()["picks"] == expected  # its own picks, none of another request's
    model = DEFAULT_MODEL
    calls = metric(samples, "seispick_inference_calls_total", model=model)
    windows = metric(samples, "seispick_windows_processed_total", model=model)
    per_request = windows / N_REQUESTS
    assert calls < N_REQUESTS
    assert metric(samples, "seispick_inference_batch_size_count", model=model) == calls
    # batches hold windows of several requests: the mean batch is larger than one request
    assert windows / calls > per_request
    buckets = {
        float(dict(labels)["le"]): value
        for (name, labels), value in samples.items()
        if name == "seispick_inference_batch_size_bucket"
    }
    bound = min(le for le in buckets if le >= per_request)
    assert buckets[bound] < calls  # some batch held more windows than any single request has
    assert metric(samples, "seispick_batcher_queue_depth", model=model) == 0


def test_without_batching_every_request_runs_alone(requests_and_truth):
    requests, truth = requests_and_truth
    responses, samples = run_concurrently(Settings(batching=BatchingSettings(enabled=False)), requests[:8])
    assert [r.json()["picks"] for r in responses] == truth[:8]
    assert metric(samples, "seispick_inference_calls_total", model=DEFAULT_MODEL) == 8


# --- the batcher on its own, with a fake model ------------------------------------------------------------


@dataclass
class FakeModel:
    """Doubles its input; records the batch sizes it saw; can block or fail."""

    name: str = "fake"
    card: SimpleNamespace = field(default_factory=lambda: SimpleNamespace(labels=["N", "P", "S"]))
    calls: list[int] = field(default_factory=list)
    gate: threading.Event | None = None
    fail: bool = False

    def predict(self, windows: np.ndarray) -> np.ndarray:
        if self.gate is not None:
            self.gate.wait(5)
        if self.fail:
            raise RuntimeError("model exploded")
        self.calls.append(len(windows))
        return windows * 2


def windows(n: int, tag: float) -> np.ndarray:
    return np.full((n, 3, 8), tag, dtype=np.float32)


async def with_batcher(model: FakeModel, body, **options):
    batcher = MicroBatcher({model.name: model}, BatchingSettings(**options))
    await batcher.start()
    try:
        return await body(batcher)
    finally:
        await batcher.stop()


def test_groups_are_merged_split_and_returned_in_order():
    model = FakeModel()

    async def body(batcher):
        sizes = [3, 70, 1, 5]
        results = await asyncio.gather(*(batcher.predict("fake", windows(n, i)) for i, n in enumerate(sizes)))
        for i, (n, out) in enumerate(zip(sizes, results)):
            assert out.shape == (n, 3, 8) and np.all(out == 2 * i)

    asyncio.run(with_batcher(model, body, max_batch=32, max_wait_ms=20))
    assert sum(model.calls) == 79 and max(model.calls) <= 32
    assert len(model.calls) < 1 + 3 + 1 + 1  # fewer calls than groups (70 is split into 3)


def test_a_cancelled_caller_does_not_disturb_the_others():
    model = FakeModel(gate=threading.Event())

    async def body(batcher):
        first = asyncio.create_task(batcher.predict("fake", windows(2, 1)))
        await asyncio.sleep(0.05)  # the first batch is now blocked inside the model
        doomed = asyncio.create_task(batcher.predict("fake", windows(2, 2)))
        kept = asyncio.create_task(batcher.predict("fake", windows(2, 3)))
        await asyncio.sleep(0.01)
        doomed.cancel()
        model.gate.set()
        assert np.all(await first == 2) and np.all(await kept == 6)
        with pytest.raises(asyncio.CancelledError):
            await doomed
        assert batcher.queued_windows("fake") == 0

    asyncio.run(with_batcher(model, body, max_batch=64, max_wait_ms=1))
    assert model.calls == [2, 2]  # the cancelled group never reached the model


def test_model_errors_reach_every_caller_of_the_batch():
    model = FakeModel(fail=True)

    async def body(batcher):
        results = await asyncio.gather(
            *(batcher.predict("fake", windows(1, i)) for i in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, RuntimeError) and "exploded" in str(r) for r in results)
        model.fail = False
        assert np.all(await batcher.predict("fake", windows(1, 4)) == 8)  # the worker survived

    asyncio.run(with_batcher(model, body, max_wait_ms=10))


def test_a_full_queue_answers_busy():
    model = FakeModel(gate=threading.Event())

    async def body(batcher):
        running = asyncio.create_task(batcher.predict("fake", windows(8, 1)))
        await asyncio.sleep(0.05)
        queued = asyncio.create_task(batcher.predict("fake", windows(8, 1)))
        await asyncio.sleep(0.01)
        with pytest.raises(ServiceBusy, match="over the limit of 10"):
            await batcher.predict("fake", windows(8, 1))
        model.gate.set()
        await asyncio.gather(running, queued)

    asyncio.run(with_batcher(model, body, max_batch=8, max_wait_ms=1, max_queue_windows=10))


def test_disabled_batching_runs_each_request_alone_off_the_loop():
    model = FakeModel()

    async def body(batcher):
        started = time.perf_counter()
        ticker = asyncio.create_task(asyncio.sleep(0.01))
        results = await asyncio.gather(*(batcher.predict("fake", windows(5, i)) for i in range(4)))
        await ticker
        assert [float(r[0, 0, 0]) for r in results] == [0.0, 2.0, 4.0, 6.0]
        assert time.perf_counter() - started < 2

    asyncio.run(with_batcher(model, body, enabled=False, max_batch=4))
    assert sorted(model.calls) == [1, 1, 1, 1, 4, 4, 4, 4]


def test_empty_input_needs_no_call():
    model = FakeModel()

    async def body(batcher):
        out = await batcher.predict("fake", np.zeros((0, 3, 8), np.float32))
        assert out.shape == (0, 3, 8)

    asyncio.run(with_batcher(model, body))
    assert model.calls == []


def test_a_lone_request_does_not_wait_for_company():
    model = FakeModel()

    async def body(batcher):
        started = time.perf_counter()
        await batcher.predict("fake", windows(2, 1))
        return time.perf_counter() - started

    elapsed = asyncio.run(with_batcher(model, body, max_wait_ms=1000))
    assert elapsed < 0.5


def test_the_worker_waits_for_announced_requests():
    model = FakeModel()

    async def body(batcher):
        async def late_request():
            with batcher.incoming("fake"):
                await asyncio.sleep(0.1)  # decoding
            return await batcher.predict("fake", windows(3, 2))

        late = asyncio.create_task(late_request())
        await asyncio.sleep(0.01)
        early = await batcher.predict("fake", windows(2, 1))
        assert np.all(early == 2) and np.all(await late == 4)

    asyncio.run(with_batcher(model, body, max_wait_ms=1000))
    assert model.calls == [5]  # one call for both requests
