"""``seispick serve``: the HTTP API and, with a source, real-time picking into Redis and live subscribers.

The options are shared with ``seispick config`` (:func:`settings_options`, :func:`settings_from_options`), so
both read the same effective settings: flags over ``SEISPICK_*`` variables over defaults.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

# option name -> (field path in Settings, the flag as a user types it)
OPTION_FIELDS: dict[str, tuple[tuple[str, ...], str]] = {
    "host": (("host",), "--host"),
    "port": (("port",), "--port"),
    "demo": (("demo",), "--demo"),
    "model": (("default_model",), "--model"),
    "redis_url": (("redis_url",), "--redis-url"),
    "seedlink": (("streaming", "seedlink"), "--seedlink"),
    "selectors": (("streaming", "selectors"), "--select"),
    "station_file": (("streaming", "station_file"), "--station-file"),
    "stations": (("events", "stations"), "--stations"),
    "watch": (("streaming", "watch_dirs"), "--watch"),
    "spill_dir": (("streaming", "spill_dir"), "--spill-dir"),
    "shard_index": (("streaming", "shard_index"), "--shard-index"),
    "shard_count": (("streaming", "shard_count"), "--shard-count"),
    "workers": (("streaming", "workers"), "--workers"),
    "backend": (("inference_backend",), "--backend"),
}


def settings_options(command: Callable) -> Callable:
    """The settings flags of ``serve`` (and ``config``); each overrides its ``SEISPICK_*`` variable."""
    options = [
        click.option("--host", default=None, help="Address to listen on (SEISPICK_HOST; default 127.0.0.1)."),
        click.option("--port", type=int, default=None, help="Port (SEISPICK_PORT; default 8000)."),
        click.option(
            "--demo",
            is_flag=True,
            default=None,
            help="Replay the bundled demo archive as a live SeedLink stream and pick it.",
        ),
        click.option("--model", default=None, help="Default model (SEISPICK_DEFAULT_MODEL)."),
        click.option(
            "--redis-url", default=None, help="Publish picks to this Redis (e.g. redis://127.0.0.1:6379/0)."
        ),
        click.option("--seedlink", multiple=True, help="SeedLink server HOST:PORT (repeatable)."),
        click.option(
            "--select",
            "selectors",
            multiple=True,
            help="Stream selector NET_STA:CHA, wildcards allowed (repeatable).",
        ),
        click.option("--station-file", type=click.Path(path_type=Path), default=None),
        click.option(
            "--stations",
            type=click.Path(path_type=Path),
            default=None,
            help="Station coordinates (StationXML, or CSV network,station,latitude,longitude,elevation_m): "
            "associate the stream's picks into located events (SEISPICK_EVENTS__STATIONS).",
        ),
        click.option(
            "--watch",
            multiple=True,
            type=click.Path(file_okay=False, path_type=Path),
            help="Folder of new or growing miniSEED files, and complete SAC or compressed ones (repeatable).",
        ),
        click.option(
            "--spill-dir",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help="Outbox spill folder while Redis is down.",
        ),
        click.option("--shard-index", type=int, default=None, help="This replica's shard (0-based)."),
        click.option("--shard-count", type=int, default=None, help="Number of replicas sharing the network."),
        click.option(
            "--workers",
            type=int,
            default=None,
            help="Picking processes, each with a part of the stations (SEISPICK_STREAMING__WORKERS; default: "
            "one per CPU core; 1 picks in the API process).",
        ),
        click.option(
            "--backend",
            default=None,
            help="Inference engine (SEISPICK_INFERENCE_BACKEND; default onnxruntime, the reference; openvino: "
            "OpenVINO's CPU plugin in fp32, the same picks).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def settings_from_options(options: dict[str, Any]):
    """Effective Settings from the flags given and the environment; a clear error naming the flag or the
    variable otherwise (unknown ``SEISPICK_*`` names and models that are not installed included)."""
    from seispick.service.settings import SettingsError, load_settings

    overrides = {}
    for name, value in options.items():
        if name not in OPTION_FIELDS or value is None or value == () or value is False:
            continue
        path, flag = OPTION_FIELDS[name]
        overrides[path] = (flag, list(value) if isinstance(value, tuple) else value)
    try:
        return load_settings(overrides, installed_models=installed_models)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc


def installed_models(settings) -> list[str]:
    from seispick.models.registry import ModelRegistry

    return ModelRegistry(settings.model_dirs or None).names()


@click.command()
@settings_options
def serve(**options: Any) -> None:
    """Start the seispick service (FastAPI under uvicorn). Options override SEISPICK_* variables."""
    from seispick.service.api.app import run_server
    from seispick.service.settings import model_warnings

    settings = settings_from_options(options)
    for warning in model_warnings(settings, installed_models(settings)):
        click.echo(f"warning: {warning}", err=True)
    where = f"http://{settings.host}:{settings.port}"
    click.echo(
        f"seispick serving on {where} (docs {where}/docs, live picks {where}/v1/stream/picks)", err=True
    )
    run_server(settings)
