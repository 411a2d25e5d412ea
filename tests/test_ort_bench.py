"""The benchmarks' ort rows: measured on the exported graph, the memory ones in a process where torch
cannot be imported (the probe hides it, so any use of torch on the ORT path fails the row)."""

import json

from edge_runtime.bench.graphs import graph_bytes
from edge_runtime.cli import main


def test_bench_memory_measures_ort_rows_in_a_torch_free_process(tmp_path):
    out = tmp_path / "memory.json"
    main(
        [
            "bench",
            "memory",
            "--model",
            "tiny-llama",
            "--backends",
            "ort",
            "--precisions",
            "int8,bf16",
            "--methods",
            "zo-sgd,forward-grad,fo-adam",
            "--project",
            "",
            "--max-length",
            "16",
            "--batch-size",
            "2",
            "--steps",
            "1",
            "--threads",
            "1",
            "--graphs",
            str(tmp_path / "graphs"),
            "--out",
            str(out),
            "--progress",
            "false",
        ]
    )
    rows = json.loads(out.read_text())["rows"]
    # bf16 has no ORT graph, forward-grad no ORT method, and ORT backprop trains fp32 encoders only.
    assert [(r["backend"], r["precision"], r["method"]) for r in rows] == [
        ("ort", "int8", "inference"),
        ("ort", "int8", "zo-sgd"),
    ]
    graph = tmp_path / "graphs" / "tiny-llama-sst2-int8-r8"
    for row in rows:
        assert row["measured_seq_len"] == 16 and row["torch_loaded"] is False
        assert row["graph_bytes"] == graph_bytes(graph) and row["peak_bytes"] > 0


def test_bench_speed_times_each_backend_against_its_own_forward(tmp_path):
    out = tmp_path / "speed.json"
    main(
        [
            "bench",
            "speed",
            "--model",
            "tiny-bert",
            "--backends",
            "torch,ort",
            "--ort-precision",
            "fp32",
            "--methods",
            "zo-sgd,forward-grad,fo-adam",
            "--max-length",
            "16",
            "--batch-size",
            "2",
            "--repeats",
            "1",
            "--threads",
            "1",
            "--graphs",
            str(tmp_path / "graphs"),
            "--out",
            str(out),
            "--progress",
            "false",
        ]
    )
    rows = json.loads(out.read_text())["rows"]
    assert [(r["backend"], r["method"]) for r in rows] == [
        ("torch", "forward"),
        ("torch", "zo-sgd"),
        ("torch", "forward-grad"),
        ("torch", "fo-adam"),
        ("ort", "forward"),
        ("ort", "zo-sgd"),
        ("ort", "fo-adam"),
    ]
    for row in rows:
        forward = next(r for r in rows if r["backend"] == row["backend"] and r["method"] == "forward")
        assert row["forward_seconds"] == forward["step_seconds"]
        assert row["ratio_to_forward"] == row["step_seconds"] / forward["step_seconds"]
    assert {r["precision"] for r in rows if r["backend"] == "ort"} == {"fp32"}
