"""Finished `edgetune train` runs as one `bench convergence` results file, so that `edgetune bench
report` tables and draws their curves (dev accuracy against forward passes and training time, the
start and its standard error marked) beside the bench's own.

    .venv/bin/python tools/train_runs_to_curves.py runs/seed0=seed0 runs/seed1=seed1 \
        --out docs/benchmarks/convergence/smollm2-sst2-recipe.json

Each argument is a run's --out-dir, then `=` and the label its row and curve carry. A run needs
every step's metrics.jsonl (as training wrote it): the time along a curve is the sum of its steps'.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge_runtime.bench.convergence import run_row, table
from edge_runtime.errors import UserError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="FOLDER=LABEL", help="a run's --out-dir and its label")
    parser.add_argument("--out", required=True, help="the results JSON (its Markdown table is written beside it)")
    args = parser.parse_args()
    try:
        rows = [run_row(Path(folder), label) for folder, _, label in (run.partition("=") for run in args.runs)]
    except UserError as error:
        sys.exit(f"train_runs_to_curves: {error}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"bench": "convergence", "config": {"runs": args.runs}, "rows": rows}, indent=2))
    out.with_suffix(".md").write_text(table(rows) + "\n")
    print(f"wrote {args.out} ({len(rows)} runs)")


if __name__ == "__main__":
    main()
