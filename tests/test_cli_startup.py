"""Start-up pays only for what a command uses: the CLI imports its subcommands lazily."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from seispick.cli.main import COMMANDS, cli

HEAVY = [
    "scipy.signal",
    "matplotlib",
    "fastapi",
    "uvicorn",
    "torch",
    "pandas",
    "seispick.training",
    "seispick.service",
]


def _imported_after(statement: str) -> set[str]:
    code = f"import sys, json; {statement}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out))


def test_the_cli_imports_no_subcommand_until_one_runs() -> None:
    modules = _imported_after("import seispick.cli.main")
    assert not modules & set(HEAVY + ["obspy", "onnxruntime", "seispick.models", "seispick.events"])


def test_pick_imports_neither_the_service_nor_plotting_nor_training() -> None:
    modules = _imported_after("import seispick.cli.pick_cmd")
    assert "seispick.picking.annotate" in modules  # the check is not vacuous
    assert not modules & set(HEAVY)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_listed_command_resolves(name: str) -> None:
    command = cli.get_command(click.Context(cli), name)
    assert isinstance(command, click.Command) and command.name == name


def test_help_lists_every_command_and_unknown_ones_are_refused() -> None:
    runner = CliRunner()
    listing = runner.invoke(cli, ["--help"]).output
    assert all(name in listing for name in COMMANDS)
    result = runner.invoke(cli, ["pik"])
    assert result.exit_code == 2 and "No such command 'pik'" in result.output


@pytest.mark.parametrize(
    ("typed", "suggested"),
    [
        (["pikc"], "'pick'"),
        (["serv"], "'serve'"),
        (["modles", "list"], "'models'"),
        (["models", "lsit"], "'list'"),
    ],
)
def test_a_mistyped_command_gets_a_suggestion(typed: list[str], suggested: str) -> None:
    """In a fresh process, as a user types it: no subcommand is imported yet (the lazy listing)."""
    done = subprocess.run(
        [sys.executable, "-m", "seispick.cli.main", *typed], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert f"No such command {typed[-1] if typed[0] == 'models' else typed[0]!r}" in done.stderr
    assert f"Did you mean {suggested}?" in done.stderr


def test_an_unknown_command_far_from_any_gets_no_guess() -> None:
    result = CliRunner().invoke(cli, ["xyzzy"])
    assert result.exit_code == 2 and "No such command 'xyzzy'" in result.output
    assert "Did you mean" not in result.output
