"""``seispick serve --workers N``: N picking processes for the real-time job, supervised by the API process.

Worker ``i`` of ``N`` (:mod:`.worker`, a subprocess) picks the stations of this replica's shard for which
``StreamingSettings.worker_of(net, sta, N) == i``: the replica's shard (``crc32 % shard_count``) divided
further by the same hash, so a replica picks the same stations whatever its N, and replicas with different
core counts still cover every station once. Each worker runs its own sources (a concrete station list is
subscribed only for its stations; with wildcards, other stations' records are skipped by header, before
decoding), its own micro-batcher and model, and forwards every pick and detection to the API process.

Publication: the API process's single :class:`PickPublisher` publishes everything the workers forward, so the
outbox semantics are unchanged: one in-order outbox with one spill folder (whose file outlives a change of N),
deterministic ids, the Lua dedupe in Redis, and the live subscribers (SSE, WebSocket) and recent picks
fed from the same process that serves them. A pick a restarted worker emits again (it resumes from its kept
positions with ``keep_positions``, else from ``begin_time`` when one is set, else from the live end, like a
restarted replica) is a repeat the publisher or Redis drops. Kept positions come from the workers over their
channels, after the picks they cover, and are written here (:mod:`.positions`).

Like a :class:`StreamingRuntime`, this pool is a :class:`~.job.RealtimeJob`: ``publisher``, ``selection``,
``refresh()`` (fetches every worker's stations and state; before ``/v1/stations`` and ``/metrics``),
``station_states()``, ``state()``, ``snapshot()`` (merged, for the metrics) and ``unready_reason()``.
Latency histograms and onnxruntime calls arrive every second from each worker and are added to the API
process's metrics. A worker that exits is logged and restarted (backing off from 1 to 30 s); stopping the
service stops every worker, which first emits its last picks.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import obspy

from seispick.replay.server import SeedLinkReplayServer
from seispick.service.app_metrics import ServiceMetrics
from seispick.service.settings import Settings
from seispick.service.stream.channel import Channel, WorkerInit
from seispick.service.stream.job_metrics import (
    StreamMetrics,
    StreamSnapshot,
    merge_snapshots,
    merge_source_states,
)
from seispick.service.stream.positions import PositionKeeper, make_store
from seispick.service.stream.runtime import make_publisher, selection_specs, source_configs, start_demo
from seispick.service.stream.selector_check import SelectionWatch

log = logging.getLogger(__name__)

WORKER_MODULE = "seispick.service.stream.worker_main"
VIEW_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 60.0  # a worker flushes its picker (up to 30 s) before it exits
RESTART_MIN_S, RESTART_MAX_S = 1.0, 30.0
REFRESH_REUSE_S = 0.5  # concurrent requests within this share one round of views


@dataclass
class WorkerHandle:
    """One worker slot: its current process, channel and what it last reported."""

    index: int
    status: str = "starting"  # starting, running, restarting, stopping, stopped
    pid: int | None = None
    starts: int = 0
    restarts: int = 0
    last_exit: str | None = None
    process: asyncio.subprocess.Process | None = None
    channel: Channel | None = None
    task: asyncio.Task | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    unready: str | None = None  # its stream's reason to fail readiness (behind too long)
    view: dict | None = None  # the last answer to "view": snapshot, state, selection counts
    selection: list = field(default_factory=list)  # its selector counts
    pending: dict[int, asyncio.Future] = field(default_factory=dict)

    def row(self) -> dict:
        return {
            "index": self.index,
            "status": self.status,
            "pid": self.pid,
            "starts": self.starts,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
        }


class WorkerPool:
    """The real-time job in N processes (a :class:`~.job.RealtimeJob`); see the module docstring."""

    def __init__(self, settings: Settings, metrics: StreamMetrics, service_metrics: ServiceMetrics) -> None:
        self.settings = settings
        self.config = settings.streaming
        self.count = self.config.worker_count()
        self.metrics = metrics
        self.service_metrics = service_metrics
        self.publisher = make_publisher(settings)
        self.publisher.on_delivered = self._observe_delivery
        self.tee: Callable[[obspy.Trace], None] | None = None  # the workers' horizontal records (live ML)
        self.selection = SelectionWatch((), self.config.owns, self.config.selector_grace_s)
        self.replay: SeedLinkReplayServer | None = None
        self.workers = [WorkerHandle(i) for i in range(self.count)]
        self._stopping = False
        self._stopped = asyncio.Event()
        self._judge: asyncio.Task | None = None
        self._ids = itertools.count()
        self._refreshed = -float("inf")
        self._refreshing: asyncio.Task | None = None
        self.keeper: PositionKeeper | None = None  # kept positions: the workers offer, this process keeps
        self._keeping: asyncio.Task | None = None
        metrics.attach(self.snapshot)

    async def start(self) -> None:
        await self.publisher.start()
        if self.config.keep_positions:
            store = make_store(self.settings.redis_url, self.config.positions_key, self.config.state_dir)
            self.keeper = PositionKeeper(store, self.publisher, slots=self.count)
            self._keeping = asyncio.create_task(self._keep_positions(), name="positions")
        demo_port = None
        if self.settings.demo:
            self.replay = await start_demo()
            demo_port = self.replay.port
        specs = selection_specs(source_configs(self.settings, demo_port))
        self.selection = SelectionWatch(
            specs, self.config.owns, self.config.selector_grace_s, self.selection.warnings
        )
        for worker in self.workers:
            worker.task = asyncio.create_task(
                self._supervise(worker, demo_port), name=f"worker-{worker.index}"
            )
        self._judge = asyncio.create_task(self._start_selection())
        log.info("real-time picking in %d worker processes", self.count)

    async def stop(self) -> None:
        """Stop every worker (each emits its last picks first), then the demo server and the publisher."""
        self._stopping = True
        self._stopped.set()
        if self._judge is not None:
            self._judge.cancel()
        self.selection.stop()
        for worker in self.workers:
            if worker.channel is not None:
                worker.status = "stopping"
                worker.channel.send(("stop",))
        tasks = [w.task for w in self.workers if w.task is not None]
        _, late = await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S) if tasks else (set(), set())
        for worker in self.workers:
            if worker.task in late and worker.process is not None and worker.process.returncode is None:
                log.error("worker %d did not stop within %.0f s: killed", worker.index, STOP_TIMEOUT_S)
                worker.process.kill()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.replay is not None:
            await self.replay.stop()
        if self._keeping is not None:
            self._keeping.cancel()
            await asyncio.gather(self._keeping, return_exceptions=True)
        await self.publisher.stop()
        if self.keeper is not None:  # the workers' last positions, once their picks are delivered
            await self.keeper.flush()
            await self.keeper.store.close()

    async def _keep_positions(self) -> None:
        assert self.keeper is not None
        while True:
            await asyncio.sleep(self.config.positions_every_s)
            try:
                await self.keeper.flush()
            except Exception:  # noqa: BLE001 - positions must never stop the job
                log.exception("kept positions: writing failed")

    # -- supervision --------------------------------------------------------------------------------------------
    async def _supervise(self, worker: WorkerHandle, demo_port: int | None) -> None:
        delay = RESTART_MIN_S
        while not self._stopping:
            started = time.monotonic()
            try:
                code = await self._run(worker, demo_port)
            except Exception as exc:  # noqa: BLE001 - the pool keeps supervising
                log.exception("worker %d could not be run", worker.index)
                code = f"{type(exc).__name__}: {exc}"
            if self._stopping:
                worker.status = "stopped"
                return
            worker.restarts += 1
            worker.status = "restarting"
            worker.last_exit = f"exit code {code}" if isinstance(code, int) else str(code)
            if time.monotonic() - started > 60:
                delay = RESTART_MIN_S
            log.error(
                "picking worker %d (pid %s) exited (%s); restarting it in %.0f s (restart %d)",
                worker.index, worker.pid, worker.last_exit, delay, worker.restarts,
            )  # fmt: skip
            with contextlib.suppress(asyncio.TimeoutError):  # stop() ends the wait
                await asyncio.wait_for(self._stopped.wait(), delay)
            delay = min(delay * 2, RESTART_MAX_S)

    async def _run(self, worker: WorkerHandle, demo_port: int | None) -> int:
        """Start the worker's process, serve its channel until it exits; its exit code."""
        ours, theirs = socket.socketpair()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", WORKER_MODULE, str(theirs.fileno()), pass_fds=(theirs.fileno(),)
            )
        finally:
            theirs.close()
        worker.process, worker.pid = process, process.pid
        worker.starts += 1
        worker.status = "starting"
        worker.ready.clear()
        channel = worker.channel = await Channel.connect(ours)
        channel.send(WorkerInit(self.settings, worker.index, self.count, demo_port))
        reader = asyncio.create_task(self._read(worker, channel))
        try:
            code = await process.wait()
            with contextlib.suppress(asyncio.TimeoutError):  # what it sent before exiting is still read
                await asyncio.wait_for(asyncio.shield(reader), 10.0)
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            await channel.close()
            worker.channel = None
            worker.view, worker.unready, worker.selection = None, None, []
            for future in worker.pending.values():
                future.cancel()
            worker.pending.clear()
            self._update_selection()
        return code

    async def _read(self, worker: WorkerHandle, channel: Channel) -> None:
        while True:
            try:
                message = await channel.recv()
            except EOFError:
                return
            kind = message[0]
            if kind == "item":
                self.publisher.publish(message[1])
            elif kind == "trace":
                if self.tee is not None:
                    self.tee(message[1])
            elif kind == "positions":
                if self.keeper is not None:
                    self.keeper.offer(message[1], worker.index)
            elif kind == "status":
                self._absorb(worker, message[1])
            elif kind == "reply":
                future = worker.pending.pop(message[1], None)
                if future is not None and not future.done():
                    future.set_result(message[2])
            elif kind == "ready":
                worker.status = "running" if not self._stopping else worker.status
                worker.ready.set()
                log.info("worker %d (pid %s) picking: %s", worker.index, worker.pid, message[1])
            elif kind == "stopped":
                worker.status = "stopped"

    def _absorb(self, worker: WorkerHandle, status: dict) -> None:
        self.metrics.absorb(status["latency"])
        for model, windows, seconds in status["inference"]:
            self.service_metrics.record_inference(model, windows, seconds)
        worker.unready = status["unready"]
        worker.selection = status["selection"]
        self._update_selection()

    # -- selection: judged here, from every worker's counts -----------------------------------------------------
    async def _start_selection(self) -> None:
        """Start the grace period of the station selectors once every worker is up (as one process would)."""
        await asyncio.gather(*(w.ready.wait() for w in self.workers))
        self.selection.start()

    def _update_selection(self) -> None:
        rows = [w.selection for w in self.workers if w.selection]
        if rows:
            self.selection.set_counts([tuple(map(sum, zip(*column))) for column in zip(*rows)])
        else:
            self.selection.set_counts([(0, 0)] * len(self.selection.selectors))

    # -- roles --------------------------------------------------------------------------------------------------
    def set_roles(self, shadow_models: list[str]) -> None:
        """A promotion: tell every running worker (its pickers start or stop pick updates); a worker started
        later gets the settings, already changed by the promotion."""
        for worker in self.workers:
            if worker.channel is not None:
                worker.channel.send(("roles", list(shadow_models)))

    # -- views --------------------------------------------------------------------------------------------------
    async def refresh(self) -> None:
        """Fetch every running worker's stations and state (shared by requests within ``REFRESH_REUSE_S``)."""
        if self._refreshing is None or self._refreshing.done():
            if time.monotonic() - self._refreshed < REFRESH_REUSE_S:
                return
            self._refreshing = asyncio.create_task(self._fetch_views())
        await asyncio.shield(self._refreshing)

    async def _fetch_views(self) -> None:
        await asyncio.gather(*(self._ask(w) for w in self.workers if w.channel and w.ready.is_set()))
        self._refreshed = time.monotonic()

    async def _ask(self, worker: WorkerHandle) -> None:
        channel = worker.channel
        if channel is None:
            return
        request = next(self._ids)
        future = worker.pending[request] = asyncio.get_running_loop().create_future()
        channel.send(("view", request))
        try:
            view = await asyncio.wait_for(future, VIEW_TIMEOUT_S)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            worker.pending.pop(request, None)
            log.warning("worker %d did not answer within %.0f s; showing its last view", worker.index,
                        VIEW_TIMEOUT_S)  # fmt: skip
            return
        if view is not None:
            worker.view = view
            worker.selection = view["selection"]
            self._update_selection()

    def _views(self) -> list[tuple[int, dict]]:
        return [(w.index, w.view) for w in self.workers if w.view is not None]

    def _observe_delivery(self, kind: str, seconds: float) -> None:
        if kind in ("pick", "pick_update"):
            self.metrics.observe_stage("publication", seconds)

    def station_states(self) -> list[dict]:
        """Every worker's instruments (``worker`` says whose), by trace id."""
        rows = []
        for index, view in self._views():
            for row in view["snapshot"].stations:
                rows.append({**row, "worker": index})
        return sorted(rows, key=lambda row: row["trace_id"])

    def state(self) -> dict:
        """As ``StreamingRuntime.state()``, summed over the workers, plus each worker's process."""
        now = time.time()
        states = [view["state"] for _, view in self._views()]
        problems: dict[str, int] = defaultdict(int)
        for state in states:
            for kind, value in state["record_problems"].items():
                problems[kind] += value
        return {
            "sources": merge_source_states([s["sources"] for s in states]),
            "publisher": self.publisher.stats(),
            "record_problems": dict(problems),
            "outside_shard_records": sum(s["outside_shard_records"] for s in states),
            "selection": self.selection.state(now),
            "overload": _merge_overload([(i, view["state"]["overload"]) for i, view in self._views()]),
            "workers": [w.row() for w in self.workers],
            "checked_at": now,
        }

    def snapshot(self) -> StreamSnapshot:
        """Counters and gauges of every worker for a metrics scrape (as of the last ``refresh()``)."""
        return merge_snapshots([view["snapshot"] for _, view in self._views()], self.publisher.stats())

    def unready_reason(self) -> str | None:
        """A worker not (yet, or no longer) picking, else the workers' streams behind for too long."""
        for worker in self.workers:
            if worker.status != "running":
                after = f" after {worker.last_exit}" if worker.status == "restarting" else ""
                return f"picking worker {worker.index} {worker.status}{after}"
        reasons = [f"worker {w.index}: {w.unready}" for w in self.workers if w.unready]
        return "; ".join(reasons) or None


def _merge_overload(parts: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    overloads = [o for _, o in parts]
    return {
        "behind": any(o["behind"] for o in overloads),
        "behind_for_s": max((o["behind_for_s"] for o in overloads), default=0.0),
        "summary": "; ".join(f"worker {i}: {o['summary']}" for i, o in parts if o["summary"]),
        "episodes": sum(o["episodes"] for o in overloads),
        "windows_in_flight": sum(o["windows_in_flight"] for o in overloads),
        "oldest_window_s": max((o["oldest_window_s"] for o in overloads), default=0.0),
        "ingest_held_s": round(sum(o["ingest_held_s"] for o in overloads), 3),
        "dropped_windows": sum(o["dropped_windows"] for o in overloads),
    }
