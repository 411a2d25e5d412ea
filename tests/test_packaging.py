"""What users install, tested as they install it: a wheel built from the tracked files alone, put
in a fresh virtual environment with only the device extra (ONNX Runtime, no PyTorch), runs a real
round for a coordinator over loopback gRPC; the commands that need PyTorch say so in one line."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from coordinator.server import CoordinatorServer
from tests.federation import SMALL_DATA, Federation, small_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def device_venv(tmp_path_factory) -> Path:
    """A fresh venv holding the wheel of the tracked files with the `device` extra; its python."""
    work = tmp_path_factory.mktemp("packaging")
    source = work / "source"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        target = source / name
        if (ROOT / name).is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target)
    wheels = work / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(source), "-w", str(wheels)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("edgetune-*.whl")
    environment = work / "venv"
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", f"{wheel}[device]"], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return python


def _edgetune(python: Path, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(python), "-m", "edge_runtime.cli", *argv], capture_output=True, text=True, timeout=timeout
    )


def test_the_device_wheel_holds_the_protocol_and_no_pytorch(device_venv):
    check = subprocess.run(
        [
            str(device_venv),
            "-c",
            "import importlib.util as u; "
            "import edge_runtime.protocol.stubs.coordinator_pb2; "
            "print([m for m in ('torch', 'transformers', 'peft') if u.find_spec(m)])",
        ],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "[]"
    assert _edgetune(device_venv, "agent", "--backend", "onnxruntime", "--help").returncode == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["list"],
        ["train", "--steps", "1"],
        ["fleet", "--rounds", "1"],
        ["coordinator", "--rounds", "1"],
        ["export-graph", "tiny-bert", "--out", "x"],
    ],
)
def test_commands_that_need_pytorch_say_so_in_one_line(device_venv, argv):
    done = _edgetune(device_venv, *argv)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().count("\n") == 0 and "pip install 'edgetune[torch]'" in done.stderr


def test_a_device_installed_from_the_wheel_trains_a_round(device_venv, tmp_path, exported_graph):
    graph = exported_graph("tiny-bert")
    config = small_config(
        tmp_path, listen="127.0.0.1:0", rounds=1, local_steps=3, method="zo-sgd", heartbeat_s=0.5, min_devices=1
    )
    federation = Federation(config, devices=0)
    server = CoordinatorServer(config, federation.keeper, service=federation.service).start()
    try:
        done = _edgetune(
            device_venv,
            "agent",
            "--backend",
            "onnxruntime",
            "--graph",
            str(graph),
            "--coordinator",
            f"127.0.0.1:{server.port}",
            "--data-dir",
            SMALL_DATA,
            "--state-dir",
            str(tmp_path / "agent"),
            "--threads",
            "1",
            timeout=240,
        )
        metrics = federation.keeper.ledger.metrics()
    finally:
        server.stop()
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert [m["updates"] for m in metrics if m.get("round", -1) >= 0] == [1]
