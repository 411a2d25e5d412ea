"""`edgetune train` end to end on tiny models: every method learns, adapters reload in plain peft,
runs resume exactly, and user mistakes end in one line."""

import json
import re

import pytest
import torch

from edge_runtime.cli import main
from edge_runtime.config import build_config
from edge_runtime.costs import time_to_target
from edge_runtime.estimators import get_method
from edge_runtime.training.config import TrainConfig
from edge_runtime.training.schedule import learning_rate
from edge_runtime.training.trainer import base_lr, build_run, fit, train, warm_start


def tiny_config(tmp_path, **overrides) -> TrainConfig:
    base = dict(
        model="tiny-bert",
        task="sst2",
        k_shot=8,
        eval_examples=32,
        batch_size=8,
        steps=60,
        progress=False,
        out_dir=str(tmp_path / "run"),
    )
    return build_config(TrainConfig, base, overrides)


# Learning rates for a random 2-layer model from its warm-started head (whose logit scale steepens the
# loss); ZO needs far more steps than FO for the same drop.
METHOD_RUNS = {
    "zo-sgd": dict(steps=300, lr=1e-4),
    "zo-sgd-sign": dict(steps=300, lr=2e-3),
    "zo-sgd-mmt": dict(steps=300, lr=5e-5),
    "zo-sgd-cons": dict(steps=200, lr=1e-4),
    "zo-adam": dict(steps=300, lr=3e-3),
    "forward-grad": dict(steps=300, lr=1e-4),
    "fo-sgd": dict(steps=60, lr=5e-3),
    "fo-adam": dict(steps=60, lr=1e-3),
    "fo-sgd-ckpt": dict(steps=60, lr=5e-3),
    "fo-adam-ckpt": dict(steps=60, lr=1e-3),
}


def test_schedules_warm_up_then_decay_as_named():
    def rates(schedule, warmup=0):
        return [learning_rate(1.0, step, 100, schedule, warmup) for step in range(100)]

    assert rates("constant", warmup=10)[:11] == pytest.approx([0.1 * i for i in range(1, 11)] + [1.0])
    linear, cosine, wsd = rates("linear"), rates("cosine"), rates("wsd")
    assert linear[0] == cosine[0] == 1.0 and linear[50] == pytest.approx(0.5) == cosine[50]
    assert cosine[25] == pytest.approx(0.5 + 0.5**1.5)  # 0.5 * (1 + cos(pi / 4))
    # wsd holds the rate for four fifths of the run, then cools down linearly, never to zero.
    assert wsd[:80] == [1.0] * 80
    assert wsd[80:] == pytest.approx([(100 - s) / 20 for s in range(80, 100)]) and wsd[-1] > 0
    assert all(a > b for a, b in zip(wsd[80:], wsd[81:]))


@pytest.mark.parametrize("method", METHOD_RUNS)
def test_every_method_lowers_the_training_loss(tmp_path, method):
    summary = train(tiny_config(tmp_path, method=method, **METHOD_RUNS[method]))
    assert summary["stopped"] == "completed"
    assert summary["final_train_loss"] < summary["initial_train_loss"] - 0.02, summary
    assert summary["forward_passes"] >= summary["steps"]


def test_summary_json_has_the_promised_fields(tmp_path):
    out = tmp_path / "summary.json"
    train(tiny_config(tmp_path, steps=5, out=str(out)))
    summary = json.loads(out.read_text())
    for field in (
        "method",
        "model",
        "task",
        "steps",
        "initial_train_loss",
        "final_train_loss",
        "eval_accuracy_before",
        "eval_accuracy_after",
        "wall_time_s",
        "peak_memory_bytes",
        "trainable_params",
    ):
        assert field in summary
    assert summary["peak_memory_bytes"] > 10 * 2**20
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4, 5]


def test_saved_causal_lm_adapter_reloads_in_plain_peft_with_identical_logits(tmp_path):
    from peft import PeftModel

    from edge_runtime.models import load_model

    run = build_run(tiny_config(tmp_path, model="tiny-llama", method="fo-adam", steps=10, lr=1e-2))
    fit(run)
    base = load_model("tiny-llama", seed=run.config.seed).model
    reloaded = PeftModel.from_pretrained(base, str(tmp_path / "run" / "adapter")).eval()
    batch = run.objective.head.encode(run.train[:4])
    with torch.no_grad():
        trained_logits = run.peft_model(**batch.inputs).logits
        reloaded_logits = reloaded(**batch.inputs).logits
    assert torch.equal(trained_logits, reloaded_logits)
    with torch.no_grad(), reloaded.disable_adapter():
        untrained_logits = reloaded(**batch.inputs).logits
    assert not torch.allclose(trained_logits, untrained_logits)  # the adapter really changed the model
    saved = json.loads((tmp_path / "run" / "adapter" / "edgetune_head.json").read_text())
    assert saved["constants"] == run.objective.head.constants()
    assert saved["template"]["prompt"] == run.objective.head.template.prompt


def test_saved_encoder_adapter_gives_the_same_scores_by_its_readme_in_plain_transformers(tmp_path):
    """The adapter folder's README code, run as written against a plain base-model folder."""
    import re

    run = build_run(tiny_config(tmp_path, model="tiny-bert", method="fo-adam", steps=10, lr=1e-2))
    fit(run)
    from edge_runtime.models import load_model

    base_folder = tmp_path / "base"  # the frozen base (the same seed draws it), as a user's model folder
    base = load_model("tiny-bert", seed=run.config.seed)
    base.model.encoder.save_pretrained(base_folder)
    base.tokenizer.save_pretrained(base_folder)
    readme = (tmp_path / "run" / "adapter" / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    texts = [example.text for example in run.train[:4]]
    namespace = {
        "BASE_MODEL": str(base_folder),
        "NUM_LABELS": 2,
        "ADAPTER_FOLDER": str(tmp_path / "run" / "adapter"),
        "texts": texts,
        "torch": torch,
    }
    with torch.no_grad():
        exec(code, namespace)
        expected = run.objective.scores(run.objective.head.encode(run.train[:4]))
    torch.testing.assert_close(namespace["logits"], expected, rtol=1e-5, atol=1e-5)
    assert run.objective.head.logit_scale != 1.0  # the warm start's scale is part of what was checked


def test_resumed_run_matches_an_uninterrupted_one(tmp_path):
    straight = tiny_config(tmp_path / "a", method="zo-adam", steps=20, lr=1e-3)
    train(straight)
    first = tiny_config(tmp_path / "b", method="zo-adam", steps=10, lr=1e-3)
    train(first)
    train(tiny_config(tmp_path / "b", method="zo-adam", steps=20, lr=1e-3, resume=True))
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "a" / "run" / "checkpoint" / "trainable.safetensors"))
    b = load_file(str(tmp_path / "b" / "run" / "checkpoint" / "trainable.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def interrupt_at(run, step_index, monkeypatch):
    """Make the run's method raise KeyboardInterrupt (Ctrl-C) when it is asked for step `step_index`."""
    step, calls = run.method.step, []

    def interrupting(objective, batch, lr, seed):
        if len(calls) == step_index:
            raise KeyboardInterrupt
        calls.append(seed)
        return step(objective, batch, lr, seed)

    monkeypatch.setattr(run.method, "step", interrupting)


def test_metrics_replay_the_run_and_a_tail_average_saves_the_mean_of_the_last_iterates(tmp_path):
    from edge_runtime.estimators.base import SeedScalarEstimate

    config = tiny_config(tmp_path, method="zo-sgd", steps=20, lr=1e-3, tail_average=0.25)
    run = build_run(config)
    summary = fit(run)
    assert summary["tail_average"] == {"after_step": 15, "iterates": 5}
    # The metrics alone (lr, seeds, scalars) rebuild every iterate from the adapter's seeded start.
    replay = build_run(config)
    warm_start(replay)  # the head's start, from forward passes
    params, iterates = replay.objective.params, []
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    with torch.no_grad():
        for record in records:
            estimate = SeedScalarEstimate(record["loss"], 2, record["seeds"], record["scalars"])
            replay.method.rule.apply(params, estimate, record["lr"])
            iterates.append({n: p.detach().clone() for n, p in params.items()})
    for name, p in run.objective.params.items():  # after fit: the mean of the iterates after steps 16..20
        mean = torch.stack([it[name] for it in iterates[15:]]).mean(0)
        torch.testing.assert_close(p.detach(), mean, rtol=1e-5, atol=1e-7)
        assert not torch.allclose(mean, iterates[-1][name])
    # The checkpoint keeps the last iterate, from which a resumed run goes on.
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "run" / "checkpoint" / "trainable.safetensors"))
    for name in saved:
        assert torch.equal(saved[name], iterates[-1][name])


def test_a_resumed_run_goes_on_averaging_as_an_uninterrupted_one(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    common = dict(method="zo-sgd", steps=20, lr=1e-3, tail_average=0.75)  # the mean begins after step 5
    train(tiny_config(tmp_path / "a", **common))
    run = build_run(tiny_config(tmp_path / "b", **common))
    interrupt_at(run, 10, monkeypatch)
    assert fit(run)["tail_average"] == {"after_step": 5, "iterates": 5}
    train(tiny_config(tmp_path / "b", resume=True, **common))
    a, b = (load_file(str(tmp_path / x / "run" / "adapter" / "adapter_model.safetensors")) for x in "ab")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_method_auto_trains_with_a_method_that_reached_the_target_and_a_resume_keeps_it(tmp_path):
    first = train(tiny_config(tmp_path, method="auto", steps=3))
    # Without a cap every candidate fits; only backprop and its checkpointed twin gained 5 points
    # in the measured runs, so one of them wins whichever step this machine timed faster.
    assert first["method"] in ("fo-adam", "fo-adam-ckpt")
    for method in ("fo-adam", "fo-adam-ckpt", "forward-grad", "zo-sgd"):
        assert re.search(rf"{method}: [0-9.]+ s/step", first["method_choice"]), first["method_choice"]
    resumed = train(tiny_config(tmp_path, method="auto", steps=5, resume=True))
    assert resumed["method"] == first["method"] and resumed["method_choice"] is None
    # The prediction holds at the rate the steps were measured at, not the method's default, and a
    # resume keeps that rate.
    measured = time_to_target.learning_rate(first["method"], "encoder")
    assert measured != get_method(first["method"]).default_lr
    assert first["lr"] == resumed["lr"] == measured
    assert first["method_choice"].endswith(f"trains at lr {measured:g}")


def test_an_asked_for_learning_rate_beats_the_measured_one_and_a_named_method_keeps_its_default(tmp_path):
    asked, unasked = tiny_config(tmp_path, lr=0.5), tiny_config(tmp_path)
    assert base_lr(asked, "fo-adam", "encoder", picked_by_auto=True) == 0.5
    assert base_lr(unasked, "fo-adam", "encoder", picked_by_auto=True) == 2e-4
    assert base_lr(unasked, "fo-adam", "encoder", picked_by_auto=False) == get_method("fo-adam").default_lr
    assert base_lr(unasked, "zo-sgd-sign", "encoder", picked_by_auto=True) == 1e-4  # never measured: its default


def test_method_auto_prefers_a_method_that_reaches_the_target_however_slow_its_step():
    from edge_runtime.training.method_choice import Candidate, choose

    candidates = [
        Candidate("fo-adam", refused="does not fit the 1GB cap"),
        Candidate("fo-adam-ckpt", needs=900 * 10**6, micro_batch=4, step_seconds=3.0),
        Candidate("forward-grad", needs=800 * 10**6, micro_batch=16, step_seconds=1.0),
        Candidate("zo-sgd", needs=700 * 10**6, micro_batch=16, step_seconds=0.5),
    ]
    chosen, why = choose(candidates, "causal_lm")
    assert chosen.method == "fo-adam-ckpt"
    assert why.startswith("fo-adam-ckpt: fits 900 MB at micro-batch 4, 3.00 s/step, about 200 steps")
    assert "fo-adam: does not fit the 1GB cap" in why and "zo-sgd: fits 700 MB" in why
    chosen, _ = choose(candidates[2:], "causal_lm")
    assert chosen.method == "zo-sgd"  # neither reached it: the cheaper step


def test_diverging_lr_stops_and_keeps_the_last_good_adapter(tmp_path):
    summary = train(tiny_config(tmp_path, method="fo-sgd", lr=1e12, steps=50))
    assert summary["stopped"].startswith("non-finite loss at step")
    assert summary["final_train_loss"] == summary["final_train_loss"]  # not NaN
    from safetensors.torch import load_file

    for tensor in load_file(str(tmp_path / "run" / "checkpoint" / "trainable.safetensors")).values():
        assert torch.isfinite(tensor).all()


def test_interrupted_run_saves_a_resumable_checkpoint(tmp_path, monkeypatch):
    run = build_run(tiny_config(tmp_path, method="zo-sgd", steps=10))
    interrupt_at(run, 4, monkeypatch)
    summary = fit(run)
    assert summary["stopped"].startswith("interrupted at step 4")
    progress = json.loads((tmp_path / "run" / "checkpoint" / "progress.json").read_text())
    assert progress["step"] == 4


def run_cli(capsys, *argv) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "gpt-17"], "unknown model"),
        (["--task", "imagenet"], "unknown task"),
        (["--method", "zo-magic"], "unknown method"),
        (["--steps", "-3"], "steps must be positive"),
        (["--tail-average", "1"], "tail_average is a fraction"),
        (["--lr", "abc"], "config field 'lr'"),
        (["--lora-targets", "no_such_module"], "no_such_module"),
        (["--config", "missing.toml"], "config file not found"),
    ],
)
def test_cli_user_mistakes_end_in_one_line(tmp_path, capsys, argv, message):
    code, err = run_cli(
        capsys,
        "train",
        "--model",
        "tiny-bert",
        "--steps",
        "1",
        "--progress",
        "false",
        "--out-dir",
        str(tmp_path),
        *argv,
    )
    assert code == 2
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_refuses_a_folder_that_is_not_a_model(tmp_path, capsys):
    code, err = run_cli(capsys, "train", "--model", str(tmp_path), "--out-dir", str(tmp_path / "o"))
    assert code == 2 and "Traceback" not in err


def test_cli_reports_malformed_data_by_line(tmp_path, capsys):
    (tmp_path / "sst2").mkdir()
    (tmp_path / "sst2" / "train.tsv").write_text("sentence\tlabel\ngood movie\t1\nbad row without label\n")
    (tmp_path / "sst2" / "dev.tsv").write_text("sentence\tlabel\nfine\t1\n")
    code, err = run_cli(
        capsys,
        "train",
        "--model",
        "tiny-bert",
        "--data-dir",
        str(tmp_path),
        "--k-shot",
        "0",
        "--out-dir",
        str(tmp_path / "o"),
    )
    assert code == 2 and "line 3" in err


def test_cli_config_file_and_flags(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text(
        'model = "tiny-bert"\nsteps = 3\nbatch-size = 4\nk_shot = 4\neval_examples = 8\n'
        f'progress = false\nout_dir = "{tmp_path / "o"}"\n'
    )
    main(["train", "--config", str(config), "--steps", "2", "--out", str(tmp_path / "s.json")])
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["steps"] == 2 and summary["batch_size"] == 4


def test_list_settings_take_the_declared_element_type_from_flags_and_files():
    from edge_runtime.bench.federated_config import FederatedBenchConfig
    from edge_runtime.bench.fleet_config import FleetBenchConfig
    from edge_runtime.errors import UserError

    assert build_config(FleetBenchConfig, {"sizes": "10, 100", "batch_devices": [1, "8"]}).sizes == (10, 100)
    assert build_config(FederatedBenchConfig, {"targets": "0.6,0.7"}).targets == (0.6, 0.7)
    with pytest.raises(UserError, match="'sizes'"):
        build_config(FleetBenchConfig, {"sizes": "10,many"})


def test_a_list_of_choices_takes_only_its_choices():
    from edge_runtime.bench.memory_config import MemoryBenchConfig
    from edge_runtime.errors import UserError

    assert build_config(MemoryBenchConfig, {"backends": "torch, ort"}).backends == ("torch", "ort")
    with pytest.raises(UserError, match="'backends'.*'gpu'.*one of: torch, ort"):
        build_config(MemoryBenchConfig, {"backends": "torch,gpu"})


def test_a_command_changes_an_inherited_default_and_nothing_else():
    from dataclasses import dataclass, fields

    from coordinator.config import CoordinatorConfig
    from edge_runtime.config import defaults
    from edge_runtime.fleet.config import FleetConfig

    coordinator, fleet = ({f.name: f for f in fields(cls)} for cls in (CoordinatorConfig, FleetConfig))
    assert (coordinator["batch_size"].default, fleet["batch_size"].default) == (16, 8)
    assert fleet["batch_size"].metadata == coordinator["batch_size"].metadata
    assert list(fleet)[: len(coordinator)] == list(coordinator)  # in the place it had
    with pytest.raises(TypeError, match="not a field it only inherits"):

        @dataclass
        @defaults(no_such_field=1)
        class Wrong(CoordinatorConfig):
            pass
