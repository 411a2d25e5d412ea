#!/usr/bin/env bash
# Peak memory of batched two-point ZO (q = 4) beside one copy at a time, each row in a fresh process,
# with the memory model's estimate. Usage: docs/benchmarks/batched-zo/memory.sh
set -euo pipefail
here=$(dirname "$0")
for model in minilm smollm2-135m; do
  for batch in 1 4; do
    for per_pass in 1 2 8; do
      .venv/bin/edgetune bench memory --model "$model" --methods zo-sgd --precisions fp32,int8 --batch-size "$batch" \
        --max-length 128 --queries 4 --perturbations-per-pass "$per_pass" --threads 1 --steps 2 --progress false \
        --out "$here/memory-$model-b$batch-k$per_pass.json"
    done
  done
done
