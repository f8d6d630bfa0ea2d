"""Prometheus metrics of the real-time job, labelled by network (never by station: bounded cardinality).

Latencies are observed as events happen, into bucket counts of our own (:class:`LatencyHistogram`) so that
the picking processes of ``serve --workers N`` can hand theirs to the API process as deltas, which adds them
up (:meth:`StreamMetrics.take` / :meth:`StreamMetrics.absorb`). Counters and gauges that the picker, sources
and publisher already keep are read at scrape time, from a :class:`StreamSnapshot` the runtime hands over
(for several processes, :func:`merge_snapshots` of theirs), so they cannot drift from the source of truth
(and this module needs nothing of the runtime).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import obspy
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from seispick.picking.results import Pick

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 120, 300)
# The latency budget of a pick, stage by stage (README "Latency budget"; association is the associator's own
# seispick_association_latency_seconds):
STAGES = (
    "record",  # a record's arrival minus its last sample (the datalogger's packing and the network)
    "window",  # a final pick: its last window's data arrival minus its peak_time, less the record stage
    "first_look",  # a preliminary pick: the same for the window that first crossed the threshold
    "inference",  # that record's arrival to the pick handed to the publisher: queue, model run, triggers
    "publication",  # the hand-over to the publisher to Redis's acknowledgement (outbox, network)
)


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
Buckets = dict[tuple[str, ...], list]  # label values -> [count per bucket (non-cumulative)..., sum]


@dataclass
class LatencyHistogram:
    """Counts per latency bucket and label values; mergeable across processes."""

    name: str
    documentation: str
    labels: tuple[str, ...]
    bounds: tuple[float, ...] = LATENCY_BUCKETS
    data: Buckets = field(default_factory=dict)

    def observe(self, values: tuple[str, ...], seconds: float) -> None:
        row = self.data.get(values)
        if row is None:
            row = self.data[values] = [0] * (len(self.bounds) + 1) + [0.0]
        row[bisect.bisect_left(self.bounds, seconds)] += 1  # le semantics: a value on a bound counts in it
        row[-1] += seconds

    def take(self) -> Buckets:
        """The counts since the last ``take`` (and forget them)."""
        data, self.data = self.data, {}
        return data

    def absorb(self, data: Buckets) -> None:
        """Add counts taken elsewhere."""
        for values, counts in data.items():
            row = self.data.get(values)
            if row is None:
                self.data[values] = list(counts)
            else:
                for i, count in enumerate(counts):
                    row[i] += count

    def family(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(self.name, self.documentation, labels=list(self.labels))
        for values, row in sorted(self.data.items()):
            cumulative, buckets = 0, []
            for bound, count in zip((*self.bounds, float("inf")), row):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else _bound(bound), cumulative))
            family.add_metric(list(values), buckets, row[-1])
        return family


def _bound(value: float) -> str:
    return repr(float(value))


class StreamMetrics:
    """Latency histograms observed by the runtime plus a scrape-time collector over its state."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.data_latency = LatencyHistogram(
            "seispick_data_latency_seconds", "Arrival time minus the end time of each record", ("network",)
        )
        self.pick_latency = LatencyHistogram(
            "seispick_pick_latency_seconds",
            "From the arrival of the record that completed a pick's last window to its publication",
            ("network", "phase"),
        )
        self.stage_latency = LatencyHistogram(
            "seispick_latency_stage_seconds",
            "A pick's latency budget by stage: record, window (final), first_look (preliminary), inference, "
            "publication",
            ("stage",),
        )
        self._snapshot: Snapshot | None = None
        registry.register(_SnapshotCollector(self))

    def attach(self, snapshot: Snapshot) -> None:
        """Read the job's counters from ``snapshot()`` at every scrape (the latest attached wins)."""
        self._snapshot = snapshot

    def observe_record(self, trace: obspy.Trace, latency: float) -> None:
        self.data_latency.observe((trace.stats.network,), max(latency, 0.0))
        self.stage_latency.observe(("record",), max(latency, 0.0))

    def observe_stage(self, stage: str, seconds: float) -> None:
        """One observation of a latency-budget stage (``STAGES``)."""
        self.stage_latency.observe((stage,), max(seconds, 0.0))

    def observe_emit(self, item, latency: float) -> None:
        network = item.trace_id.split(".")[0]
        phase = item.phase if isinstance(item, Pick) else "detection"
        self.pick_latency.observe((network, phase), max(latency, 0.0))

    def take(self) -> dict[str, Buckets]:
        """Latency counts since the last ``take``, for another process to :meth:`absorb`."""
        return {
            "data": self.data_latency.take(),
            "pick": self.pick_latency.take(),
            "stage": self.stage_latency.take(),
        }

    def absorb(self, taken: dict[str, Buckets]) -> None:
        self.data_latency.absorb(taken["data"])
        self.pick_latency.absorb(taken["pick"])
        self.stage_latency.absorb(taken.get("stage", {}))


def merge_snapshots(snapshots: Iterable[StreamSnapshot], publisher: dict) -> StreamSnapshot:
    """One snapshot of several picking processes (disjoint stations) publishing through ``publisher``:
    counts add up, the oldest window and the time behind are the worst of them."""
    snapshots = list(snapshots)
    problems: dict[str, int] = defaultdict(int)
    for snap in snapshots:
        for kind, value in snap.record_problems.items():
            problems[kind] += value
    return StreamSnapshot(
        stations=[row for snap in snapshots for row in snap.stations],
        record_problems=dict(problems),
        sources=merge_source_states([snap.sources for snap in snapshots]),
        publisher=publisher,
        buffer_bytes=sum(snap.buffer_bytes for snap in snapshots),
        windows_in_flight=sum(snap.windows_in_flight for snap in snapshots),
        oldest_window_s=max((snap.oldest_window_s for snap in snapshots), default=0.0),
        behind_for_s=max((snap.behind_for_s for snap in snapshots), default=0.0),
        ingest_held_s=sum(snap.ingest_held_s for snap in snapshots),
        dropped_windows=sum(snap.dropped_windows for snap in snapshots),
    )


def merge_source_states(states: list[dict]) -> dict:
    """``SourceManager.state()`` of several processes as one: running and totals summed, sources listed."""
    totals: dict[str, int] = defaultdict(int)
    for state in states:
        for name, value in state["totals"].items():
            totals[name] += value
    return {
        "running": sum(state["running"] for state in states),
        "totals": dict(totals),
        "sources": [source for state in states for source in state["sources"]],
    }


class _SnapshotCollector:
    def __init__(self, owner: StreamMetrics) -> None:
        self.owner = owner

    def describe(self):
        return []

    def collect(self):
        yield self.owner.data_latency.family()
        yield self.owner.pick_latency.family()
        yield self.owner.stage_latency.family()
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
                "late_component_bound_reached",
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
            "late_component_bound_reached": (
                "seispick_late_component_bound_reached",
                "Waits for a lagging component that reached streaming.late_component_max_bytes (it was "
                "zero-filled from there)",
            ),
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
        published = CounterMetricFamily(
            "seispick_published",
            "Records handed to the publisher (each once), by kind (pick, detection, pick_update, event) and "
            "status (final for picks and detections; a pick update's or an event version's status)",
            labels=["kind", "status"],
        )
        for kind, counts in sorted(stats.get("published_by", {}).items()):
            for status, value in sorted(counts.items()):
                published.add_metric([kind, status], value)
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
