#!/usr/bin/env bash
# The GPU check (docs/scaling.md): one command on a machine with one GPU, under 8 minutes, everything in one folder.
#   1. the device-aware tests (tests/test_device.py) with SVGT_TEST_DEVICE=cuda, float32 and bfloat16;
#   2. a few steps of each training stage on a random backbone of Llama-3.2-1B's shape in bfloat16 (module float32);
#   3. cached decoding against full recomputation there, in bfloat16 and on a float32 copy of the same weights
#      (tolerances in src/svgt/benchmark/exactness.py);
#   4. svgt bench --quick on the llama-3.2-3b random config.
# Random weights throughout: nothing is downloaded, and no packaged data is read.
#
#   scripts/gpu_check.sh [DIR]         writes DIR (default: $OUT, else runs/gpu-check)
#   scripts/gpu_check.sh --cpu [DIR]   dry run of the same steps on the CPU with tiny shapes (2-3 minutes on 2 cores)
#
# DIR gets summary.md (what passed, step times), gpu_check.log (every step's output), check.json (steps 2-3) and
# bench/ (bench.json, bench.md, the plot). Exit status: the number of failed steps.
set -uo pipefail
cd "$(dirname "$0")/.."

cpu=0
if [[ "${1:-}" == "--cpu" ]]; then cpu=1; shift; fi
out="${1:-${OUT:-runs/gpu-check}}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
py="${PYTHON:-}"
if [[ -z "$py" ]]; then
  if [[ -x .venv/bin/python ]]; then py=.venv/bin/python; else py=python3; fi
fi
# svgt from this checkout, installed or not (the GPU machine has torch and transformers but no svgt).
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export SVGT_CACHE="${SVGT_CACHE_FOR_CHECK:-$(mktemp -d)}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false TQDM_DISABLE=1

if (( cpu )); then
  device=cpu config=tiny-llama bench_config=tiny-llama bench_extra=(--repeats 2 --max-seconds 2)
  check_extra=(--items 16 --prompt-len 16 --response-len 8 --new-tokens 8)
else
  device=cuda config=llama-3.2-1b bench_config=llama-3.2-3b bench_extra=(--max-seconds 60)
  check_extra=()
fi

log="$out/gpu_check.log"
: >"$log"
summary=()
failed=0
step() {  # step NAME TIMEOUT_S CMD...: run, log, time, record
  local name="$1" limit="$2"
  shift 2
  echo "=== $name: $*" | tee -a "$log"
  local t0=$SECONDS
  timeout "$limit" "$@" >>"$log" 2>&1
  local rc=$?
  local took=$((SECONDS - t0))
  if (( rc == 0 )); then result=ok; else result="FAILED (exit $rc)"; failed=$((failed + 1)); fi
  echo "=== $name: $result in ${took}s" | tee -a "$log"
  summary+=("| $name | $result | ${took}s |")
}

{
  echo "# environment"
  date -u +"%Y-%m-%dT%H:%M:%SZ"
  git rev-parse HEAD 2>/dev/null
  "$py" -c "import sys, torch, transformers; print('python', sys.version.split()[0], 'torch', torch.__version__,
'transformers', transformers.__version__, 'cuda', torch.version.cuda, 'gpu',
torch.cuda.get_device_name() if torch.cuda.is_available() else None)"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
} >>"$log" 2>&1

# Step limits add up to 7.5 minutes, so the whole check ends inside 8 even where a step hangs.
step "device-aware tests (SVGT_TEST_DEVICE=$device)" 100 \
  env SVGT_TEST_DEVICE="$device" "$py" -m pytest -q -p no:cacheprovider tests/test_device.py
step "train and decode checks ($config, bfloat16)" 150 \
  "$py" scripts/gpu_check.py --config "$config" --device "$device" --dtype bfloat16 --out "$out/check.json" \
  "${check_extra[@]}"
step "svgt bench --quick --random-config $bench_config" 200 \
  "$py" -m svgt bench --quick --random-config "$bench_config" --device "$device" --out "$out/bench" "${bench_extra[@]}"

{
  echo "# svgt GPU check"
  echo
  echo "Device: $device$( ((cpu)) && echo ' (dry run: tiny shapes)'). Log: gpu_check.log; steps 2-3: check.json;"
  echo "bench: bench/ (JSON, Markdown, plot)."
  echo
  echo "| step | result | time |"
  echo "| --- | --- | --- |"
  printf '%s\n' "${summary[@]}"
  echo
  if [[ -f "$out/check.json" ]]; then
    echo '```'
    "$py" scripts/gpu_check.py --report "$out/check.json"
    echo '```'
  fi
  if [[ -f "$out/bench/bench_quick.md" ]]; then
    echo
    sed -n '/^## Ratios/,/^### /p' "$out/bench/bench_quick.md" | grep -v '^### '
  fi
} >"$out/summary.md"
cat "$out/summary.md"
exit "$failed"
