"""The paper-claims bench suite at its quick size (`bench convergence`, `bench comm`, `bench report`):
the JSON has the promised fields and physically sane values, not timings, which belong to full runs.
The quick runs happen once per module and the report test renders their very files."""

import json

import pytest

from edge_runtime.cli import main


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    main(["bench", "convergence", "--quick", "true", "--tasks", "sst2", "--methods", "zo-sgd,fo-sgd",
          "--threads", "1", "--progress", "false", "--out", str(folder / "convergence.json")])
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
        assert curve[0]["eval_accuracy"] == row["accuracy_before"] and curve[-1]["eval_accuracy"] == row["final_accuracy"]
        assert all(0 <= p["eval_accuracy"] <= 1 and p["train_loss"] > 0 for p in curve)
        assert row["peak_bytes"] > 0 and row["inference_peak_bytes"] == rows["zo-sgd"]["inference_peak_bytes"]
        assert row["step_seconds"] > 0 and row["forward_seconds"] > 0
        assert row["ratio_to_forward"] == pytest.approx(row["step_seconds"] / row["forward_seconds"])
    # Backprop keeps a graph and gradients that two forward passes never hold.
    assert rows["fo-sgd"]["peak_bytes"] > rows["zo-sgd"]["peak_bytes"]
    table = (bench_dir / "convergence.md").read_text()
    assert "| tiny-bert | sst2 | lora | zo-sgd | 12 |" in table and "| fo-sgd | 24 |" in table


def test_bench_convergence_refuses_a_malformed_learning_rate(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "convergence", "--quick", "true", "--lrs", "zo-sgd:1e-3", "--progress", "false"])
    assert exit_info.value.code == 2
    assert "unknown method 'zo-sgd:1e-3'" in capsys.readouterr().err


def test_bench_comm_measures_each_planners_uploads_beside_the_payload_its_shapes_predict(bench_dir):
    main(["bench", "comm", "--quick", "true", "--progress", "false", "--out", str(bench_dir / "comm.json")])
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
