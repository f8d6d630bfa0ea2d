"""``seispick config``: the effective settings (flags over ``SEISPICK_*`` variables over defaults), secrets
masked, checked as ``seispick serve`` checks them; ``--names`` lists every variable the service reads.

The real-time sources are shown as ``streaming.sources``: every source, the ``--seedlink``/``--watch``
shorthands included, with all its knobs.
"""

from __future__ import annotations

import json
from typing import Any

import click

from seispick.cli.serve_cmd import installed_models, settings_from_options, settings_options


@click.command("config")
@settings_options
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
@click.option("--names", is_flag=True, help="List every SEISPICK_* variable and the setting it sets.")
def config(fmt: str, names: bool, **options: Any) -> None:
    """Print the settings `seispick serve` would run with (API keys and URL passwords masked).

    Exits with an error, as `serve` would, on an unknown SEISPICK_* variable, an invalid value or a model
    that is not installed; warnings (model patterns that match nothing) go to stderr.
    """
    from seispick.service.settings import OTHER_VARIABLES, env_variables, masked, model_warnings

    if names:
        for name, path in env_variables().items():
            click.echo(f"{name}\t{'.'.join(path)}")
        for name, what in OTHER_VARIABLES.items():
            click.echo(f"{name}\t({what})")
        return
    settings = settings_from_options(options)
    for warning in model_warnings(settings, installed_models(settings)):
        click.echo(f"warning: {warning}", err=True)
    data = masked(settings)
    if fmt == "json":
        click.echo(json.dumps(data, indent=2))
    else:
        import yaml

        click.echo(yaml.safe_dump(data, sort_keys=False).rstrip())
