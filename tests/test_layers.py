"""The layer contracts (.importlinter) hold, and a forbidden import really breaks them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = [
    sys.executable,
    "-c",
    "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())",
]


def _copy_package(tmp_path: Path) -> Path:
    """A copy of the seispick sources (Python files only) that a test may break."""
    target = tmp_path / "seispick"
    shutil.copytree(
        ROOT / "seispick", target, ignore=shutil.ignore_patterns("*.onnx", "*.mseed", "__pycache__")
    )
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    return tmp_path


def _lint(where: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(where)}
    return subprocess.run(
        LINT + ["--config", str(where / ".importlinter")],
        cwd=where,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_contracts_kept_on_the_tree(tmp_path: Path) -> None:
    result = _lint(_copy_package(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_service_importing_training_breaks_a_contract(tmp_path: Path) -> None:
    where = _copy_package(tmp_path)
    batcher = where / "seispick" / "service" / "batcher.py"
    batcher.write_text(
        batcher.read_text() + "\nimport seispick.training.networks.phasenet  # noqa: E402,F401\n"
    )
    result = _lint(where)
    assert result.returncode != 0
    assert "the service never imports training, the CLI or torch BROKEN" in " ".join(result.stdout.split())


def test_router_reaching_into_ingest_breaks_a_contract(tmp_path: Path) -> None:
    where = _copy_package(tmp_path)
    router = where / "seispick" / "service" / "api" / "routers" / "health.py"
    router.write_text(
        router.read_text() + "\nfrom seispick.service.ingest import sources  # noqa: E402,F401\n"
    )
    result = _lint(where)
    assert result.returncode != 0
    assert "HTTP routers do not reach into ingest internals BROKEN" in " ".join(result.stdout.split())
