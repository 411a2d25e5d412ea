#!/usr/bin/env bash
# Sequential vs batched two-point ZO steps over one forward pass, per model, precision and batch.
# Usage: docs/benchmarks/batched-zo/speed.sh [cpu|cuda]   (writes speed-<device>-*.json here)
set -euo pipefail
device=${1:-cpu}
here=$(dirname "$0")
for model in minilm smollm2-135m; do
  for precision in fp32 int8; do
    for batch in 1 4 16; do
      .venv/bin/edgetune bench speed --model "$model" --precision "$precision" --batch-size "$batch" --max-length 128 \
        --methods zo-sgd --queries 1,4 --zo-passes sequential,batched --repeats 3 --threads 2 --device "$device" \
        --progress false --out "$here/speed-$device-$model-$precision-b$batch.json"
    done
  done
done
