"""Reproduce the README's accuracy table: before/after eval accuracy, steps, wall time and peak
memory of ZO-SGD, Forward-Grad and FO-Adam on SST-2, for one model per call.

    python tools/accuracy_table.py --model minilm --out runs/table/minilm.json

Each run is a plain `edgetune train` with the settings below; the JSON holds every summary and
the Markdown rows are printed at the end (and written beside the JSON).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge_runtime.config import build_config
from edge_runtime.training.config import TrainConfig
from edge_runtime.training.trainer import train

# ZO gets more steps than FO (MeZO: 10-100x), bounded here by one session's CPU time; at lr 1e-2
# ZO-SGD on minilm diverged after ~1000 steps (train loss 0.69 -> 56), hence 3e-3.
RUNS = {
    "minilm": [
        dict(method="zo-sgd", steps=1000, lr=3e-3),
        dict(method="forward-grad", steps=300, lr=3e-3),
        dict(method="fo-adam", steps=150, lr=1e-3),
    ],
    "smollm2-135m": [
        dict(method="zo-sgd", steps=200),
        dict(method="forward-grad", steps=60),
        dict(method="fo-adam", steps=40),
    ],
}
COMMON = dict(task="sst2", k_shot=16, eval_examples=500, batch_size=16, progress=False)
# SmolLM2 is 6x MiniLM's size: smaller batches and eval set keep its table inside a session.
PER_MODEL = {"minilm": {}, "smollm2-135m": dict(lr=1e-4, batch_size=8, eval_examples=200)}


def row(s: dict) -> str:
    return (f"| {s['model']} | {s['method']} | {s['steps']} | {s['lr']:g} | {s['eval_accuracy_before']:.3f} | "
            f"{s['eval_accuracy_after']:.3f} | {s['initial_train_loss']:.3f} -> {s['final_train_loss']:.3f} | "
            f"{s['wall_time_s'] / 60:.1f} | {s['peak_memory_bytes'] / 2**20:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=RUNS, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    summaries = []
    for run in RUNS[args.model]:
        settings = {**COMMON, **PER_MODEL[args.model], **run, "model": args.model,
                    "out_dir": str(out.parent / f"{args.model}-{run['method']}")}
        summaries.append(train(build_config(TrainConfig, settings)))
        out.write_text(json.dumps(summaries, indent=2))  # after every run: a long table survives a stop
    table = "\n".join(row(s) for s in summaries)
    out.with_suffix(".md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
