#!/usr/bin/env bash
# Install everything, then run the main job: unguided vs guided answers on the default backbone.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/svgt demo "$@"
