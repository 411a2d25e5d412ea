"""Averages of a finished ZO run's iterates, scored on the dev set without a single training pass.

A ZO-SGD step is its lr, its seed and one scalar, and `edgetune train` writes all three to
metrics.jsonl. This script rebuilds the run from its summary.json (same adapter start, same head
constants), replays every step with the run's own update rule, checks that the replayed end point is
the run's saved one, and scores on the dev set: the iterate at chosen steps, uniform averages of the
iterates from chosen steps to the end (tail / Polyak-Ruppert averaging), and exponential moving averages.
Whether averaging takes out the end point's wobble (about 1.5 points of accuracy within 400 steps)
is then measured on the very trajectory the run took.

    R=docs/benchmarks/convergence
    OMP_NUM_THREADS=1 .venv/bin/python $R/experiments/replay_averages.py runs/traj-seed0 \
        > $R/experiments/replay_averages_seed0.log
    # without the run folder, from its kept trajectory (no checkpoint to compare the end point with)
    OMP_NUM_THREADS=1 .venv/bin/python $R/experiments/replay_averages.py \
        $R/long-run/smollm2-recipe-seed0-trajectory --out /tmp/averages.json
"""

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from edge_runtime.config import build_config
from edge_runtime.estimators.base import SeedScalarEstimate
from edge_runtime.local.evaluation import evaluate
from edge_runtime.training.averaging import TailAverage, swapped_in
from edge_runtime.training.config import TrainConfig
from edge_runtime.training.trainer import build_run, warm_start

parser = argparse.ArgumentParser()
parser.add_argument(
    "run", type=Path, help="a finished `edgetune train` folder, or long-run/<name> (its summary and metrics)"
)
parser.add_argument("--tails", default="1400,1680,2000,2240,2500", help="uniform averages from these steps to the end")
parser.add_argument("--emas", default="0.99,0.995,0.998", help="EMA decays, started at --ema-from")
parser.add_argument("--ema-from", type=int, default=1000)
parser.add_argument("--iterates", default="2000,2200,2400,2800", help="steps whose iterate is scored")
parser.add_argument("--out", type=Path, help="JSON file for the scores (default: RUN/averages.json)")
args = parser.parse_args()

# A run's folder, or the <name>.summary.json / <name>.metrics.jsonl pair kept in long-run/.
folder = args.run.is_dir()
summary_path, metrics_path = (
    (args.run / "summary.json", args.run / "metrics.jsonl")
    if folder
    else (args.run.with_name(args.run.name + ".summary.json"), args.run.with_name(args.run.name + ".metrics.jsonl"))
)
summary = json.loads(summary_path.read_text())
config = build_config(TrainConfig, summary["config"] | {"progress": False, "eval_every": 0, "out": None})
run = build_run(config)
warm_start(run)  # the head's constants as the run had them; the trained tensors are untouched
params = run.objective.params
rule, subspace = run.method.rule, run.method.estimator.subspace
tails = {int(s): TailAverage(params, int(s)) for s in args.tails.split(",") if s}  # the trainer's own mean
emas = [float(d) for d in args.emas.split(",") if d]
iterates = {int(s) for s in args.iterates.split(",") if s}


def copy() -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in params.items()}


def score(name: str, step: int, tensors: dict[str, torch.Tensor] | None = None) -> dict:
    if tensors is None:
        result = evaluate(run.objective, run.eval, config.eval_batch_size, run.device)
    else:
        with swapped_in(params, tensors):
            result = evaluate(run.objective, run.eval, config.eval_batch_size, run.device)
    row = {"average": name, "step": step, "accuracy": result.accuracy, "loss": result.loss, "examples": len(run.eval)}
    print(json.dumps(row), flush=True)
    return row


rows = []
ema_state: dict[float, dict[str, torch.Tensor]] = {}
records = [json.loads(line) for line in metrics_path.read_text().splitlines()]
with torch.no_grad():
    for record in records:
        step = record["step"]
        estimate = SeedScalarEstimate(record["loss"], 2, record["seeds"], record["scalars"], subspace)
        rule.apply(params, estimate, record["lr"])
        for average in tails.values():
            average.update(step)
        for decay in emas:
            if step > args.ema_from:
                ema = ema_state.setdefault(decay, copy())
                for n, p in params.items():
                    ema[n].lerp_(p, 1 - decay)
        if step in iterates:
            rows.append(score("iterate", step))
drift = None  # kept metrics come without the checkpoint; the last iterate's score then checks the replay
if folder:
    saved = load_file(str(args.run / "checkpoint" / "trainable.safetensors"))
    drift = max((saved[n] - p.detach()).abs().max().item() for n, p in params.items())
print(json.dumps({"replayed_steps": len(records), "max_abs_difference_from_saved": drift}), flush=True)
final = records[-1]["step"]
for start, average in tails.items():
    rows.append(score(f"tail after step {start} ({average.count} iterates)", final, average.mean))
for decay, ema in ema_state.items():
    rows.append(score(f"ema {decay} from {args.ema_from}", final, ema))
out = args.out or (args.run / "averages.json" if folder else args.run.with_name(args.run.name + ".averages.json"))
out.write_text(json.dumps({"run": str(args.run), "max_abs_difference_from_saved": drift, "rows": rows}, indent=2))
