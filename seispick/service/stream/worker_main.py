"""One picking process of ``seispick serve --workers N``: ``python -m seispick.service.stream.worker_main FD``.

Started by :class:`~seispick.service.stream.worker_pool.WorkerPool` with one end of a socket pair as ``FD``. It
loads the stream's models (one onnxruntime thread per core it stands for), runs a
:class:`~seispick.service.stream.runtime.StreamingRuntime` for its slot with its own micro-batcher, forwards
every pick and detection to the API process as it is emitted, reports readiness, latency histograms and
inference calls every second, answers ``view`` requests (stations and state) and stops, flushing its last
picks, on ``stop`` or SIGTERM. SIGINT is ignored (Ctrl-C reaches the whole process group; the API process
stops its workers in order). When the API process goes away (the channel closes) it stops at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
from collections import deque
from collections.abc import Callable

import obspy
from prometheus_client import CollectorRegistry

try:
    import uvloop
except ImportError:  # Windows, or installed without it: asyncio's own loop
    uvloop = None

from seispick.events.live_magnitude import responding_stations, ring_selector
from seispick.events.stations import read_stations
from seispick.models.registry import ModelRegistry
from seispick.picking.results import Detection, Pick
from seispick.service.app_metrics import ServiceMetrics
from seispick.service.batcher import MicroBatcher
from seispick.service.settings import available_cores, stations_path
from seispick.service.stream.channel import Channel, WorkerInit
from seispick.service.stream.job_metrics import StreamMetrics
from seispick.service.stream.positions import Positions
from seispick.service.stream.runtime import Slot, StreamingRuntime

log = logging.getLogger(__name__)

STATUS_S = 1.0


class InferenceTally(ServiceMetrics):
    """The batcher's metrics, with each onnxruntime call kept for the API process to record."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: deque[tuple[str, int, float]] = deque()  # appended on the batcher's executor thread

    def record_inference(self, model: str, windows: int, seconds: float) -> None:
        self.calls.append((model, windows, seconds))

    def take(self) -> list[tuple[str, int, float]]:
        return [self.calls.popleft() for _ in range(len(self.calls))]


class Worker:
    """The picking process's life: start, serve the channel, stop."""

    def __init__(self, init: WorkerInit, channel: Channel) -> None:
        self.init = init
        self.channel = channel
        self.settings = init.settings
        self.tally = InferenceTally()
        self.metrics = StreamMetrics(CollectorRegistry())
        self.stopping = asyncio.Event()
        self.parent_gone = False
        self.runtime: StreamingRuntime | None = None
        self._ring_keeps: Callable[[str], bool] = lambda trace_id: False  # records the live-ML ring takes

    async def serve(self) -> None:
        settings, init = self.settings, self.init
        names = settings.streaming.stream_models(settings.default_model)  # pickers and detectors
        threads = settings.inference_threads or max(available_cores() // init.count, 1)
        registry = ModelRegistry(settings.model_dirs or None)
        backend = settings.inference_backend
        models = [await asyncio.to_thread(registry.load, name, threads, backend=backend) for name in names]
        batcher = MicroBatcher({m.name: m for m in models}, settings.batching, self.tally, executor_threads=1)
        await batcher.start()
        self.runtime = runtime = StreamingRuntime(
            settings,
            models,
            batcher.predict,
            self.metrics,
            slot=Slot(init.index, init.count),
            sink=self._forward,
            demo_port=init.demo_port,
            offer_positions=self._offer_positions,
        )
        if settings.events.active(settings.demo) and settings.events.magnitudes:
            # the API process measures live magnitudes: send it the records its ring keeps, and only those
            stations = await asyncio.to_thread(read_stations, stations_path(settings))
            self._ring_keeps = ring_selector(stations)
            if responding_stations(stations):
                runtime.tee = self._forward_trace
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        commands = asyncio.create_task(self._commands())
        await runtime.start()
        self.channel.send(("ready", {"pid": os.getpid(), "model": ",".join(names), "threads": threads}))
        status = asyncio.create_task(self._status_loop())
        await self.stopping.wait()
        status.cancel()
        commands.cancel()
        await asyncio.gather(status, commands, return_exceptions=True)
        await runtime.stop(flush=not self.parent_gone)
        await batcher.stop()
        if not self.parent_gone:
            self._send_status()  # the last latencies and inference calls
            self.channel.send(("stopped",))
            await self.channel.drain()
        await self.channel.close()

    def _forward(self, item: Pick | Detection) -> None:
        self.channel.send(("item", item))

    def _forward_trace(self, trace: obspy.Trace) -> None:
        if self._ring_keeps(trace.id):
            self.channel.send(("trace", trace))

    def _offer_positions(self, positions: Positions) -> None:
        """Kept positions go after the picks they cover: the API process keeps them once those are delivered."""
        if not self.parent_gone:
            self.channel.send(("positions", positions))

    async def _commands(self) -> None:
        while True:
            try:
                message = await self.channel.recv()
            except EOFError:
                log.warning("the API process is gone: stopping")
                self.parent_gone = True
                self.stopping.set()
                return
            if message[0] == "stop":
                self.stopping.set()
                return
            if message[0] == "view":
                self.channel.send(("reply", message[1], self._view()))
            elif message[0] == "roles" and self.runtime is not None:  # a promotion (promotion.py)
                self.runtime.set_roles(message[1])

    def _view(self) -> dict | None:
        runtime = self.runtime
        if runtime is None or not runtime.sources.started_at:
            return None
        sources = runtime.sources.state()  # one walk over the stations for both
        return {
            "snapshot": runtime.snapshot(sources),
            "state": runtime.state(sources),
            "selection": runtime.selection.counts(),
        }

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(STATUS_S)
            self._send_status()

    def _send_status(self) -> None:
        runtime = self.runtime
        assert runtime is not None
        self.channel.send(
            (
                "status",
                {
                    "unready": runtime.unready_reason(),
                    "latency": self.metrics.take(),
                    "inference": self.tally.take(),
                    "selection": runtime.selection.counts(),
                    "instruments": len(runtime.picker.instruments),
                },
            )
        )


async def run(sock: socket.socket) -> None:
    channel = await Channel.connect(sock)
    init: WorkerInit = await channel.recv()
    logging.basicConfig(
        level=logging.DEBUG if init.settings.log_level.lower() == "debug" else logging.WARNING,
        format=f"seispick worker {init.index}/{init.count} (pid {os.getpid()}): %(levelname)s %(name)s: "
        "%(message)s",
    )
    await Worker(init, channel).serve()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=int(args[0]))
    # A picking process allocates a few objects per record and per window, most of them short-lived: collect
    # the young generation less often, and leave what start-up built (modules, the model) out of collections.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    with contextlib.suppress(KeyboardInterrupt):
        if uvloop is not None:  # as the API process (uvicorn's loop): cheaper socket and timer handling
            uvloop.run(run(sock))
        else:
            asyncio.run(run(sock))


if __name__ == "__main__":
    main()
