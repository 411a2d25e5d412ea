#!/usr/bin/env bash
# Forward-Grad with q = 4 tangents one jvp at a time vs one vmapped jvp, PyTorch fp32.
# Usage: docs/benchmarks/batched-zo/speed-forward-grad.sh [cpu|cuda]
set -euo pipefail
device=${1:-cpu}
here=$(dirname "$0")
for model in minilm smollm2-135m; do
  for batch in 1 4; do
    .venv/bin/edgetune bench speed --model "$model" --batch-size "$batch" --max-length 128 --methods forward-grad \
      --queries 4 --zo-passes sequential,batched --repeats 3 --threads 2 --device "$device" --progress false \
      --out "$here/speed-fg-$device-$model-b$batch.json"
  done
done
