"""scripts/test.sh (what .ci/run runs) installs torch's CPU build: the local wheel pip is configured with when
there is one, without the network; else torch==2.13.0+cpu from PyTorch's CPU index added to the configured
indexes. A plain ``pip install torch==2.13.0`` from PyPI would be the CUDA build (GBs of nvidia-* wheels)."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"

# Stands in for python3, ruff and lint-imports: logs each call; ``pip install --no-index`` fails when asked to
# (no local wheel), everything else succeeds.
FAKE = """#!/bin/sh
echo "$(basename "$0") $*" >> "$CALLS"
case "$*" in *--no-index*) [ -n "$NO_LOCAL_WHEEL" ] && exit 1 ;; esac
exit 0
"""


def run_script(tmp_path: Path, local_wheel: bool) -> list[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("python3", "ruff", "lint-imports"):
        (bin_dir / name).write_text(FAKE)
        (bin_dir / name).chmod(0o755)
    calls = tmp_path / "calls"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls)}
    env.pop("NO_LOCAL_WHEEL", None)
    if not local_wheel:
        env["NO_LOCAL_WHEEL"] = "1"
    subprocess.run(["bash", str(ROOT / "scripts" / "test.sh")], env=env, check=True, timeout=60)
    return [line for line in calls.read_text().splitlines() if "pip install" in line]


def test_the_script_parses():
    subprocess.run(["bash", "-n", str(ROOT / "scripts" / "test.sh")], check=True)


def test_a_local_wheel_is_taken_without_any_index(tmp_path):
    installs = run_script(tmp_path, local_wheel=True)
    first = installs[0]
    assert "torch==2.13.0" in first and "--no-index" in first and "--no-deps" in first
    assert not any(CPU_INDEX in line for line in installs)  # no network beyond the configured indexes


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.machine() != "x86_64", reason="CPU build: Linux x86_64"
)
def test_without_a_local_wheel_the_cpu_build_comes_from_the_cpu_index(tmp_path):
    installs = run_script(tmp_path, local_wheel=False)
    torch = [line for line in installs if "torch==" in line]
    assert "--no-index" in torch[0]
    fallback = torch[1].split()
    assert "torch==2.13.0+cpu" in fallback  # pinned to the CPU build: an unreachable CPU index fails loudly
    assert fallback[fallback.index("--extra-index-url") + 1] == CPU_INDEX
    assert (
        "--index-url" not in fallback
    )  # the configured index (PIP_INDEX_URL, pip.conf) still serves the rest
    # torch's dependencies and the extras come after, when torch 2.13.0+cpu already satisfies torch==2.13.0
    assert installs.index(torch[1]) < installs.index(next(line for line in installs if "-e" in line.split()))
