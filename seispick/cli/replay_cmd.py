"""``seispick replay``: serve archived miniSEED as a SeedLink server, for testing a real-time setup."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=18000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--speed", default=1.0, show_default=True, type=float, help="Times real time (0: as fast as possible)."
)
@click.option(
    "--loop", is_flag=True, help="Start again at the end, times shifted forward (continuous stream)."
)
@click.option("--restamp", is_flag=True, help="Re-stamp the data so the first sample is now.")
@click.option(
    "--seedlink-version",
    type=click.Choice(["3.1", "4.0"]),
    default="4.0",
    show_default=True,
    help="Highest SeedLink protocol version offered (3.1: act as a server without SeedLink 4).",
)
def replay(
    paths: tuple[Path, ...],
    host: str,
    port: int,
    speed: float,
    loop: bool,
    restamp: bool,
    seedlink_version: str,
) -> None:
    """Serve miniSEED FILES or folders as a SeedLink server (protocol 3.1 and 4.0) at SPEED times real
    time, for SeedLink clients such as slinktool, slarchive, SeisComP or ObsPy."""
    from seispick.replay.server import run_replay_server

    if speed < 0:
        raise click.BadParameter("speed must be >= 0", param_hint="--speed")
    click.echo(f"SeedLink replay of {len(paths)} path(s) on {host}:{port} at {speed:g}x", err=True)
    try:
        protocols = ("3.1", "4.0") if seedlink_version == "4.0" else ("3.1",)
        run_replay_server(
            list(paths), host=host, port=port, speed=speed, restamp=restamp, loop=loop, protocols=protocols
        )
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
