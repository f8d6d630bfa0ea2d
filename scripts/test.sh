#!/usr/bin/env bash
# Install seispick with every extra and run lint and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q torch==2.13.0
python3 -m pip install -q -e ".[train,dev,openvino]"
ruff check .
ruff format --check .
lint-imports  # layer contracts in .importlinter
python3 -m pytest -q
