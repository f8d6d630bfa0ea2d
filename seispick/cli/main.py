"""The ``seispick`` command: one entry point for everything a person does.

Subcommands are imported only when they run (or their own ``--help`` is asked for), so ``seispick --help``
and ``--version`` start in a fraction of a second and ``seispick pick`` pays for picking alone, not for
the service, plotting, association or training.
"""

from __future__ import annotations

import difflib
import importlib

import click

from seispick import __version__

# name -> (module in seispick.cli, attribute, one-line help shown by ``seispick --help``)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "pick": ("pick_cmd", "pick", "Pick P and S phases in waveform files or folders."),
    "associate": ("associate_cmd", "associate", "Associate picks into located events (PyOcto)."),
    "serve": ("serve_cmd", "serve", "Start the service: HTTP picking API and real-time streams."),
    "replay": ("replay_cmd", "replay", "Serve archived miniSEED as a SeedLink server."),
    "models": ("models_cmd", "models", "List, inspect, import and convert models."),
    "config": ("config_cmd", "config", "Print the settings `seispick serve` would run with."),
    "train": ("training_cmd", "train", "Train a PhaseNet or ConvNetQuake model (needs torch)."),
    "finetune": ("training_cmd", "finetune", "Fine-tune a model on your own labelled data (needs torch)."),
    "evaluate": ("training_cmd", "evaluate", "Score a model against labelled data (P/R/F1, residuals)."),
    "export": ("training_cmd", "export", "Export a training checkpoint to ONNX with a model card."),
}


class _LazyCommands(dict):
    """``Group.commands`` that imports a listed command the first time it is looked up."""

    def __missing__(self, name: str) -> click.Command:
        if name not in COMMANDS:
            raise KeyError(name)
        module, attribute, short = COMMANDS[name]
        command = getattr(importlib.import_module(f"seispick.cli.{module}"), attribute)
        command.short_help = command.short_help or short
        self[name] = command
        return command


class SuggestingGroup(click.Group):
    """A group that answers a mistyped subcommand with the close ones: ``No such command 'pikc'. Did you mean
    'pick'?`` (on every Click version; the lazy listing would give Click's own suggestion nothing to match)."""

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name = args[0] if args else ""
        if (
            name
            and not name.startswith("-")
            and not ctx.resilient_parsing
            and self.get_command(ctx, name) is None
        ):
            close = difflib.get_close_matches(name, self.list_commands(ctx), n=3, cutoff=0.6)
            if close:
                choices = " or ".join(repr(c) for c in close)
                ctx.fail(f"No such command {name!r}. Did you mean {choices}?")
        return super().resolve_command(ctx, args)


class LazyGroup(SuggestingGroup):
    """A group whose subcommands are imported on first use; the listing comes from ``COMMANDS``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.commands = _LazyCommands(self.commands)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self.commands[cmd_name] if cmd_name in COMMANDS else None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, short) for name, (_, _, short) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="seispick")
def cli() -> None:
    """Seismic P/S phase picking with PhaseNet and ConvNetQuake in ONNX: files, HTTP service, real-time
    streams, events."""


if __name__ == "__main__":  # pragma: no cover
    cli()
