"""The ``seispick`` command: one entry point for everything a person does."""

from __future__ import annotations

import click

from seispick import __version__

from .config_cmd import config
from .models_cmd import models
from .pick import pick
from .replay_cmd import replay
from .serve_cmd import serve
from .training_cmd import evaluate, export, finetune, train


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="seispick")
def cli() -> None:
    """Seismic P/S phase picking with PhaseNet in ONNX: files, HTTP service and real-time streams."""


cli.add_command(pick)
cli.add_command(models)
cli.add_command(train)
cli.add_command(finetune)
cli.add_command(evaluate)
cli.add_command(export)
cli.add_command(replay)
cli.add_command(serve)
cli.add_command(config)


if __name__ == "__main__":  # pragma: no cover
    cli()
