"""The ``--format``/``--output`` pair of commands that write a result file (``pick``, ``associate``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import click

F = TypeVar("F", bound=Callable[..., object])


def output_options(formats: Sequence[str]) -> Callable[[F], F]:
    """``--format`` (one of ``formats``, the first by default) and ``--output/-o`` (default: stdout)."""

    def decorate(command: F) -> F:
        command = click.option(
            "--output",
            "-o",
            type=click.Path(path_type=Path),
            default=None,
            help="Output file (default stdout).",
        )(command)
        return click.option(
            "--format", "fmt", type=click.Choice(list(formats)), default=formats[0], show_default=True
        )(command)

    return decorate
