"""Shared fixtures: the shipped model and the real test traces."""

from __future__ import annotations

import csv
from pathlib import Path

import obspy
import pytest

from tests.streams import REAL


@pytest.fixture(scope="session")
def shipped_model():
    from seispick.models.registry import ModelRegistry

    return ModelRegistry().load("phasenet-original")


@pytest.fixture(scope="session")
def real_picks() -> list[dict]:
    """Analyst picks of the traces in tests/data/real (trace_id, phase, time)."""
    with open(REAL / "picks.csv") as handle:
        return [dict(row, time=obspy.UTCDateTime(row["time"])) for row in csv.DictReader(handle)]


@pytest.fixture(scope="session")
def real_files() -> list[Path]:
    return sorted(REAL.glob("*.mseed"))
