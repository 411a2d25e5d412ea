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
