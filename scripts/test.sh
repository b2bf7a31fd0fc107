#!/usr/bin/env bash
# Install everything, then run the test suite (tiny random backbones plus integration tests on the real SmolLM2 and
# Gemma 3 270M backbones). Gemma is installed by default (~4 min of CI the first time, see scripts/setup.sh);
# SVGT_WITH_GEMMA=0 leaves it out, and its integration test is then skipped with a reason that says so.
set -euo pipefail
cd "$(dirname "$0")/.."
SVGT_WITH_GEMMA="${SVGT_WITH_GEMMA:-1}" bash scripts/setup.sh
exec .venv/bin/python -m pytest -q -rs "$@"  # -rs: every skipped test is listed with its reason
