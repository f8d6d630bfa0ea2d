"""``seispick associate``: picks in, located events out (CSV, JSON, QuakeML, SCML); ``--follow`` a Redis pick
stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path

import click
from tqdm import tqdm

from seispick.cli.output_options import output_options
from seispick.cli.settings_options import FieldOption, field_options
from seispick.events.associate import AssociationConfig, AssociationConfigError, AssociationResult, Associator
from seispick.events.event import CSV_COLUMNS
from seispick.events.live import LiveConfig
from seispick.events.picksets import PickFileError, read_pick_files
from seispick.events.stations import StationFileError, StationTable, read_stations
from seispick.events.velocity import Homogeneous, VelocityModelError, read_velocity_model
from seispick.service.settings import Settings

FORMATS = ("csv", "json", "quakeml", "scml")  # scml: SeisComP XML for scdispatch


# The options that are association settings, derived from the service's (``events``, ``streaming``) fields.
ASSOCIATION_OPTIONS = field_options(
    Settings,
    [
        FieldOption(
            ("events", "stations"),
            dest="stations_file",
            help="StationXML or CSV (network,station,latitude,longitude,elevation_m)",
            attrs={"required": True},
        ),
        FieldOption(("events", "vp")),
        FieldOption(("events", "vs")),
        FieldOption(("events", "velocity_file"), "--velocity"),
        FieldOption(("events", "tolerance_s"), "--tolerance", dest="tolerance"),
        FieldOption(("events", "min_picks")),
        FieldOption(("events", "min_p")),
        FieldOption(("events", "min_s")),
        FieldOption(("events", "min_p_and_s")),
        FieldOption(("events", "margin_km")),
        FieldOption(("events", "depth_max_km"), "--depth-max", dest="depth_max"),
        FieldOption(("events", "cutoff_km")),
    ],
    overrides=False,
)
FOLLOW_OPTIONS = field_options(
    Settings,
    [
        FieldOption(
            ("streaming", "stream_key"),
            "--picks-stream",
            dest="picks_stream",
            help="With --follow: the stream read",
        ),
        *(
            FieldOption(("events", name), help="With --follow: {description}")
            for name in ("window_s", "delay_s", "step_s", "settle", "min_version_interval_s")
        ),
        FieldOption(
            ("events", "preliminary"),
            "--associate-preliminary",
            dest="associate_preliminary",
            help="With --follow: also follow the pick updates (--updates-stream) as the service does: events "
            "declared from preliminary picks (only with --settle)",
        ),
        FieldOption(
            ("streaming", "preliminary_key"),
            "--updates-stream",
            dest="updates_stream",
            help="With --follow --associate-preliminary: the pick-update stream read",
        ),
    ],
    overrides=False,
)


@click.command()
@click.argument("picks", nargs=-1, type=click.Path(path_type=Path))
@ASSOCIATION_OPTIONS
@click.option(
    "--slice-s",
    type=click.FloatRange(min=60),
    default=14_400.0,
    show_default=True,
    help="Time slice (progress step), s.",
)
@click.option(
    "--threads", type=click.IntRange(1, 256), default=None, help="PyOcto threads (default: all cores)."
)
@click.option(
    "--waveforms",
    multiple=True,
    type=click.Path(path_type=Path),
    help="miniSEED files/folders for ML (needs StationXML with responses).",
)
@output_options(FORMATS)
@click.option(
    "--follow",
    "follow_url",
    default=None,
    metavar="REDIS_URL",
    help="Associate the live pick stream of this Redis; publish events there.",
)
@click.option(
    "--from-start",
    is_flag=True,
    help="With --follow: read the pick stream from its start, not only new picks.",
)
@FOLLOW_OPTIONS
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="With --follow: stop after this many seconds.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="With --follow: serve Prometheus metrics (events, association, published, process) on this port.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary.")
def associate(
    picks: tuple[Path, ...],
    stations_file: Path,
    vp: float | None,
    vs: float | None,
    velocity_file: Path | None,
    tolerance: float,
    min_picks: int,
    min_p: int,
    min_s: int,
    min_p_and_s: int,
    margin_km: float | None,
    depth_max: float | None,
    cutoff_km: float | None,
    slice_s: float,
    threads: int | None,
    waveforms: tuple[Path, ...],
    fmt: str,
    output: Path | None,
    follow_url: str | None,
    picks_stream: str,
    from_start: bool,
    window_s: float,
    delay_s: float,
    step_s: float,
    settle: bool,
    min_version_interval_s: float,
    associate_preliminary: bool,
    updates_stream: str,
    duration: float | None,
    metrics_port: int | None,
    quiet: bool,
) -> None:
    """Associate P/S PICKS (seispick CSV, JSON or QuakeML files) into located events.

    The search area and depth range follow the stations' extent unless set. With --follow REDIS_URL the picks
    come from the Redis stream instead and each event version is published to seispick:events.
    """
    try:
        stations = read_stations(stations_file)
        config = AssociationConfig(
            velocity=_velocity(vp, vs, velocity_file),
            tolerance_s=tolerance,
            min_picks=min_picks,
            min_p=min_p,
            min_s=min_s,
            min_p_and_s=min_p_and_s,
            margin_km=margin_km,
            depth_km=(0.0, depth_max) if depth_max else None,
            cutoff_km=cutoff_km,
            slice_s=slice_s,
            n_threads=threads,
        )
        associator = Associator(stations, config)
    except (StationFileError, VelocityModelError, AssociationConfigError) as exc:
        raise click.ClickException(str(exc)) from exc
    for note in stations.notes:
        click.echo(f"note: {note}", err=True)

    if follow_url:
        if picks:
            raise click.UsageError("give either PICKS files or --follow REDIS_URL, not both")
        if not follow_url.startswith(("redis://", "rediss://", "unix://")):
            raise click.UsageError(f"--follow {follow_url}: not a Redis URL (redis://host:port/db)")
        config = LiveConfig(
            window_s=window_s, delay_s=delay_s, settle=settle, min_version_interval_s=min_version_interval_s
        )
        updates = updates_stream if associate_preliminary and settle else None
        _follow(
            associator, follow_url, picks_stream, from_start, config, step_s, duration, quiet, metrics_port,
            updates,
        )  # fmt: skip
        return
    if not picks:
        raise click.UsageError("give PICKS files (or --follow REDIS_URL)")
    try:
        pick_set = read_pick_files(list(_expand(picks)))
    except PickFileError as exc:
        raise click.ClickException(str(exc)) from exc
    bar = tqdm(total=None, unit="slice", desc="associating", disable=quiet, file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        result = associator.associate(pick_set, progress=progress)
    finally:
        bar.close()
    notes = list(result.notes)
    notes += _magnitudes(result, stations, waveforms, config.velocity.surface)
    for note in notes:
        click.echo(f"note: {note}", err=True)
    text = render(fmt, result, associator, notes)
    if output:
        output.write_text(text)
    else:
        sys.stdout.write(text)
    if not quiet:
        skipped = ", ".join(f"{k}: {v}" for k, v in result.unassociated.items() if v) or "none"
        click.echo(
            f"{len(result.events)} event(s) from {result.n_picks} picks ({result.associated} associated; "
            f"unassociated {skipped}) on {len(stations)} stations with {associator.model_name}"
            + (f"; wrote {output}" if output else ""),
            err=True,
        )


def _velocity(vp: float | None, vs: float | None, velocity_file: Path | None):
    if velocity_file is not None:
        if vp is not None or vs is not None:
            raise click.UsageError("give either --vp/--vs or --velocity, not both")
        return read_velocity_model(velocity_file)
    if vp is None and vs is None:
        return Homogeneous()
    if vp is None or vs is None:
        raise click.UsageError("give both --vp and --vs (or neither, for 6.0 and 3.5 km/s)")
    return Homogeneous(vp, vs)


def _expand(paths: tuple[Path, ...]):
    for path in paths:
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.suffix.lower() in (".csv", ".json", ".xml", ".qml")
            )
            if not found:
                raise click.ClickException(f"{path}: no .csv, .json, .xml or .qml picks files in this folder")
            yield from found
        else:
            yield path


def _magnitudes(
    result: AssociationResult,
    stations: StationTable,
    waveforms: tuple[Path, ...],
    surface: tuple[float, float],
) -> list[str]:
    """ML of every event when waveforms are given; notes on what could not be done."""
    if not result.events:
        return []
    if not waveforms:
        return ["no magnitudes: give --waveforms (miniSEED) and a StationXML with responses"]
    if not stations.has_responses:
        return ["no magnitudes: the station metadata holds no instrument responses (StationXML needed)"]
    from seispick.events.live_magnitude import event_magnitude
    from seispick.picking.waveforms import WaveformReadError, read_waveforms

    try:
        read = read_waveforms(list(waveforms))
    except WaveformReadError as exc:
        raise click.ClickException(str(exc)) from exc
    notes = [f"waveforms: {problem}" for problem in read.problems]
    without = 0
    for event in result.events:
        magnitude, event_notes = event_magnitude(event, read.stream, stations, surface)
        event.magnitude = magnitude
        event.notes += event_notes
        without += magnitude is None
    if without:
        notes.append(f"{without} of {len(result.events)} event(s) without a magnitude (see their notes)")
    return notes


def render(fmt: str, result: AssociationResult, associator: Associator, notes: list[str]) -> str:
    """The events of ``result`` as CSV, JSON, QuakeML or SCML."""
    if fmt == "csv":
        import csv
        import io

        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for event in result.events:
            writer.writerow(event.row())
        return buffer.getvalue()
    if fmt == "json":
        area = associator.area
        body = {
            "velocity_model": associator.model_name,
            "area": {"latitude": area.lat, "longitude": area.lon, "depth_km": area.depth_km},
            "picks": result.n_picks,
            "associated": result.associated,
            "unassociated": result.unassociated,
            "notes": notes,
            "events": [event.as_dict() for event in result.events],
        }
        return json.dumps(body, indent=2) + "\n"
    from seispick.events.quakeml import events_to_quakeml, events_to_scml

    return (events_to_scml if fmt == "scml" else events_to_quakeml)(result.events)


def _follow(
    associator, url, stream, from_start, config: LiveConfig, step_s, duration, quiet, metrics_port=None,
    updates: str | None = None,
) -> None:  # fmt: skip
    from seispick.events.follow import follow
    from seispick.events.live import LiveAssociator
    from seispick.service.publish.publisher import PickPublisher

    published: list[PickPublisher] = []  # the follower's publisher, for the metrics
    metrics = _serve_metrics(metrics_port, published) if metrics_port else None
    live = LiveAssociator(associator, config, metrics)

    async def run() -> None:
        publisher = PickPublisher(url)
        published.append(publisher)
        await publisher.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        if duration:
            loop.call_later(duration, stop.set)
        try:
            stats = await follow(
                url,
                live,
                publisher.publish,
                stream=stream,
                start_id="0" if from_start else "$",
                step_s=step_s,
                stop=stop,
                updates_stream=updates,
            )
        finally:
            await publisher.stop()
        if not quiet:
            s = live.stats
            click.echo(
                f"followed {stream}: {stats.entries} entries ({stats.malformed} malformed), {s.declared} event(s) "
                f"declared, {s.updated} update(s), {stats.published} version(s) published; picks associated "
                f"{s.associated}, no event {s.no_event}, late {s.late}, no coordinates {s.no_coordinates}",
                err=True,
            )

    asyncio.run(run())


def _serve_metrics(port: int, publishers: list):
    """The follower's /metrics on ``port`` (all interfaces): the service's event and association metrics,
    ``seispick_published_total{kind="event",status}`` and process_*; no ``_created`` series."""
    from prometheus_client import (
        CollectorRegistry,
        PlatformCollector,
        ProcessCollector,
        disable_created_metrics,
        start_http_server,
    )
    from prometheus_client.core import CounterMetricFamily

    from seispick.events.association_metrics import EventMetrics

    disable_created_metrics()
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    metrics = EventMetrics(registry)

    class Published:
        def describe(self):
            return []

        def collect(self):
            family = CounterMetricFamily(
                "seispick_published",
                "Records handed to the publisher, by kind and status",
                labels=["kind", "status"],
            )
            for publisher in publishers:
                for kind, counts in sorted(publisher.published_by.items()):
                    for status, value in sorted(counts.items()):
                        family.add_metric([kind, status], value)
            yield family

    registry.register(Published())
    start_http_server(port, registry=registry)
    return metrics
