#!/usr/bin/env bash
# One call on a lent accelerator: correctness against the CPU, then the benchmark tables, into $OUT.
#   run: bash benchmarks/gpu.sh        (JAX with CUDA installed there; no network needed)
# Carry .whl (dp-accounting, ml_collections, dm-tree wheels) and .data (Fashion-MNIST IDX files) if the
# machine lacks them. BENCH_FLAGS picks the benchmark size (default --tiny).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results/gpu}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ! python3 -c "import dp_accounting, ml_collections" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}"
[ -d .data/fashion-mnist ] && export CERTUNLEARN_DATA="$PWD/.data"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/device.txt" || true
python3 -c "import jax; print(jax.__version__, jax.devices())" | tee -a "$OUT/device.txt"
timeout "${CHECK_TIMEOUT:-150}" python3 -m benchmarks.gpu_check --out "$OUT" 2>&1 | tee "$OUT/gpu_check.log"
timeout "${BENCH_TIMEOUT:-240}" python3 -m benchmarks.removal ${BENCH_FLAGS:---tiny} --out "$OUT" 2>&1 | tee "$OUT/removal.log"
# CG iterations and apply cost of each softmax preconditioner (set PRE_TIMEOUT=0 to skip).
if [ "${PRE_TIMEOUT:-120}" != 0 ]; then
  timeout "${PRE_TIMEOUT:-120}" python3 -m benchmarks.preconditioners --out "$OUT" 2>&1 | tee "$OUT/preconditioners.log"
fi
