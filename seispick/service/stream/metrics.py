"""Prometheus metrics of the real-time job, labelled by network (never by station: bounded cardinality).

Latencies are observed as events happen; counters and gauges that the picker, sources and publisher
already keep are read at scrape time, from a :class:`StreamSnapshot` the runtime hands over, so they cannot
drift from the source of truth (and this module needs nothing of the runtime).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import obspy
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from seispick.models.picks import Pick

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 120, 300)


@dataclass(frozen=True)
class StreamSnapshot:
    """The real-time job's state at one scrape."""

    stations: list[dict]  # StreamPicker.station_states()
    record_problems: dict[str, int]  # records refused by the picker, by kind
    sources: dict  # SourceManager.state()
    publisher: dict  # PickPublisher.stats()
    buffer_bytes: int
    windows_in_flight: int
    oldest_window_s: float
    behind_for_s: float  # how long the job has been behind (0 while keeping up)
    ingest_held_s: float  # total time ingest waited for room (backpressure)
    dropped_windows: int  # windows never run


Snapshot = Callable[[], StreamSnapshot]


class StreamMetrics:
    """Histograms observed by the runtime plus a scrape-time collector over its state."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.data_latency = Histogram(
            "seispick_data_latency_seconds",
            "Arrival time minus the end time of each record",
            ["network"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.pick_latency = Histogram(
            "seispick_pick_latency_seconds",
            "From the arrival of the record that completed a pick's last window to its publication",
            ["network", "phase"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._registry = registry
        self._snapshot: Snapshot | None = None

    def attach(self, snapshot: Snapshot) -> None:
        """Read the job's counters from ``snapshot()`` at every scrape (the latest attached wins)."""
        if self._snapshot is None:
            self._registry.register(_SnapshotCollector(self))
        self._snapshot = snapshot

    def observe_record(self, trace: obspy.Trace, latency: float) -> None:
        self.data_latency.labels(trace.stats.network).observe(max(latency, 0.0))

    def observe_emit(self, item, latency: float) -> None:
        network = item.trace_id.split(".")[0]
        phase = item.phase if isinstance(item, Pick) else "detection"
        self.pick_latency.labels(network, phase).observe(max(latency, 0.0))


class _SnapshotCollector:
    def __init__(self, owner: StreamMetrics) -> None:
        self.owner = owner

    def describe(self):
        return []

    def collect(self):
        if self.owner._snapshot is None:
            return
        snap = self.owner._snapshot()
        states = snap.stations
        streaming = GaugeMetricFamily(
            "seispick_stations", "Instruments by state", labels=["network", "state"]
        )
        counts: dict[tuple[str, str], int] = defaultdict(int)
        sums: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        lag: dict[str, float] = defaultdict(float)
        for s in states:
            counts[(s["network"], s["state"])] += 1
            lag[s["network"]] = max(lag[s["network"]], s["lag_s"])
            for key in (
                "records",
                "samples",
                "gaps",
                "late_records",
                "duplicate_records",
                "windows",
                "picks",
            ):
                sums[key][s["network"]] += s[key]
        for (network, state), n in counts.items():
            streaming.add_metric([network, state], n)
        yield streaming
        yield from _overload_families(snap, lag)
        names = {
            "records": ("seispick_records_ingested", "Records taken by the stream picker"),
            "samples": ("seispick_samples_ingested", "Samples stored by the stream picker"),
            "gaps": ("seispick_gaps", "Gaps that split an instrument's data"),
            "late_records": ("seispick_late_records", "Records too late to be used"),
            "duplicate_records": ("seispick_duplicate_records", "Records already received"),
            "windows": ("seispick_stream_windows", "Windows formed from streamed data"),
        }
        for key, (name, doc) in names.items():
            family = CounterMetricFamily(name, doc, labels=["network"])
            for network, value in sums[key].items():
                family.add_metric([network], value)
            yield family
        problems = CounterMetricFamily("seispick_record_errors", "Records refused, by kind", labels=["kind"])
        sources = snap.sources
        totals = sources["totals"]
        for kind, value in snap.record_problems.items():
            problems.add_metric([kind], value)
        problems.add_metric(["decode"], totals.get("decode_errors", 0))
        problems.add_metric(["source_bad_rate"], totals.get("bad_rate", 0))
        yield problems
        reconnects = CounterMetricFamily("seispick_source_reconnects", "SeedLink reconnections")
        reconnects.add_metric([], totals.get("reconnects", 0))
        yield reconnects
        connected = GaugeMetricFamily("seispick_sources_running", "Ingest sources running")
        connected.add_metric([], sources["running"])
        yield connected
        buffer = GaugeMetricFamily(
            "seispick_buffer_bytes", "Bytes in per-instrument sample and stack buffers"
        )
        buffer.add_metric([], snap.buffer_bytes)
        yield buffer
        stats = snap.publisher
        outbox = GaugeMetricFamily("seispick_outbox_depth", "Picks waiting for Redis (memory and disk)")
        outbox.add_metric([], stats.get("depth", 0))
        yield outbox
        failures = CounterMetricFamily("seispick_publish_failures", "Failed deliveries to Redis (retried)")
        failures.add_metric([], stats.get("failures", 0))
        yield failures
        published = CounterMetricFamily("seispick_published", "Picks and detections published")
        published.add_metric([], stats.get("published", 0))
        yield published


def _overload_families(snap: StreamSnapshot, lag: dict[str, float]):
    """Whether and how far the job is behind, its backlog, and everything it dropped."""
    lag_family = GaugeMetricFamily(
        "seispick_stream_lag_seconds",
        "Largest lag of an instrument (data latency growth or inference wait), by network",
        labels=["network"],
    )
    for network, seconds in lag.items():
        lag_family.add_metric([network], seconds)
    yield lag_family
    yield GaugeMetricFamily(
        "seispick_stream_behind_seconds",
        "How long the stream has been behind (0 while it keeps up)",
        value=snap.behind_for_s,
    )
    yield GaugeMetricFamily(
        "seispick_stream_windows_in_flight", "Windows waiting for inference", value=snap.windows_in_flight
    )
    yield GaugeMetricFamily(
        "seispick_stream_oldest_window_seconds",
        "Age of the oldest window waiting for inference",
        value=snap.oldest_window_s,
    )
    yield CounterMetricFamily(
        "seispick_stream_ingest_held_seconds",
        "Time ingest waited for the model to catch up (backpressure)",
        value=snap.ingest_held_s,
    )
    dropped = CounterMetricFamily(
        "seispick_stream_dropped",
        "Items lost: windows never run (inference failing at shutdown), picks refused by a full outbox "
        "without spill folder, picks a slow live subscriber missed",
        labels=["what"],
    )
    dropped.add_metric(["window"], snap.dropped_windows)
    dropped.add_metric(["outbox_full"], snap.publisher.get("dropped", 0))
    dropped.add_metric(["slow_subscriber"], snap.publisher.get("subscriber_dropped", 0))
    yield dropped
