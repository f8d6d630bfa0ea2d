"""Cross-request micro-batching: windows from concurrent requests share onnxruntime calls.

Each model has one lane: a FIFO of window groups and a worker task. The worker takes the first group, waits
up to ``max_wait_ms`` for more (or until ``max_batch`` windows are waiting), concatenates them, runs
``model.predict`` on an executor thread and hands each submitter its own slice of the output. While a call
runs, new groups queue up, so under load batches fill without waiting. Groups larger than ``max_batch`` are
split on submission. With batching disabled every request runs its own calls, still off the event loop (the
HTTP route calls ``predict_here`` on the thread that decoded its body).

Requests announce themselves while they decode and prepare (``with batcher.incoming(name):``); the worker
only waits for more windows while some request is on its way, so a lone request pays no batching delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seispick.models.inference import OnnxModel
from seispick.service.app_metrics import ServiceMetrics
from seispick.service.errors import ServiceBusy
from seispick.service.settings import BatchingSettings

log = logging.getLogger(__name__)


@dataclass
class _Group:
    """Windows of one submitter and the future its output goes to."""

    windows: np.ndarray
    future: asyncio.Future

    @property
    def size(self) -> int:
        return len(self.windows)


@dataclass
class _Lane:
    """The queue and worker of one model."""

    model: OnnxModel
    groups: deque[_Group] = field(default_factory=deque)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    waiting: int = 0  # windows queued, cancelled groups included until the worker drops them
    incoming: int = 0  # requests decoding or preparing windows for this model
    worker: asyncio.Task | None = None
    depth: Any = None  # its child of the queue-depth gauge (a label lookup per call costs more than the set)


class MicroBatcher:
    """``await predict(model_name, windows)`` from any number of coroutines; see the module docstring."""

    def __init__(
        self,
        models: Mapping[str, OnnxModel],
        settings: BatchingSettings | None = None,
        metrics: ServiceMetrics | None = None,
        executor_threads: int | None = None,
    ) -> None:
        self.settings = settings or BatchingSettings()
        self.metrics = metrics or ServiceMetrics()
        self._models = dict(models)
        self._lanes: dict[str, _Lane] = {}
        self._threads = executor_threads or os.cpu_count() or 2
        self._executor: ThreadPoolExecutor | None = None

    @property
    def running(self) -> bool:
        return self._executor is not None

    async def start(self) -> None:
        """Start the executor and, with batching on, one worker per model."""
        if self.running:
            return
        self._executor = ThreadPoolExecutor(self._threads, thread_name_prefix="seispick-inference")
        for name, model in self._models.items():
            self.metrics.queue_depth.labels(name).set(0)
            if self.settings.enabled:
                lane = _Lane(model=model, depth=self.metrics.queue_depth.labels(name))
                lane.worker = asyncio.create_task(self._work(lane), name=f"batcher-{name}")
                self._lanes[name] = lane

    async def stop(self) -> None:
        """Stop the workers; requests still queued get a 503."""
        for lane in self._lanes.values():
            if lane.worker:
                lane.worker.cancel()
        for lane in self._lanes.values():
            if lane.worker:
                with contextlib.suppress(asyncio.CancelledError):
                    await lane.worker
            while lane.groups:
                group = lane.groups.popleft()
                if not group.future.done():
                    group.future.set_exception(ServiceBusy("the service is shutting down"))
        self._lanes.clear()
        if self._executor:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def queued_windows(self, model_name: str) -> int:
        lane = self._lanes.get(model_name)
        return lane.waiting if lane else 0

    @contextlib.contextmanager
    def incoming(self, model_name: str) -> Iterator[None]:
        """Mark a request that will submit windows for ``model_name`` soon (while it decodes, prepares)."""
        lane = self._lanes.get(model_name)
        if lane is None:  # batching off, or not running
            yield
            return
        lane.incoming += 1
        try:
            yield
        finally:
            lane.incoming -= 1
            lane.arrived.set()  # the worker re-checks whether anyone is still on the way

    def batching(self, model_name: str) -> bool:
        """Whether ``model_name``'s windows go through a batching lane (else: ``predict_here``)."""
        return model_name in self._lanes

    def predict_here(self, model_name: str, windows: np.ndarray) -> np.ndarray:
        """Batching off: ``predict``'s output, computed on the calling thread (a request's worker thread, so
        decoding, inference and picking take one thread hop, not three)."""
        if not self.running:
            raise RuntimeError("the batcher is not running; call start() first")
        model = self._models[model_name]
        if len(windows) == 0:
            return np.zeros((0, len(model.card.labels), windows.shape[-1]), dtype=np.float32)
        return self._run_chunked(model, windows)

    async def predict(self, model_name: str, windows: np.ndarray) -> np.ndarray:
        """Model output for ``windows`` (n, channels, samples), batched with other callers' windows."""
        if not self.running:
            raise RuntimeError("the batcher is not running; call start() first")
        model = self._models[model_name]
        if len(windows) == 0:
            return np.zeros((0, len(model.card.labels), windows.shape[-1]), dtype=np.float32)
        loop = asyncio.get_running_loop()
        if not self.settings.enabled:
            return await loop.run_in_executor(self._executor, self._run_chunked, model, windows)
        lane = self._lanes[model_name]
        if lane.waiting + len(windows) > self.settings.max_queue_windows:
            raise ServiceBusy(
                f"{lane.waiting} windows are waiting for inference, over the limit of "
                f"{self.settings.max_queue_windows}; retry later",
                headers={"Retry-After": "1"},
            )
        step = self.settings.max_batch
        futures = []
        for start in range(0, len(windows), step):
            group = _Group(windows[start : start + step], loop.create_future())
            lane.groups.append(group)
            lane.waiting += group.size
            futures.append(group.future)
        lane.depth.set(lane.waiting)
        lane.arrived.set()
        try:
            outputs = await asyncio.gather(*futures)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs)

    async def _work(self, lane: _Lane) -> None:
        """Form batches from ``lane`` and run them, forever (until cancelled)."""
        loop = asyncio.get_running_loop()
        wait_s = self.settings.max_wait_ms / 1000.0
        while True:
            while not lane.groups:
                lane.arrived.clear()
                await lane.arrived.wait()
            deadline = loop.time() + wait_s
            while (
                lane.incoming > 0
                and lane.waiting < self.settings.max_batch
                and (remaining := deadline - loop.time()) > 0
            ):
                lane.arrived.clear()
                try:
                    await asyncio.wait_for(lane.arrived.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            batch = self._take_batch(lane)
            if not batch:
                continue
            try:
                outputs = await loop.run_in_executor(
                    self._executor, self._run, lane.model, [g.windows for g in batch]
                )
            except Exception as error:  # the model failed: every caller in the batch learns why
                log.exception("inference failed for a batch of %d groups", len(batch))
                for group in batch:
                    if not group.future.done():
                        group.future.set_exception(error)
                continue
            position = 0
            for group in batch:
                if not group.future.done():
                    group.future.set_result(outputs[position : position + group.size])
                position += group.size

    def _take_batch(self, lane: _Lane) -> list[_Group]:
        """Pop groups up to ``max_batch`` windows (cancelled ones are dropped)."""
        batch: list[_Group] = []
        total = 0
        while lane.groups:
            group = lane.groups[0]
            if group.future.done():  # cancelled: its request timed out or went away
                lane.groups.popleft()
                lane.waiting -= group.size
                continue
            if batch and total + group.size > self.settings.max_batch:
                break
            lane.groups.popleft()
            lane.waiting -= group.size
            batch.append(group)
            total += group.size
        lane.depth.set(lane.waiting)
        return batch

    def _run(self, model: OnnxModel, parts: list[np.ndarray]) -> np.ndarray:
        """One onnxruntime call over the concatenated parts (on an executor thread)."""
        windows = parts[0] if len(parts) == 1 else np.concatenate(parts)
        start = time.perf_counter()
        outputs = model.predict(windows)
        self.metrics.record_inference(model.name, len(windows), time.perf_counter() - start)
        return outputs

    def _run_chunked(self, model: OnnxModel, windows: np.ndarray) -> np.ndarray:
        """Batching off: this request's windows alone, in calls of at most ``max_batch`` windows."""
        step = self.settings.max_batch
        outputs = [self._run(model, [windows[i : i + step]]) for i in range(0, len(windows), step)]
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs)
