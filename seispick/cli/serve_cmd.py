"""``seispick serve``: the HTTP API and, with a source, real-time picking into Redis and live subscribers.

The options are shared with ``seispick config`` (:func:`settings_options`, :func:`settings_from_options`), so
both read the same effective settings: flags over ``SEISPICK_*`` variables over defaults. Each option is derived
from the settings field it sets (:mod:`.settings_options`): its type, help and variable come from there, and
every SeedLink knob of the ``--seedlink`` servers is offered as ``--seedlink-<knob>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from seispick.cli.settings_options import FieldOption, field_options
from seispick.service.settings import Settings, seedlink_knobs

FOLDER = click.Path(file_okay=False, path_type=Path)
# The flags of serve and config, in --help order; each sets the Settings field at its path.
SERVE_OPTIONS: list[FieldOption] = [
    FieldOption(("host",)),
    FieldOption(("port",)),
    FieldOption(("demo",)),
    FieldOption(("default_model",), "--model", dest="model"),
    FieldOption(("redis_url",)),
    FieldOption(("streaming", "seedlink"), help="SeedLink server HOST:PORT (repeatable)"),
    FieldOption(
        ("streaming", "selectors"),
        "--select",
        help="Stream selector NET_STA:CHA, wildcards allowed (repeatable)",
    ),
    FieldOption(
        ("streaming", "station_file"),
        help="Stream selectors of the SeedLink servers, one NET_STA[:CHA] a line",
    ),
    *(
        FieldOption(("streaming", name), f"--seedlink-{knob.replace('_', '-')}", dest=f"seedlink_{knob}")
        for name, knob in seedlink_knobs().items()
        if name not in ("selectors", "station_file")
    ),
    FieldOption(
        ("events", "stations"),
        help="Station coordinates (StationXML, or CSV network,station,latitude,longitude,elevation_m): "
        "associate the stream's picks into located events",
    ),
    FieldOption(
        ("streaming", "watch_dirs"),
        "--watch",
        dest="watch",
        help="Folder of new or growing miniSEED files, and complete SAC or compressed ones (repeatable)",
        attrs={"type": FOLDER},
    ),
    FieldOption(("streaming", "spill_dir"), attrs={"type": FOLDER}),
    FieldOption(("streaming", "shard_index"), help="This replica's shard (0-based)"),
    FieldOption(("streaming", "shard_count")),
    FieldOption(("streaming", "workers")),
    FieldOption(("streaming", "preliminary_picks")),
    FieldOption(("streaming", "first_look_stride_s")),
    FieldOption(("events", "preliminary"), "--associate-preliminary", dest="associate_preliminary"),
    FieldOption(("inference_backend",), "--backend", dest="backend"),
]
# option name -> (field path in Settings, the flag as a user types it)
OPTION_FIELDS: dict[str, tuple[tuple[str, ...], str]] = {
    spec.name: (spec.path, spec.option_flag) for spec in SERVE_OPTIONS
}
settings_options = field_options(Settings, SERVE_OPTIONS, overrides=True)
settings_options.__doc__ = (
    "The settings flags of ``serve`` (and ``config``); each overrides its ``SEISPICK_*`` variable."
)


def settings_from_options(options: dict[str, Any]) -> Settings:
    """Effective Settings from the flags given and the environment; a clear error naming the flag or the
    variable otherwise (unknown ``SEISPICK_*`` names and models that are not installed included)."""
    from seispick.service.settings import SettingsError, load_settings

    overrides = {}
    for name, value in options.items():
        if name not in OPTION_FIELDS or value is None or value == ():
            continue
        path, flag = OPTION_FIELDS[name]
        overrides[path] = (flag, list(value) if isinstance(value, tuple) else value)
    try:
        return load_settings(overrides, installed_models=installed_models)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc


def installed_models(settings: Settings) -> list[str]:
    from seispick.models.registry import ModelRegistry

    return ModelRegistry(settings.model_dirs or None).names()


@click.command()
@settings_options
def serve(**options: Any) -> None:
    """Start the seispick service (FastAPI under uvicorn). Options override SEISPICK_* variables."""
    from seispick.service.api.app import run_server
    from seispick.service.api.server import StartupError
    from seispick.service.settings import model_warnings

    settings = settings_from_options(options)
    check_station_files(settings)
    for warning in model_warnings(settings, installed_models(settings)):
        click.echo(f"warning: {warning}", err=True)

    def banner(where: str) -> None:  # once the app has started and the port is bound
        click.echo(
            f"seispick serving on {where} (docs {where}/docs, live picks {where}/v1/stream/picks)", err=True
        )

    try:
        run_server(settings, on_ready=banner)
    except StartupError as exc:
        raise click.ClickException(str(exc)) from None


def check_station_files(settings: Settings) -> None:
    """Read every SeedLink station file now: one line naming the option and what the file looks like, not a
    traceback from the running service."""
    from seispick.seedlink.client.source_config import SeedLinkSourceConfig

    seedlink = [s for s in settings.streaming.sources if isinstance(s, SeedLinkSourceConfig)]
    if settings.streaming.station_file is not None and not seedlink:
        click.echo(
            f"warning: --station-file {settings.streaming.station_file} is read for SeedLink servers only "
            "(--seedlink HOST:PORT); none is given",
            err=True,
        )
    for source in seedlink:
        if source.station_file is None:
            continue
        try:
            source.stream_specs()
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            path = source.station_file
            raise click.ClickException(
                f"--station-file / SEISPICK_STREAMING__STATION_FILE: {path}{_looks_like(path)}: expected one "
                f"NET_STA[:CHA] a line ({str(exc)[:160]})"
            ) from None


def _looks_like(path: Path) -> str:
    """What a station file that is no NET_STA list seems to be (empty when it cannot be told)."""
    try:
        head = path.read_bytes()[:4096].decode("utf-8", "replace").lstrip().lower()
    except OSError:
        return ""
    if "fdsnstationxml" in head or "<network" in head:
        return " is StationXML"
    if head.startswith("<"):
        return " is XML"
    if "," in head.split("\n", 1)[0]:
        return " is CSV"
    return ""
