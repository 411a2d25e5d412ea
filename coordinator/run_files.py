"""The files a run leaves beside its ledger for people and tools: metrics.jsonl (one line per
closed round), device_metrics.jsonl (what devices report), and the exported peft adapter. The
ledger is the truth; these follow it, and recovery rebuilds what a crash left behind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Protocol

import numpy as np

from coordinator.ledger import Ledger
from coordinator.state_store import GlobalState, write_atomically


class ExportingHost(Protocol):
    def load_state(self, state: dict[str, np.ndarray]) -> None: ...
    def set_constants(self, constants: dict) -> None: ...
    def export(self, folder: str) -> None: ...


class RunFiles:
    def __init__(self, folder: Path) -> None:
        self.metrics = folder / "metrics.jsonl"
        self.device_metrics = folder / "device_metrics.jsonl"
        self.adapter = folder / "adapter"

    def append_round(self, metrics: dict) -> None:
        with open(self.metrics, "a") as out:
            out.write(json.dumps(metrics) + "\n")

    def append_device(self, record: dict) -> None:
        with open(self.device_metrics, "a") as out:
            out.write(json.dumps(record) + "\n")

    def rewrite_rounds(self, ledger: Ledger) -> None:
        """metrics.jsonl again from the ledger, which a crash may have left a line ahead of the file.
        Round -1 (the initial adapter) lives in the ledger only."""
        records = [m for m in ledger.metrics() if m["round"] >= 0]
        write_atomically(self.metrics, "".join(json.dumps(m) + "\n" for m in records).encode())

    def export(self, host: ExportingHost, state: GlobalState) -> None:
        """Written beside its final name and renamed, so an `adapter/` folder is always a whole one."""
        staging = self.adapter.with_name(self.adapter.name + ".writing")
        shutil.rmtree(staging, ignore_errors=True)
        host.load_state(state.params)
        host.set_constants(state.head_constants)
        host.export(str(staging))
        shutil.rmtree(self.adapter, ignore_errors=True)
        staging.rename(self.adapter)
