"""A device agent on ONNX Runtime trains real rounds for a coordinator over loopback gRPC, in a
process where importing torch (or transformers, peft) is impossible."""

import json
import subprocess
import sys
import textwrap

import pytest

from coordinator.server import CoordinatorServer
from edge_runtime.cli import main
from tests.federation import SMALL_DATA, Federation, small_config

FORBIDDEN = ("torch", "transformers", "peft", "onnx")

# Runs in the agent's process: the forbidden packages look uninstalled, and whatever got imported
# is reported after the agent returns.
AGENT = textwrap.dedent("""
    import json, sys
    FORBIDDEN = {forbidden!r}
    for name in FORBIDDEN:
        sys.modules[name] = None  # as if not installed: importing it fails
    from edge_runtime.cli import main
    main({argv!r})
    loaded = [m for m, module in sys.modules.items() if module is not None and m.split(".")[0] in FORBIDDEN]
    print("MODULES " + json.dumps(sorted(loaded + ["onnxruntime"] * ("onnxruntime" in sys.modules))))
""")


def test_onnxruntime_agent_trains_rounds_without_importing_torch(tmp_path, exported_graph):
    graph = exported_graph("tiny-bert")
    config = small_config(
        tmp_path, listen="127.0.0.1:0", rounds=2, local_steps=4, method="zo-sgd", heartbeat_s=0.5, min_devices=1
    )
    federation = Federation(config, devices=0)
    server = CoordinatorServer(config, federation.keeper, service=federation.service).start()
    argv = [
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
    ]
    try:
        done = subprocess.run(
            [sys.executable, "-c", AGENT.format(forbidden=FORBIDDEN, argv=argv)],
            capture_output=True,
            text=True,
            timeout=240,
        )
        metrics = federation.keeper.ledger.metrics()
    finally:
        server.stop()
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    modules = json.loads(done.stdout.split("MODULES ", 1)[1])
    assert "onnxruntime" in modules and not [m for m in modules if m.split(".")[0] in FORBIDDEN]
    assert "all rounds done; this device trained 2" in done.stdout
    trained = [m for m in metrics if m.get("round", -1) >= 0]
    assert [m["updates"] for m in trained] == [1, 1]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["agent", "--backend", "onnxruntime"], "--graph"),
        (["agent", "--backend", "onnxruntime", "--graph", "/nonexistent"], "no exported graph"),
    ],
)
def test_onnxruntime_agent_mistakes_end_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as refused:
        main(argv)
    err = capsys.readouterr().err
    assert refused.value.code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_edgetune_help_imports_no_torch():
    code = (
        "import sys; from edge_runtime.cli import parser; parser(); print(sorted(m for m in {0!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code.format(FORBIDDEN + ("onnxruntime",))], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"
