"""Real processes for the end-to-end tests: `edgetune` subcommands with their output in a log
file, the coordinator's ledger read from outside (read-only), and waiting with the logs shown on
a timeout."""

import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def edgetune(*args, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "edge_runtime", *args], stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env
    )


def loopback_agents(port: int, count: int, folder: Path, data_dir: str) -> list[subprocess.Popen]:
    """`count` agents on the laptop profile against a coordinator on 127.0.0.1:`port`, agent i keeping
    its identity in folder/agent{i} and its output in folder/agent{i}.log."""
    return [
        edgetune(
            "agent",
            "--coordinator",
            f"127.0.0.1:{port}",
            "--profile",
            "macbook-air-m2-16gb",
            "--data-dir",
            data_dir,
            "--state-dir",
            str(folder / f"agent{i}"),
            "--threads",
            "1",
            log=folder / f"agent{i}.log",
        )
        for i in range(count)
    ]


def ledger_rows(state: Path, sql: str) -> list[tuple]:
    try:
        db = sqlite3.connect(f"file:{state / 'ledger.sqlite'}?mode=ro", uri=True, timeout=10)
        try:
            return db.execute(sql).fetchall()
        finally:
            db.close()
    except sqlite3.OperationalError:  # not created yet
        return []


def wait_for(condition, timeout: float, what: str, logs: Path):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.1)
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(logs.glob("*.log")))
    raise AssertionError(f"timed out waiting for {what}\n{tails}")
