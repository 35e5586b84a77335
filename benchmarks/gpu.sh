#!/usr/bin/env bash
# One call on a lent accelerator: correctness against the CPU, then the benchmark tables, into $OUT.
#   run: bash benchmarks/gpu.sh        (JAX with CUDA installed there; no network needed)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results/gpu}"
mkdir -p "$OUT"
python3 -m pip install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1 || export PYTHONPATH="$PWD:${PYTHONPATH:-}"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/device.txt" || true
python3 -c "import jax; print(jax.devices())" | tee -a "$OUT/device.txt"
python3 -m benchmarks.gpu_check --out "$OUT" 2>&1 | tee "$OUT/gpu_check.log"
python3 -m benchmarks.removal --quick --out "$OUT" 2>&1 | tee "$OUT/removal.log"
