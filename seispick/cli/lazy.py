"""Lazy imports of the training package, so commands that do not train never import torch."""

from __future__ import annotations

import importlib
from types import ModuleType

import click


def training_module(module: str) -> ModuleType:
    """Import ``seispick.training.<module>``, with a clear message when torch is not installed."""
    try:
        return importlib.import_module(f"seispick.training.{module}")
    except ImportError as exc:
        raise click.ClickException(
            f"this command needs the training extra (torch): pip install 'seispick[train]' ({exc})"
        ) from exc
