"""Prometheus metrics of the real-time job, labelled by network (never by station: bounded cardinality).

Latencies are observed as events happen; counters and gauges that the picker, sources and publisher
already keep are read at scrape time by a collector, so they cannot drift from the source of truth.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

import obspy
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from seispick.models.picks import Pick

if TYPE_CHECKING:  # pragma: no cover
    from seispick.service.stream.runtime import StreamingRuntime

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 120, 300)


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
        self._runtime: StreamingRuntime | None = None

    def attach(self, runtime: StreamingRuntime) -> None:
        if self._runtime is None:
            self._registry.register(_RuntimeCollector(self))
        self._runtime = runtime

    def observe_record(self, trace: obspy.Trace, latency: float) -> None:
        self.data_latency.labels(trace.stats.network).observe(max(latency, 0.0))

    def observe_emit(self, item, latency: float) -> None:
        network = item.trace_id.split(".")[0]
        phase = item.phase if isinstance(item, Pick) else "detection"
        self.pick_latency.labels(network, phase).observe(max(latency, 0.0))


class _RuntimeCollector:
    def __init__(self, owner: StreamMetrics) -> None:
        self.owner = owner

    def describe(self):
        return []

    def collect(self):
        runtime = self.owner._runtime
        if runtime is None:
            return
        states = runtime.picker.station_states()
        streaming = GaugeMetricFamily(
            "seispick_stations", "Instruments by state", labels=["network", "state"]
        )
        counts: dict[tuple[str, str], int] = defaultdict(int)
        sums: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for s in states:
            counts[(s["network"], s["state"])] += 1
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
        sources = runtime.sources.state()
        totals = sources["totals"]
        for kind, value in runtime.picker.problems.counts.items():
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
        buffer.add_metric([], runtime.picker.buffer_bytes())
        yield buffer
        stats = runtime.publisher.stats()
        outbox = GaugeMetricFamily("seispick_outbox_depth", "Picks waiting for Redis (memory and disk)")
        outbox.add_metric([], stats.get("depth", 0))
        yield outbox
        failures = CounterMetricFamily("seispick_publish_failures", "Failed deliveries to Redis (retried)")
        failures.add_metric([], stats.get("failures", 0))
        yield failures
        published = CounterMetricFamily("seispick_published", "Picks and detections published")
        published.add_metric([], stats.get("published", 0))
        yield published
