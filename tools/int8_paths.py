"""Compare CPU int8 paths for a frozen base: speed, accuracy and transient memory, in one run.

    python tools/int8_paths.py --model smollm2-135m --batch-size 8 --max-length 128 \
        --out docs/benchmarks/int8/int8-paths.json

Rows: fp32 reference; torch.ao eager dynamic quantization (int8 weights and activations);
torchao Int8WeightOnly (if torchao is installed: `pip install torchao==0.18.0`); ours
(edge_runtime.models.int8: per-row int8 weights, dequantized in bounded chunks). Times are
ratios to fp32 measured in the same process; accuracy is the relative error of the last
position's logits and top-1 agreement against fp32.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import time
import warnings

import torch

from edge_runtime.memory.tracker import LiveBytes
from edge_runtime.models import load_model
from edge_runtime.models.int8 import quantize_frozen_


def _variants(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    out = {"fp32": model}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["torch.ao dynamic"] = torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8
        )
    try:
        from torchao.quantization import Int8WeightOnlyConfig, quantize_

        torchao_model = copy.deepcopy(model)
        quantize_(
            torchao_model,
            Int8WeightOnlyConfig(),
            filter_fn=lambda m, _: isinstance(m, (torch.nn.Linear, torch.nn.Embedding)),
        )
        out["torchao int8 weight-only"] = torchao_model
    except ImportError:
        pass
    ours = copy.deepcopy(model)
    quantize_frozen_(ours)
    out["edgetune int8 (chunked)"] = ours
    return out


def _serialized_bytes(model: torch.nn.Module) -> int:
    """Size of the state dict as saved: counts torch.ao's packed weights, which are neither
    parameters nor buffers. Tied weights are saved once."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    model = load_model(args.model).model.eval()
    ids = torch.randint(
        0, model.config.vocab_size, (args.batch_size, args.max_length), generator=torch.Generator().manual_seed(0)
    )

    def forward(m):
        with torch.no_grad():
            return m(input_ids=ids, logits_to_keep=1, use_cache=False).logits[:, -1].float()

    reference = forward(model)
    rows = []
    for name, variant in _variants(model).items():
        logits = forward(variant)  # warm-up
        tick = time.perf_counter()
        for _ in range(args.repeats):
            forward(variant)
        seconds = (time.perf_counter() - tick) / args.repeats
        with LiveBytes() as tracked:
            forward(variant)
        weights = _serialized_bytes(variant)
        rows.append(
            {
                "path": name,
                "forward_s": seconds,
                "weight_bytes": weights,
                "activation_peak_bytes": tracked.peak,
                "logit_rel_error": float((logits - reference).norm() / reference.norm()),
                "top1_agreement": float((logits.argmax(-1) == reference.argmax(-1)).float().mean()),
            }
        )
    for row in rows:
        row["time_vs_fp32"] = row["forward_s"] / rows[0]["forward_s"]
        print(
            f"{row['path']:26s} {row['time_vs_fp32']:5.2f}x time  weights {row['weight_bytes'] / 1e6:6.1f} MB  "
            f"activations {row['activation_peak_bytes'] / 1e6:6.1f} MB  logit error {row['logit_rel_error']:.3f}  "
            f"top-1 {row['top1_agreement']:.2f}"
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(
                {
                    "model": args.model,
                    "batch_size": args.batch_size,
                    "max_length": args.max_length,
                    "threads": torch.get_num_threads(),
                    "rows": rows,
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
