"""The paper-claims bench suite at its quick size (`bench convergence`, `comm`, `federated`, `report`):
the JSON has the promised fields and physically sane values, not timings, which belong to full runs.
The quick runs happen once per module and the report test renders their very files."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edge_runtime.cli import main


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    # Memory is measured in fresh processes (seconds each); the slow test below covers it.
    main(
        [
            "bench",
            "convergence",
            "--quick",
            "true",
            "--tasks",
            "sst2",
            "--methods",
            "zo-sgd,fo-sgd",
            "--memory",
            "false",
            "--threads",
            "1",
            "--progress",
            "false",
            "--keep-runs",
            str(folder / "runs"),
            "--out",
            str(folder / "convergence.json"),
        ]
    )
    main(["bench", "comm", "--quick", "true", "--progress", "false", "--out", str(folder / "comm.json")])
    main(
        [
            "bench",
            "federated",
            "--quick",
            "true",
            "--runs",
            "spry,fedmezo-seeds,fedavg-backprop",
            "--targets",
            "0.3,0.99",
            "--progress",
            "false",
            "--out",
            str(folder / "federated.json"),
        ]
    )
    return folder


def test_bench_convergence_spends_the_same_forward_passes_on_every_method(bench_dir):
    rows = {r["method"]: r for r in json.loads((bench_dir / "convergence.json").read_text())["rows"]}
    assert set(rows) == {"zo-sgd", "fo-sgd"}
    # The budget is 24 passes: 12 two-point ZO steps, 24 backprop steps.
    assert (rows["zo-sgd"]["steps"], rows["fo-sgd"]["steps"]) == (12, 24)
    for row in rows.values():
        assert row["forward_passes"] == row["budget"] == 24
        curve = row["curve"]
        assert [p["step"] for p in curve] == [0, row["steps"] // 2, row["steps"]]
        assert curve[0]["eval_accuracy"] == row["accuracy_before"]
        assert curve[-1]["eval_accuracy"] == row["final_accuracy"]
        assert all(0 <= p["eval_accuracy"] <= 1 and p["train_loss"] > 0 for p in curve)
        seconds = [p["train_seconds"] for p in curve]
        assert seconds[0] == 0 and seconds == sorted(seconds) and seconds[-1] > 0
        assert row["step_seconds"] > 0 and row["forward_seconds"] > 0
        assert row["ratio_to_forward"] == pytest.approx(row["step_seconds"] / row["forward_seconds"])
    table = (bench_dir / "convergence.md").read_text()
    assert "| tiny-bert | sst2 | lora | zo-sgd |  | 12 |" in table and "| fo-sgd |  | 24 |" in table


def test_bench_convergence_keeps_each_runs_step_metrics_where_asked(bench_dir, capsys):
    rows = json.loads((bench_dir / "convergence.json").read_text())["rows"]
    assert [r["run_folder"] for r in rows] == [
        str(bench_dir / "runs" / "00-tiny-bert-sst2-lora-zo-sgd"),
        str(bench_dir / "runs" / "01-tiny-bert-sst2-lora-fo-sgd"),
    ]
    for row in rows:
        records = [json.loads(line) for line in open(f"{row['run_folder']}/metrics.jsonl")]
        assert [r["step"] for r in records if "loss" in r] == list(range(1, row["steps"] + 1))
    # A second run into the same folder would append its steps to the first one's.
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "bench",
                "convergence",
                "--quick",
                "true",
                "--tasks",
                "sst2",
                "--methods",
                "zo-sgd",
                "--memory",
                "false",
                "--progress",
                "false",
                "--out",
                "none",
                "--keep-runs",
                str(bench_dir / "runs"),
            ]
        )
    assert exit_info.value.code == 2
    assert "00-tiny-bert-sst2-lora-zo-sgd holds a run already" in capsys.readouterr().err


def test_a_kept_training_run_makes_the_same_curve_row_the_bench_wrote(bench_dir, tmp_path):
    rows = json.loads((bench_dir / "convergence.json").read_text())["rows"]
    out = tmp_path / "runs.json"
    folders = [f"{row['run_folder']}={row['method']}" for row in rows]
    subprocess.run([sys.executable, "tools/train_runs_to_curves.py", *folders, "--out", str(out)], check=True)
    made = json.loads(out.read_text())
    assert made["bench"] == "convergence"
    for bench_row, run_row in zip(rows, made["rows"], strict=True):
        shared = set(run_row) - {"variant", "run_folder"}
        assert {k: run_row[k] for k in shared} == {k: bench_row[k] for k in shared}
    assert "| tiny-bert | sst2 | lora | zo-sgd | zo-sgd |" in out.with_suffix(".md").read_text()
    thinned = tmp_path / "thinned"
    thinned.mkdir()
    kept = Path(rows[0]["run_folder"])
    (thinned / "summary.json").write_text((kept / "summary.json").read_text())
    (thinned / "metrics.jsonl").write_text("".join((kept / "metrics.jsonl").read_text().splitlines(True)[1::2]))
    failed = subprocess.run(
        [sys.executable, "tools/train_runs_to_curves.py", f"{thinned}=x", "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert failed.returncode == 1 and "lacks steps" in failed.stderr


@pytest.mark.slow
def test_bench_convergence_measures_each_methods_peak_beside_inferences(tmp_path):
    out = tmp_path / "convergence.json"
    main(
        [
            "bench",
            "convergence",
            "--quick",
            "true",
            "--tasks",
            "copa",
            "--adapters",
            "lora,prefix",
            "--methods",
            "zo-sgd,fo-sgd",
            "--threads",
            "1",
            "--progress",
            "false",
            "--out",
            str(out),
        ]
    )
    rows = json.loads(out.read_text())["rows"]
    assert [(r["adapter"], r["method"]) for r in rows] == [
        ("lora", "zo-sgd"),
        ("lora", "fo-sgd"),
        ("prefix", "zo-sgd"),
        ("prefix", "fo-sgd"),
    ]
    for adapter in ("lora", "prefix"):
        zo, fo = (r for r in rows if r["adapter"] == adapter)
        assert zo["inference_peak_bytes"] == fo["inference_peak_bytes"] > 0
        assert zo["ratio_to_inference"] == pytest.approx(zo["peak_bytes"] / zo["inference_peak_bytes"])
        # Backprop keeps a graph and gradients that two forward passes never hold.
        assert fo["peak_bytes"] > zo["peak_bytes"]


def test_bench_convergence_refuses_a_malformed_learning_rate(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "convergence", "--quick", "true", "--lrs", "zo-sgd:1e-3", "--progress", "false"])
    assert exit_info.value.code == 2
    assert "unknown method 'zo-sgd:1e-3'" in capsys.readouterr().err


def test_bench_comm_measures_each_planners_uploads_beside_the_payload_its_shapes_predict(bench_dir):
    rows = json.loads((bench_dir / "comm.json").read_text())["rows"]
    measured = {r["planner"]: r for r in rows if r["source"] == "measured"}
    computed = {(r["model"], r["planner"]): r for r in rows if r["source"] == "computed"}
    assert set(measured) == {"spry", "fedavg-full", "zo-seed"}
    assert {m for m, _ in computed} == {"tiny-bert", "minilm"}
    adapter = computed["tiny-bert", "fedavg-full"]["adapter_bytes"]
    for planner, row in measured.items():
        # Headers on top of the payload, never less than it; everyone downloads the merged adapter.
        assert 1 <= row["over_payload"] < (1.2 if planner != "zo-seed" else 20), planner
        assert adapter <= row["down_bytes_per_device"] < 1.2 * adapter
    # FedKSeed's claim: a few bytes per step instead of the adapter; Spry's: a slice instead of all of it.
    assert measured["zo-seed"]["up_bytes_per_device"] < 1000 < adapter / 10
    assert measured["spry"]["up_bytes_per_device"] < 0.5 * measured["fedavg-full"]["up_bytes_per_device"]
    assert computed["minilm", "zo-seed"]["up_bytes_per_device"] == 4 * 4  # 4 steps x 1 query x 4 bytes
    assert computed["minilm", "fedavg-full"]["adapter_bytes"] > adapter


def test_bench_federated_compares_the_runs_on_one_fleet(bench_dir):
    rows = {r["run"]: r for r in json.loads((bench_dir / "federated.json").read_text())["rows"]}
    assert set(rows) == {"spry", "fedmezo-seeds", "fedavg-backprop"}
    for row in rows.values():
        assert len(row["accuracy"]) == len(row["round_wall_s"]) == row["rounds"] == 2
        assert row["initial_accuracy"] >= 0.3  # so the low target is reached after the first round
        assert row["rounds_to_target"] == {"0.3": 1, "0.99": None}
        assert row["peak_accounted_bytes"] > 0 and row["bytes_down_per_round"] > 0
    # Seeds and scalars are bytes; Spry sends its slices, FedAvg the whole adapter.
    uploads = {name: row["bytes_up_per_update"] for name, row in rows.items()}
    assert uploads["fedmezo-seeds"] < 200 < uploads["spry"] < uploads["fedavg-backprop"]
    table = (bench_dir / "federated.md").read_text()
    assert "| 1 (" in table and "not in 2" in table


def test_bench_report_renders_every_bench_file_with_its_plots(bench_dir):
    pytest.importorskip("matplotlib")
    (bench_dir / "notes.json").write_text('{"not": "a bench"}')
    main(["bench", "report", str(bench_dir)])
    text = (bench_dir / "README.md").read_text()
    for kind in ("comm", "convergence", "federated"):
        assert f"### [{kind}.json]({kind}.json) (bench {kind})" in text
    # A JSON file no bench wrote is linked, not rendered.
    assert "### [notes.json](notes.json)\n" in text
    images = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    # No memory plot: the quick convergence run measured none.
    expected = {
        "plots/comm-bytes.png",
        "plots/convergence-curves.png",
        "plots/convergence-step-time.png",
        "plots/federated-accuracy.png",
        "plots/federated-bytes.png",
    }
    assert set(images) == expected
    for image in images:
        assert (bench_dir / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


NOTES = """---
title: Communication
measures: Bytes a device uploads per round.
machine: the test's machine
date: 2026-12-07
commands: |
  edgetune bench comm --quick true --out comm.json
---
Seeds and scalars cost {figure} bytes.
"""


def test_bench_report_writes_each_benchmarks_page_from_its_notes_and_an_index_linking_them(bench_dir, tmp_path):
    for name in ("comm", "federated"):
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}.json").write_bytes((bench_dir / f"{name}.json").read_bytes())
        (tmp_path / name / "notes.md").write_text(NOTES.format(figure=name))
    main(["bench", "report", str(tmp_path), "--plots", "false"])
    page = (tmp_path / "comm" / "README.md").read_text()
    head, results = page.split("## Results")
    assert head.startswith("# Communication\n") and "Bytes a device uploads per round." in head
    assert "| machine | the test's machine |" in head and "| date | 2026-12-07 |" in head
    assert "```bash\nedgetune bench comm --quick true --out comm.json\n```" in head
    assert head.rstrip().endswith("Seeds and scalars cost comm bytes.")
    # The table is the bench's own; no plot was drawn, so none is linked.
    assert "### [comm.json](comm.json) (bench comm)" in results and "| up vs FedAvg |" in results
    assert "![" not in results
    index = (tmp_path / "README.md").read_text()
    assert (
        "| [Communication](comm/README.md) | Bytes a device uploads per round. | the test's machine | 2026-12-07 |"
        in index
    )
    assert "(federated/README.md)" in index


@pytest.mark.parametrize(
    ("front_matter", "error"),
    [
        ("title: A page\n", "notes.md front matter lacks measures, machine, date, commands"),
        ("title: A page\nwhen: today\n", "unknown config field 'when'"),
    ],
)
def test_bench_report_refuses_notes_without_their_head(tmp_path, capsys, front_matter, error):
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "notes.md").write_text(f"---\n{front_matter}---\nConclusions.\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "report", str(tmp_path), "--plots", "false"])
    assert exit_info.value.code == 2
    assert error in capsys.readouterr().err


def test_bench_report_of_a_folder_without_results_says_so(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "report", "--folder", str(tmp_path)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == f"edgetune: error: no bench JSON files in {tmp_path}"
