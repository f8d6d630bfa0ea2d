"""The real-time job as the API sees it (``RealtimeJob``), and the callback types a record passes through.

A record's path, by type: a source (:class:`seispick.feed.Source`) hands each trace to its
:data:`~seispick.feed.TraceCallback` (``StreamingRuntime._on_trace``), which gives it to
``StreamPicker.add_trace``; the picker hands every final pick and detection, with its latency, to its
:data:`~seispick.service.stream.picker.EmitCallback` (``StreamingRuntime._emit``), which counts it and passes
it on to a :data:`PickSink`: ``PickPublisher.publish`` in one process or, in a picking process of
``serve --workers N``, the channel to the API process, where ``WorkerPool`` publishes it.

Two classes are a ``RealtimeJob``: :class:`~seispick.service.stream.runtime.StreamingRuntime` (the job in the
API process) and :class:`~seispick.service.stream.worker_pool.WorkerPool` (the job in N picking processes).
A ``StreamingRuntime`` inside a picking process hands its picks to a sink and has no publisher: it is not one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import obspy

from seispick.picking.results import Detection, Pick
from seispick.service.publish.publisher import PickPublisher
from seispick.service.stream.job_metrics import StreamSnapshot
from seispick.service.stream.selector_check import SelectionWatch

# takes each final pick or detection (what it returns, such as the published id, is not used)
PickSink = Callable[[Pick | Detection], object]


@runtime_checkable
class RealtimeJob(Protocol):
    """Sources -> picking -> publisher, started and stopped by the service lifecycle, read by the routers."""

    selection: SelectionWatch  # the station selectors and whether they match (start-up warnings added to it)
    tee: Callable[[obspy.Trace], None] | None  # also gets every horizontal record taken (live magnitudes)

    @property
    def publisher(self) -> PickPublisher:
        """Where the job's picks and detections (and the live events) are published."""
        ...

    async def start(self) -> None:
        """Start the publisher, then the picking and the sources."""
        ...

    async def stop(self) -> None:
        """Stop the sources, emit the last picks, then stop the publisher (its final publish)."""
        ...

    async def refresh(self) -> None:
        """Bring ``station_states``, ``state`` and ``snapshot`` up to date (a pool asks its workers)."""
        ...

    def set_roles(self, shadow_models: list[str]) -> None:
        """A promotion: these stream models are shadow models from now on, the others live (their pickers
        publish pick updates); every model keeps its state."""
        ...

    def station_states(self) -> list[dict]:
        """Per instrument: last sample, data latency, lag, gaps, counters and state."""
        ...

    def state(self) -> dict:
        """Sources, publication, record problems, selection and overload, for operators."""
        ...

    def snapshot(self) -> StreamSnapshot:
        """Counters and gauges for a metrics scrape."""
        ...

    def unready_reason(self) -> str | None:
        """Why ``/readyz`` should fail because of the stream, or None."""
        ...
