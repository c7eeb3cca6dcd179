#!/usr/bin/env bash
# Trial throughput on a CUDA device: the harness's student training step against the reference
# loop (benchmarks/throughput.py), fp32 and bf16 autocast, T in {1,2,4,8} x depth in {8,14,20},
# samples/s and peak memory (torch.cuda.max_memory_allocated); then train.precision fp32 against bf16
# for the built-in spikformer, whole trials (benchmarks/precision.py). Under 8 minutes on one H100/H200.
#
#   bash benchmarks/gpu_check.sh            # results in $OUT if set, else benchmarks/results/
#
# Runs from the repository root without an install (PYTHONPATH); on an offline machine put wheels
# of the missing packages in .whl/ (pydantic, pydantic-core, annotated-types, typing-inspection,
# loguru, spikingjelly, mlxtend) and they are installed into /tmp/site first.
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
if compgen -G ".whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
DEST="${OUT:-benchmarks/results}"
mkdir -p "$DEST"

"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check.sh: no CUDA device')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$DEST/gpu_check_device.csv" 2>&1 || true

# train.precision for the spiking transformer: whole trials at fp32 and bf16 (benchmarks/precision.py).
timeout 240 "$PY" benchmarks/precision.py --device cuda --threads 8 --out "$DEST/precision_gpu.json" 2>&1 \
  | tee "$DEST/precision_gpu.log"
for amp in none bf16; do
  timeout 140 "$PY" benchmarks/throughput.py --device cuda --amp "$amp" --threads 8 --batches 10 --repeats 5 \
    --out "$DEST/throughput_gpu_${amp}.json" 2>&1 | tee "$DEST/throughput_gpu_${amp}.log"
done
