"""The fleet emulator: a heterogeneous fleet against a real coordinator, caps honoured, the same
run whichever transport carries it."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from edge_runtime.config import build_config
from edge_runtime.devices.profiles import builtin_profiles_dir
from edge_runtime.errors import UserError
from edge_runtime.fleet.config import FleetConfig
from edge_runtime.fleet.emulator import run_fleet
from edge_runtime.fleet.report import write_report
from tests.federation import SMALL_DATA


def fleet_config(tmp_path, **overrides) -> FleetConfig:
    """Training rounds from the initial adapter; the warm start's own round has its tests."""
    base = dict(
        model="tiny-bert",
        warm_start="none",
        calibration="none",
        train_head=True,
        devices=4,
        profiles=("jetson-agx-orin-64gb", "jetson-orin-nano-8gb"),
        rounds=2,
        local_steps=4,
        batch_size=8,
        lr=1e-2,
        data_dir=SMALL_DATA,
        dirichlet_alpha=None,
        eval_examples=16,
        train_probe_examples=32,
        transport="inprocess",
        threads=1,
        out_dir=str(tmp_path / "fleet"),
        progress=False,
        start_hour=12.0,
    )
    return build_config(FleetConfig, {**base, **overrides})


def _profile_with_cap(tmp_path: Path, share: float) -> str:
    """The Jetson AGX profile with its app share of memory cut to `share`."""
    data = yaml.safe_load((builtin_profiles_dir() / "jetson-agx-orin-64gb.yaml").read_text())
    data["memory"]["app_share"] = {"value": share, "estimate": "a test device with almost no memory to spare"}
    path = tmp_path / "tight.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_a_fleet_runs_rounds_and_reports_what_it_did(tmp_path):
    config = fleet_config(tmp_path)
    result = run_fleet(config)
    assert [r["round"] for r in result.rounds] == [0, 1]
    assert all(r["updates"] == 4 and r["outcomes"]["trained"] == 4 for r in result.rounds)
    assert all(r["virtual_s"] > 0 and r["wall_s"] > 0 for r in result.rounds)
    assert {d["profile"] for d in result.devices} == {"jetson-agx-orin-64gb", "jetson-orin-nano-8gb"}
    assert all(0 < d["accounted_peak"] <= d["memory_cap"] for d in result.devices)
    paths = write_report(result, config, config.out_dir)
    saved = json.loads(paths["json"].read_text())
    assert len(saved["rounds"]) == 2 and len(saved["devices"]) == 4
    assert "| jetson-agx-orin-64gb | 2 |" in paths["markdown"].read_text()
    assert paths["plot"].stat().st_size > 1000


def test_the_main_jobs_fleet_starts_from_a_federated_warm_start_and_reports_it(tmp_path):
    config = fleet_config(tmp_path, warm_start="ridge", train_head=False, rounds=3, eval_examples=32)
    result = run_fleet(config)
    warm, *training = result.rounds
    assert warm["work"] == "statistics" and warm["warm_start"] == "ridge" and warm["updates"] == 4
    assert all(r["slices_total"] == 4 for r in training)  # the head's slice is not trained
    text = write_report(result, config, config.out_dir)["markdown"].read_text()
    assert "| 0 | 4 | 4 | 0/0 | 0/0 | warm start: ridge |" in text
    assert "Accuracy on 32 dev examples (one standard error" in text and "after the warm start (round 0" in text


def test_a_device_too_small_for_the_model_sits_out_and_one_just_big_enough_gets_a_smaller_share(tmp_path):
    from coordinator.capacity import _memory
    from coordinator.planners import PLANNERS

    # 5 slices over 3 devices: the roomy ones may take 2 each; the tight one has room for one.
    config = fleet_config(tmp_path, devices=3, rounds=1)
    fixed, per_element, _ = _memory(_round_shape(config))
    tight_cap = fixed + per_element * 600  # one LoRA slice of tiny-bert holds 512 elements
    share = tight_cap / 64e9 + 1e-9
    tight = _profile_with_cap(tmp_path, share)
    result = run_fleet(replace(fleet_config(tmp_path, devices=3, rounds=1, profiles=(tight, "jetson-agx-orin-64gb"))))
    plan = json.loads(_ledger_plans(tmp_path)[0])
    tight_device = result.devices[0]["device_id"]
    assert len(plan["slices"][tight_device]) == 1
    assert all(d["accounted_peak"] <= d["memory_cap"] for d in result.devices)
    none = _profile_with_cap(tmp_path, fixed / 2 / 64e9)
    result = run_fleet(fleet_config(tmp_path / "none", devices=3, rounds=1, profiles=(none, "jetson-agx-orin-64gb")))
    plan = json.loads(_ledger_plans(tmp_path / "none")[0])
    assert result.devices[0]["device_id"] in plan["excluded"] and result.devices[0]["outcomes"] == {}
    assert PLANNERS  # the planner registry the coordinator used


def _round_shape(config):
    from coordinator.capacity import RoundShape
    from edge_runtime.spec import MethodSpec

    return RoundShape(
        config.adapter_spec(),
        MethodSpec("forward-grad", config.estimator),
        config.batch_size,
        config.local_steps,
        config.round_deadline_s,
    )


def _ledger_plans(tmp_path):
    import sqlite3

    db = sqlite3.connect(tmp_path / "fleet" / "coordinator" / "ledger.sqlite")
    try:
        return [plan for (plan,) in db.execute("SELECT plan FROM rounds ORDER BY round")]
    finally:
        db.close()


def test_grpc_and_in_process_transports_give_the_same_run(tmp_path):
    runs = [run_fleet(fleet_config(tmp_path / t, transport=t, rounds=1)) for t in ("inprocess", "grpc")]
    assert [d["device_id"] for d in runs[0].devices] == [d["device_id"] for d in runs[1].devices]
    for a, b in zip(runs[0].rounds, runs[1].rounds):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
        assert a["updates"] == b["updates"] and a["bytes_up"] == b["bytes_up"]


def test_fleet_settings_are_checked(tmp_path):
    with pytest.raises(UserError, match="gRPC"):
        fleet_config(tmp_path, backend="ray", transport="inprocess")
    with pytest.raises(UserError, match="profile"):
        run_fleet(fleet_config(tmp_path, profiles=("no-such-phone",)))


def test_ray_actors_give_the_same_run_as_one_process(tmp_path):
    ray = pytest.importorskip("ray")
    local = run_fleet(fleet_config(tmp_path / "local", transport="grpc"))
    try:
        spread = run_fleet(
            fleet_config(tmp_path / "ray", transport="grpc", backend="ray", ray_actors=2, ray_actor_cpus=0.5)
        )
    finally:
        ray.shutdown()
    assert [d["device_id"] for d in spread.devices] == [d["device_id"] for d in local.devices]
    for a, b in zip(local.rounds, spread.rounds):
        assert a["updates"] == b["updates"] == 4
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["eval_accuracy"] == b["eval_accuracy"]


def test_a_cuda_fleet_on_a_machine_without_cuda_is_refused_in_one_line(tmp_path, capsys):
    import torch

    from edge_runtime.cli import main

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "fleet",
                "--device",
                "cuda",
                "--devices",
                "2",
                "--rounds",
                "1",
                "--out-dir",
                str(tmp_path),
                "--progress",
                "false",
            ]
        )
    assert exit_info.value.code == 2
    assert "sees no CUDA device" in capsys.readouterr().err
