"""`edgetune bench time-to-accuracy`: which method reaches a target accuracy soonest under a memory cap.

The steps a method needs to gain a few points do not depend on the cap (a micro-batched step
computes the same estimate); the seconds of a step do. So under each cap every candidate of
`--method auto` is planned as a run would plan it (refused where it does not fit) and one step is
timed at its planned micro-batch on this machine, each in a fresh process so one cap's loaded model
is not billed to the next; the steps to each gain come from a measured `bench convergence` curve
(a checkpointed method takes its plain twin's steps: the same gradient). The same steps are then
projected to every shipped device profile with the cost model: the planned step's FLOPs and weight
reads over the profile's throughput and memory bandwidth.
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import asdict

from tqdm import tqdm

from edge_runtime.bench.results import write_results
from edge_runtime.bench.time_to_accuracy_config import TimeToAccuracyBenchConfig
from edge_runtime.costs.flops import step_cost
from edge_runtime.costs.timing import step_seconds
from edge_runtime.devices.profiles import builtin_profiles
from edge_runtime.estimators import get_method
from edge_runtime.memory import Workload
from edge_runtime.spec import AdapterSpec, MethodSpec

NO_CAP = "none"


def run(config: TimeToAccuracyBenchConfig) -> list[dict]:
    # Imported here: the probe process runs this module, and onnxruntime (which the memory bench
    # imports) would be billed to its baseline under the cap.
    from edge_runtime.bench.memory import probe_in_fresh_process

    config.validate()
    steps, start = steps_to_gains(json.loads(open(config.curves).read())["rows"], config.model, config.gains)
    rows: list[dict] = []
    for cap in tqdm(config.caps, desc="bench time-to-accuracy", disable=not config.progress):
        probe = {**asdict(config), "cap": cap}
        for candidate in probe_in_fresh_process(probe, "edge_runtime.bench.time_to_accuracy")["candidates"]:
            rows.append(_row(config, cap, candidate, steps, start))
    write_results("time-to-accuracy", config, rows, table)
    return rows


def steps_to_gains(curve_rows: list[dict], model: str, gains: tuple[int, ...]) -> tuple[dict, float]:
    """{method: {gain: first evaluated step at or past start + gain points, or None}} and the start."""
    found, start = {}, None
    for row in curve_rows:
        if row.get("model") != model or row.get("variant") or row.get("skipped"):
            continue
        start = row["accuracy_before"]
        found[row["method"]] = {
            gain: next((p["step"] for p in row["curve"] if p["eval_accuracy"] >= start + gain / 100), None)
            for gain in gains
        }
    if not found:
        raise ValueError(f"the curves hold no plain run of {model}")
    return found, start


def _row(config: TimeToAccuracyBenchConfig, cap: str, candidate: dict, steps: dict, start: float) -> dict:
    method = candidate["method"]
    row = {
        "model": config.model,
        "task": config.task,
        "cap": cap,
        "method": method,
        "start_accuracy": start,
        "refused": candidate.get("refused"),
    }
    if row["refused"]:
        return row
    # A method the curves never ran reaches no gain: it ranks after every method that did.
    measured = steps.get(method) or steps.get(_plain_twin(method)) or dict.fromkeys(config.gains)
    micro = candidate["micro_batch"] or config.batch_size
    accumulation = config.batch_size / micro  # the last micro-batch holds what is left, not a whole one
    work = Workload(
        AdapterSpec(config.model, config.task, config.precision),
        MethodSpec(method),
        batch=micro,
        seq_len=config.max_length,
        perturbations_per_pass=candidate["perturbations_per_pass"],
    )
    cost = step_cost(work)
    profile_step = {
        p.id: accumulation * step_seconds(p, cost.flops, config.precision, cost.bytes_read)
        for p in builtin_profiles().values()
        if config.precision in p.precisions
    }
    row |= {
        "micro_batch": micro,
        "needs_bytes": candidate["needs"],
        "step_seconds": candidate["step_seconds"],
        "steps_to_gain": {str(g): measured.get(g) for g in config.gains},
        "seconds_to_gain": {
            str(g): None if measured.get(g) is None else measured[g] * candidate["step_seconds"] for g in config.gains
        },
        "profile_seconds_to_gain": {
            device: {str(g): None if measured.get(g) is None else measured[g] * seconds for g in config.gains}
            for device, seconds in profile_step.items()
        },
    }
    return row


def _plain_twin(method: str) -> str | None:
    """The method whose gradient a checkpointed one computes."""
    return next((m for m in ("fo-sgd", "fo-adam") if get_method(m).recomputing_twin == method), None)


def table(rows: list[dict]) -> str:
    gains = list(next((r["steps_to_gain"] for r in rows if not r.get("refused")), {}))
    head = " | ".join(f"+{g} points" for g in gains)
    lines = [
        f"| cap | method | plan | step | {head} | x the fastest (+{gains[len(gains) // 2]}) |",
        "|---|---|---|---|" + "---|" * len(gains) + "---|",
    ]
    middle = str(gains[len(gains) // 2]) if gains else None
    for cap in dict.fromkeys(r["cap"] for r in rows):
        group = [r for r in rows if r["cap"] == cap]
        reached = [r["seconds_to_gain"][middle] for r in group if not r.get("refused") and r["seconds_to_gain"][middle]]
        best = min(reached, default=None)
        for r in group:
            if r.get("refused"):
                lines.append(f"| {cap} | {r['method']} | {r['refused']} | |" + " |" * len(gains) + " |")
                continue
            cells = " | ".join(_minutes(r["seconds_to_gain"][g], r["steps_to_gain"][g]) for g in gains)
            ratio = r["seconds_to_gain"][middle]
            lines.append(
                f"| {cap} | {r['method']} | micro-batch {r['micro_batch']} | {r['step_seconds']:.2f} s | "
                f"{cells} | {f'{ratio / best:.1f}' if ratio and best else 'not reached'} |"
            )
    return "\n".join(lines + ["", *_projection(rows, middle)])


def _projection(rows: list[dict], gain: int | None) -> list[str]:
    """Minutes to the middle gain of each method that reached it, on each shipped device profile."""
    reached = [r for r in rows if not r.get("refused") and r["seconds_to_gain"].get(str(gain)) is not None]
    if not reached:
        return []
    devices = list(reached[0]["profile_seconds_to_gain"])
    lines = [
        f"Projected minutes to +{gain} points on each shipped device profile (cost model, same plan):",
        "",
        "| cap | method | " + " | ".join(devices) + " |",
        "|---|---|" + "---|" * len(devices),
    ]
    for r in reached:
        cells = " | ".join(f"{r['profile_seconds_to_gain'][d][str(gain)] / 60:.1f}" for d in devices)
        lines.append(f"| {r['cap']} | {r['method']} | {cells} |")
    return lines


def _minutes(seconds: float | None, steps: int | None) -> str:
    return "not reached" if seconds is None else f"{seconds / 60:.1f} min ({steps} steps)"


def _candidates(probe: dict) -> list[dict]:
    """In a fresh process: `--method auto`'s candidates under the probe's cap, planned and timed."""
    from edge_runtime.config import build_config
    from edge_runtime.costs.time_to_target import CANDIDATES
    from edge_runtime.errors import UserError
    from edge_runtime.training.config import TrainConfig
    from edge_runtime.training.trainer import build_run

    with tempfile.TemporaryDirectory(prefix="edgetune-tta-") as scratch:
        config = build_config(
            TrainConfig,
            {
                "model": probe["model"],
                "task": probe["task"],
                "method": "auto",
                "steps": 1,
                "batch_size": probe["batch_size"],
                "max_length": probe["max_length"],
                "precision": probe["precision"],
                "memory_cap": None if probe["cap"] == NO_CAP else probe["cap"],
                "eval_examples": 8,
                "device": probe["device"],
                "out_dir": scratch,
                "progress": False,
            },
            {},
        )
        try:
            run = build_run(config)
        except UserError as refusal:  # not one candidate fits: each is refused for the same reason
            return [{"method": method, "refused": str(refusal).split(": ", 1)[-1]} for method in CANDIDATES]
    return [asdict(c) for c in run.candidates]


if __name__ == "__main__":
    import torch

    request = json.loads(sys.argv[1])
    torch.set_num_threads(request["threads"])
    print(json.dumps({"candidates": _candidates(request)}))
