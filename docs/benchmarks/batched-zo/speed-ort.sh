#!/usr/bin/env bash
# The ONNX Runtime rows: sequential vs batched two-point ZO on the exported graph (fp32 and int8 base).
# Usage: docs/benchmarks/batched-zo/speed-ort.sh   (writes speed-ort-*.json here)
set -euo pipefail
here=$(dirname "$0")
for model in minilm smollm2-135m; do
  for precision in fp32 int8; do
    for batch in 1 4 16; do
      .venv/bin/edgetune bench speed --model "$model" --backends ort --ort-precision "$precision" --batch-size "$batch" \
        --max-length 128 --methods zo-sgd --queries 1,4 --zo-passes sequential,batched --repeats 3 --threads 2 \
        --graphs runs/graphs --progress false --out "$here/speed-ort-$model-$precision-b$batch.json"
    done
  done
done
