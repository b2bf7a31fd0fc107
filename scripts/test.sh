#!/usr/bin/env bash
# Install everything, then run the test suite (tiny random backbones plus one real SmolLM2 integration test).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
