"""ZO-SGD on the ONNX Runtime graph (int8 base by default) against PyTorch fp32: the same task,
steps, seed, batches and directions, then the same evaluation set (issue 4: within 2 points).

    PYTHONPATH=. OMP_NUM_THREADS=1 python tools/ort_accuracy.py --model minilm --steps 1000 \
        --out docs/benchmarks/ort/accuracy-minilm-int8.json

Both backends start from the PyTorch model's initial adapter and head (seed 0), and both run the
device agents' local-training path (`TorchModel.train` / `OrtModel.train` on one task), so the only
difference left is the runtime and the base's precision.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from edge_runtime.agent.ort_backend import OrtModel
from edge_runtime.bench.graphs import exported_graph, graph_bytes
from edge_runtime.local.torch_model import TorchModel
from edge_runtime.protocol import pb
from edge_runtime.protocol.specs import adapter_message, method_message
from edge_runtime.spec import AdapterSpec, EstimatorSettings, MethodSpec
from edge_runtime.tasks import few_shot, load_split, subsample

TASK, LORA_R = "sst2", 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--precision", default="int8", help="base precision of the ORT graph")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--mu", type=float, default=1e-2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--k-shot", type=int, default=16)
    parser.add_argument("--eval-examples", type=int, default=500)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--graphs", default="runs/graphs")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    train = few_shot(load_split(TASK, "train"), args.k_shot, args.seed)
    evaluation = subsample(load_split(TASK, "eval"), args.eval_examples, args.seed)
    torch_model = TorchModel(
        AdapterSpec(
            args.model, TASK, max_length=args.max_length, lora_r=LORA_R, lora_alpha=2 * LORA_R, init_seed=args.seed
        )
    )
    graph = exported_graph(args.graphs, args.model, TASK, args.precision, LORA_R)
    ort_model = OrtModel(graph, threads=args.threads)
    start = torch_model.state()
    task = pb.Task(
        adapter=adapter_message(torch_model.spec),
        method=method_message(MethodSpec("zo-sgd", EstimatorSettings(mu=args.mu))),
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        tensors=list(start),
    )
    evaluate = {
        "torch": lambda: torch_model.evaluate(evaluation).accuracy,
        "ort": lambda: ort_model.objective.evaluate(evaluation, args.max_length)[0],
    }
    runs = {}
    for name, backend in (("torch", torch_model), ("ort", ort_model)):
        backend.load_state(start)
        before = evaluate[name]()
        print(f"{name}: training {args.steps} steps", flush=True)
        result = backend.train(task, train)
        backend.load_state({n: start[n] + result.deltas[n] for n in start})
        after = evaluate[name]()
        runs[name] = {
            "precision": "fp32" if name == "torch" else args.precision,
            "accuracy_before": before,
            "accuracy_after": after,
            "train_seconds": result.seconds,
            "steps": result.steps,
            "stopped": result.stopped,
            "losses": result.losses,
        }
        print(f"{name}: accuracy {before:.3f} -> {after:.3f} in {result.seconds:.0f} s", flush=True)
    torch_losses, ort_losses = np.array(runs["torch"]["losses"]), np.array(runs["ort"]["losses"])
    summary = {
        "config": vars(args),
        "graph_bytes": graph_bytes(graph),
        "runs": runs,
        "accuracy_gap_points": 100 * (runs["ort"]["accuracy_after"] - runs["torch"]["accuracy_after"]),
        "first_step_loss_gap": float(abs(ort_losses[0] - torch_losses[0])),
        "mean_train_loss_last_100": {
            "torch": float(torch_losses[-100:].mean()),
            "ort": float(ort_losses[-100:].mean()),
        },
        "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": "shared 2-core CPU box (4 sessions in parallel); seconds are indicative only",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2))
    headline = ("accuracy_gap_points", "first_step_loss_gap", "mean_train_loss_last_100")
    print(json.dumps({k: summary[k] for k in headline}))


if __name__ == "__main__":
    main()
