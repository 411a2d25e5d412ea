"""The CLI's contract for mistakes, run against the real command in subprocesses: a user's or an
operator's mistake ends with exit code 2 and one line on stderr (`edgetune: error: ...`), never a
traceback; a mistake in the arguments alone is refused within 2 s, before PyTorch loads."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

SMALL_DATA = str(Path(__file__).parent / "data" / "sst2-small")


def _edgetune(*argv: str, cwd: Path, timeout: float = 120) -> tuple[subprocess.CompletedProcess, float]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "edge_runtime.cli", *argv], capture_output=True, text=True, timeout=timeout, cwd=cwd
    )
    return done, time.perf_counter() - started


def _files(tmp: Path) -> dict[str, str]:
    """Things a mistake may point at, made fresh for each case."""
    (tmp / "a-file").write_text("not a folder")
    (tmp / "bad.toml").write_text("steps = [unclosed")
    (tmp / "unknown.toml").write_text("stepz = 3\n")
    (tmp / "list.yaml").write_text("- 1\n- 2\n")
    (tmp / "empty-data" / "sst2").mkdir(parents=True)
    (tmp / "empty-data" / "sst2" / "train.tsv").write_text("")
    return {
        "file": str(tmp / "a-file"),
        "bad_toml": str(tmp / "bad.toml"),
        "unknown_toml": str(tmp / "unknown.toml"),
        "list_yaml": str(tmp / "list.yaml"),
        "empty_data": str(tmp / "empty-data"),
        "nowhere": str(tmp / "nowhere"),
    }


# (argv with {placeholders}, what the one line says, whether it is an argument mistake caught before PyTorch)
ARGUMENT_MISTAKES = [
    (["train", "--task", "nosuch"], "unknown task 'nosuch'"),
    (["train", "--steps", "0"], "steps must be positive"),
    (["train", "--lr", "-1"], "lr must be a positive finite number"),
    (["train", "--batch-size", "many"], "cannot use 'many'"),
    (["train", "--k-shot", "-3"], "k_shot must not be negative"),
    (["train", "--memory-cap", "lots"], "cannot read 'lots' as a size"),
    (["train", "--precision", "fp8"], "precision"),
    (["train", "--config", "{nowhere}.toml"], "config file not found"),
    (["train", "--config", "{bad_toml}"], "cannot parse"),
    (["train", "--config", "{unknown_toml}"], "unknown config field 'stepz'"),
    (["train", "--config", "{list_yaml}"], "must hold a table of settings"),
    (["train", "--out-dir", "{file}"], "is a file, not a folder"),
    (["train", "--resume", "maybe"], "expected true or false"),
    (["coordinator", "--listen", "nonsense"], "is not host:port"),
    (["coordinator", "--listen", "256.1.1.1:50051"], "not an IPv4 address"),
    (["coordinator", "--listen", "127.0.0.1:99999"], "port from 1 to 65535"),
    (["coordinator", "--listen", ":abc"], "is not host:port"),
    (["coordinator", "--listen", "0.0.0.0:50051"], "needs a join_secret"),
    (["coordinator", "--rounds", "0"], "rounds must be at least 1"),
    (["coordinator", "--quorum", "2"], "quorum must be in (0, 1]"),
    (["coordinator", "--state-dir", "{file}"], "is a file, not a folder"),
    (["fleet", "--devices", "0"], "devices must be at least 1"),
    (["fleet", "--profiles", "no-such-phone"], "unknown device profile 'no-such-phone'"),
    (["fleet", "--out-dir", "{file}"], "is a file, not a folder"),
    (["fleet", "--backend", "ray", "--transport", "inprocess"], "reaches the coordinator over gRPC"),
    (["agent", "--backend", "onnxruntime"], "--graph"),
    (["bench", "warm-start", "--labelled-examples", "2"], "labelled_examples must be at least 4"),
]

# Mistakes only the loaded model, the data or the memory plan can reveal (seconds: PyTorch loads).
LATE_MISTAKES = [
    (["train", "--model", "no-such-model"], "unknown model 'no-such-model'"),
    (["train", "--method", "no-such-method", "--model", "tiny-bert"], "no-such-method"),
    (["train", "--model", "tiny-bert", "--data-dir", "{nowhere}"], "data file not found"),
    (
        ["train", "--model", "tiny-llama", "--prompt", "Review: {{text}}", "--label-words", "bad,good"],
        "unknown fields text",
    ),
    (
        ["train", "--model", "tiny-llama", "--prompt", "{{sentence}} It was", "--label-words", "bad,good,ugly"],
        "needs 2 label words",
    ),
    (["train", "--model", "tiny-bert", "--memory-cap", "1MB"], "cap"),
    (
        ["train", "--model", "tiny-llama", "--adapter", "prefix", "--method", "fo-adam-ckpt"],
        "prefix tuning's key/value prefixes",
    ),
    (["train", "--model", "tiny-bert", "--resume", "--out-dir", "{nowhere}"], "no checkpoint to resume"),
    (["train", "--model", "tiny-bert", "--task", "rte", "--warm-start", "zero-shot"], "describing each class"),
    (["export-graph", "tiny-llama", "--out", "{nowhere}", "--task", "copa"], "classification"),
    (["bench", "convergence", "--lrs", "zo-sgd:1e-3"], "unknown method 'zo-sgd:1e-3'"),
]


def _check_one_line(done: subprocess.CompletedProcess, expected: str) -> None:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("edgetune: error: "), done.stderr[-2000:]
    assert expected in lines[0], lines[0]
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("argv", "expected"), ARGUMENT_MISTAKES, ids=[" ".join(a[:3]) for a, _ in ARGUMENT_MISTAKES])
def test_an_argument_mistake_is_one_line_within_two_seconds(tmp_path, argv, expected):
    files = _files(tmp_path)
    done, seconds = _edgetune(*[part.format(**files) for part in argv], cwd=tmp_path)
    _check_one_line(done, expected)
    assert seconds < 2.0, f"{seconds:.1f} s: PyTorch was loaded before the arguments were checked"


@pytest.mark.parametrize(("argv", "expected"), LATE_MISTAKES, ids=[" ".join(a[:4]) for a, _ in LATE_MISTAKES])
def test_a_mistake_found_by_the_model_or_data_is_one_line_too(tmp_path, argv, expected):
    files = _files(tmp_path)
    done, _ = _edgetune(*[part.format(**files) for part in argv], cwd=tmp_path)
    _check_one_line(done, expected)
