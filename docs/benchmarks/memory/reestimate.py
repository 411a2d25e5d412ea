"""Recompute the estimate columns of the rows measured before the memory model's runtime constant
was re-fitted (half precision, full fine-tuning), from each row's shapes; the peaks stay as measured.

    PYTHONPATH=. .venv/bin/python docs/benchmarks/memory/reestimate.py
"""

import json
from dataclasses import replace
from pathlib import Path

from edge_runtime.memory import Workload, estimate, inference_estimate

HERE = Path(__file__).parent

for name in ("smollm2-lora-half.json", "smollm2-full.json", "smollm2-full-mezo.json"):
    results = json.loads((HERE / name).read_text())
    config = results["config"]
    for row in results["rows"]:
        work = Workload(model=row["model"], precision=row["precision"], batch=row["batch"], seq_len=row["seq_len"],
                        lora_r=config["lora_r"], adapter=row["adapter"],
                        zo_restore=config.get("zo_restore", "snapshot"), nan_guard=config.get("nan_guard", True))
        if row["method"] == "inference":
            row["estimate_bytes"], row["estimate_components"] = inference_estimate(work), None
        else:
            estimated = estimate(replace(work, method=row["method"]))
            row["estimate_bytes"], row["estimate_components"] = estimated.total, estimated.as_dict()
        row["estimate_error"] = row["estimate_bytes"] / row["peak_bytes"] - 1
    results["reestimated"] = "estimate_bytes, estimate_components and estimate_error by reestimate.py"
    (HERE / name).write_text(json.dumps(results, indent=2))
