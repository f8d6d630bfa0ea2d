#!/usr/bin/env bash
# Install seispick with every extra and run lint and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# torch 2.13.0, its CPU build: PyPI's Linux wheel is the CUDA one (GBs of nvidia-* wheels). A torch 2.13.0 that
# pip's own configuration holds (find-links: a local wheel; or one already installed) is taken without any network;
# else the CPU build from PyTorch's CPU index, added to the configured indexes (PIP_INDEX_URL, pip.conf), which
# keep serving everything else. torch==2.13.0+cpu, not torch==2.13.0, so an unreachable CPU index fails here
# instead of PyPI's CUDA build coming in silently. Elsewhere (macOS, ARM) the last line gets PyPI's wheel.
TORCH=torch==2.13.0
if ! python3 -m pip install -q --no-deps --no-index "$TORCH" 2>/dev/null && [ "$(uname -sm)" = "Linux x86_64" ]; then
  python3 -m pip install -q --no-deps "$TORCH+cpu" --extra-index-url https://download.pytorch.org/whl/cpu
fi
python3 -m pip install -q "$TORCH"  # its dependencies, from the configured index
python3 -m pip install -q -e ".[train,dev,openvino]"
ruff check .
ruff format --check .
lint-imports  # layer contracts in .importlinter
python3 -m pytest -q
