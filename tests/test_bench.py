"""`edgetune bench memory|speed` at their quick size: the JSON has the promised fields and
physically sane values (not timings or sizes, which belong to the full runs)."""

import json

from edge_runtime.bench.speed import table
from edge_runtime.cli import main

MEMORY_FIELDS = {
    "model",
    "method",
    "precision",
    "batch_size",
    "max_length",
    "peak_bytes",
    "inference_peak_bytes",
    "estimate_bytes",
}


def test_bench_memory_writes_one_row_per_run_and_projects_to_paper_scales(tmp_path):
    out = tmp_path / "memory.json"
    main(
        [
            "bench",
            "memory",
            "--model",
            "tiny-llama",
            "--methods",
            "zo-sgd,fo-adam",
            "--precisions",
            "fp32",
            "--max-length",
            "64",
            "--batch-size",
            "4",
            "--threads",
            "1",
            "--project",
            "llama-2-7b",
            "--progress",
            "false",
            "--out",
            str(out),
        ]
    )
    rows = json.loads(out.read_text())["rows"]
    measured = [r for r in rows if not r.get("projected")]
    assert [r["method"] for r in measured] == ["inference", "zo-sgd", "fo-adam"]
    for row in measured:
        assert MEMORY_FIELDS <= row.keys() and row["measured_seq_len"] == 64
        assert row["peak_bytes"] > 0 and row["estimate_bytes"] > 0
        assert row["inference_peak_bytes"] == measured[0]["peak_bytes"]
    by_method = {r["method"]: r for r in measured}
    assert by_method["fo-adam"]["peak_bytes"] > by_method["zo-sgd"]["peak_bytes"]
    projected = [r for r in rows if r.get("projected")]
    assert {r["model"] for r in projected} == {"llama-2-7b"} and len(projected) == 3
    assert all(r["estimate_bytes"] > 13e9 for r in projected)  # 6.7B fp16 weights at least


def test_bench_speed_reports_each_method_against_one_forward_pass(tmp_path):
    out = tmp_path / "speed.json"
    main(
        [
            "bench",
            "speed",
            "--model",
            "tiny-llama",
            "--methods",
            "zo-sgd,zo-sgd-cons,forward-grad",
            "--max-length",
            "32",
            "--batch-size",
            "4",
            "--queries",
            "1,2",
            "--zo-passes",
            "sequential,batched",
            "--repeats",
            "1",
            "--threads",
            "1",
            "--progress",
            "false",
            "--out",
            str(out),
        ]
    )
    rows = json.loads(out.read_text())["rows"]
    assert [(r["method"], r["queries"], r["zo_pass"]) for r in rows] == [
        ("forward", 1, ""),
        ("zo-sgd", 1, "sequential"),
        ("zo-sgd", 1, "batched"),
        ("zo-sgd", 2, "sequential"),
        ("zo-sgd", 2, "batched"),
        ("zo-sgd-cons", 1, "sequential"),
        ("zo-sgd-cons", 1, "batched"),
        ("zo-sgd-cons", 2, "sequential"),
        ("zo-sgd-cons", 2, "batched"),
        ("forward-grad", 1, "sequential"),
        ("forward-grad", 1, "batched"),
        ("forward-grad", 2, "sequential"),
        ("forward-grad", 2, "batched"),
    ]
    assert rows[0]["ratio_to_forward"] == 1.0
    # The floor is measured once and every ratio is taken against it; the seconds themselves belong to
    # the full runs (a timing comparison here would fail whenever the machine is busy).
    floor = rows[0]["step_seconds"]
    for row in rows:
        assert row["forward_seconds"] == floor and row["step_seconds"] > 0
        assert row["ratio_to_forward"] == row["step_seconds"] / floor
    assert "| zo-sgd | 2 | batched |" in table(rows)


def test_bench_fleet_measures_fleets_beside_one_device_alone(tmp_path):
    out = tmp_path / "fleet.json"
    main(
        [
            "bench",
            "fleet",
            "--quick",
            "true",
            "--threads",
            "1",
            "--progress",
            "false",
            "--batch-devices",
            "1,4",
            "--out",
            str(out),
        ]
    )
    rows = json.loads(out.read_text())["rows"]
    assert [(r["devices"], r["batch_devices"]) for r in rows] == [(1, 1), (2, 1), (10, 1), (2, 4), (10, 4)]
    assert all(r["device_steps"] == 40 and r["device_steps_per_s"] > 0 for r in rows)
    assert all(r["adapter_bytes"] > 0 and r["rss_after"] > 0 for r in rows)
    # The slope over fleet size is measured between the fleets, not against the lone device.
    assert "bytes_per_added_device" in rows[2] and "bytes_per_added_device" not in rows[1]
    assert rows[1]["throughput_vs_one_device"] > 0
    unbatched, batched = rows[2], rows[4]
    assert unbatched["devices_per_pass"] == 0 and 1 < batched["devices_per_pass"] <= 4
    assert batched["throughput_vs_unbatched"] == batched["device_steps_per_s"] / unbatched["device_steps_per_s"]


def test_bench_time_to_accuracy_plans_and_times_each_method_under_each_cap(tmp_path):
    """Steps to each gain from a convergence curve, seconds from a step timed under each cap (a
    checkpointed method takes its plain twin's steps), projected to the shipped device profiles."""

    def curve(method, accuracies):
        return {
            "model": "tiny-bert",
            "method": method,
            "variant": "",
            "accuracy_before": 0.5,
            "curve": [{"step": 10 * i, "eval_accuracy": a} for i, a in enumerate(accuracies)],
        }

    curves = tmp_path / "curves.json"
    curves.write_text(
        json.dumps({"rows": [curve("fo-adam", [0.5, 0.53, 0.56, 0.61]), curve("zo-sgd", [0.5, 0.51, 0.515, 0.525])]})
    )
    out = tmp_path / "tta.json"
    main(
        [
            "bench",
            "time-to-accuracy",
            "--model",
            "tiny-bert",
            "--caps",
            "none,300MB",
            "--curves",
            str(curves),
            "--batch-size",
            "4",
            "--max-length",
            "32",
            "--threads",
            "1",
            "--progress",
            "false",
            "--out",
            str(out),
        ]
    )
    rows = json.loads(out.read_text())["rows"]
    assert [(r["cap"], r["method"]) for r in rows] == [
        (cap, m) for cap in ("none", "300MB") for m in ("fo-adam", "fo-adam-ckpt", "forward-grad", "zo-sgd")
    ]
    assert all("300MB cap" in r["refused"] for r in rows if r["cap"] == "300MB")  # below the runtime itself
    uncapped = {r["method"]: r for r in rows if r["cap"] == "none"}
    assert all(not r["refused"] and r["step_seconds"] > 0 for r in uncapped.values())
    assert (
        uncapped["fo-adam"]["steps_to_gain"]
        == uncapped["fo-adam-ckpt"]["steps_to_gain"]
        == {"2": 10, "5": 20, "10": 30}
    )
    assert uncapped["zo-sgd"]["steps_to_gain"] == {"2": 30, "5": None, "10": None}
    assert uncapped["forward-grad"]["steps_to_gain"] == {"2": None, "5": None, "10": None}  # no curve
    fo = uncapped["fo-adam"]
    assert fo["seconds_to_gain"]["5"] == 20 * fo["step_seconds"]
    assert "pixel-8" in fo["profile_seconds_to_gain"] and fo["profile_seconds_to_gain"]["pixel-8"]["5"] > 0
    assert "| none | fo-adam | micro-batch 4 |" in (tmp_path / "tta.md").read_text()


def test_a_convergence_plot_marks_the_start_and_does_not_stretch_noise_across_the_panel():
    from edge_runtime.bench.report import MIN_ACCURACY_SPAN, _pyplot, plot_curves

    curve = [
        {"forward_passes": n, "train_seconds": n / 10, "eval_accuracy": a, "eval_loss": 0.7, "train_loss": 0.7}
        for n, a in ((0, 0.59), (100, 0.59), (200, 0.6))
    ]
    row = {"model": "m", "task": "copa", "adapter": "lora", "method": "zo-sgd", "curve": curve}
    figure = plot_curves(_pyplot(), [row | {"accuracy_before": 0.59, "eval_examples": 100}])
    loss_axis, *accuracy_axes = figure.axes
    for axis in accuracy_axes:
        low, high = axis.get_ylim()
        # A 0.01 change on 100 examples (one standard error is 0.049) stays small on the panel.
        assert high - low >= MIN_ACCURACY_SPAN - 1e-9 and low <= 0.59 - 0.049 and high >= 0.59 + 0.049
        assert len(axis.patches) == 1  # the band of the start +- one standard error
        assert any(list(line.get_ydata()) == [0.59, 0.59] for line in axis.lines)  # the start itself
    assert [t.get_text() for t in accuracy_axes[0].get_legend().get_texts()] == ["zo-sgd", "start +- 1 s.e."]
