"""``seispick serve``: the HTTP API and, with a source, real-time picking into Redis and live subscribers."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1 or SEISPICK_HOST).")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=None, help="Port (default 8000 or SEISPICK_PORT)."
)
@click.option(
    "--demo", is_flag=True, help="Replay the bundled demo archive as a live SeedLink stream and pick it."
)
@click.option("--model", default=None, help="Default model (name from `seispick models list`).")
@click.option(
    "--redis-url", default=None, help="Publish picks to this Redis (e.g. redis://127.0.0.1:6379/0)."
)
@click.option("--seedlink", multiple=True, help="SeedLink server HOST:PORT (repeatable).")
@click.option(
    "--select",
    "selectors",
    multiple=True,
    help="Stream selector NET_STA:CHA, wildcards allowed (repeatable).",
)
@click.option("--station-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None)
@click.option(
    "--watch",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of growing miniSEED files.",
)
@click.option(
    "--spill-dir", type=click.Path(file_okay=False, path_type=Path), default=None, help="Outbox spill folder."
)
def serve(
    host: str | None,
    port: int | None,
    demo: bool,
    model: str | None,
    redis_url: str | None,
    seedlink: tuple[str, ...],
    selectors: tuple[str, ...],
    station_file: Path | None,
    watch: tuple[Path, ...],
    spill_dir: Path | None,
) -> None:
    """Start the seispick service (FastAPI under uvicorn). Options override SEISPICK_* variables."""
    from pydantic import ValidationError

    from seispick.service.api.app import run_server
    from seispick.service.settings import Settings

    overrides: dict = {k: v for k, v in {"host": host, "port": port, "redis_url": redis_url}.items() if v}
    if model:
        overrides["default_model"] = model
    if demo:
        overrides["demo"] = True
    try:
        settings = Settings(**overrides)
        streaming = settings.streaming.model_copy(
            update={
                k: v
                for k, v in {
                    "seedlink": list(seedlink),
                    "selectors": list(selectors),
                    "station_file": station_file,
                    "watch_dirs": list(watch),
                    "spill_dir": spill_dir,
                }.items()
                if v
            }
        )
        settings = settings.model_copy(update={"streaming": streaming})
    except ValidationError as exc:
        raise click.ClickException(str(exc)) from exc
    if settings.streaming.seedlink and not (settings.streaming.selectors or settings.streaming.station_file):
        raise click.ClickException("--seedlink needs --select NET_STA:CHA patterns or --station-file")
    where = f"http://{settings.host}:{settings.port}"
    click.echo(
        f"seispick serving on {where} (docs {where}/docs, live picks {where}/v1/stream/picks)", err=True
    )
    run_server(settings)
