"""The settings of `edgetune bench fleet` (fleet.py runs them)."""

from __future__ import annotations

from dataclasses import dataclass

from edge_runtime.bench.options import Models, Quick, Repeats
from edge_runtime.config import defaults, require_at_least_one, setting
from edge_runtime.errors import UserError
from edge_runtime.options import Batches, Device, Method, Results, Threads


@dataclass
@defaults(models=("tiny-llama", "minilm"), batch_size=8, max_length=64, repeats=1, out="bench-fleet.json")
class FleetBenchConfig(Results, Threads, Device, Quick, Repeats, Method, Batches, Models):
    sizes: tuple[int, ...] = setting("fleet sizes", (10, 100, 1000))
    total_steps: int = setting("device-steps per row (a fleet of N runs total_steps / N each)", 1000)
    # A list to sweep, where `edgetune fleet` runs one value (0 = auto).
    batch_devices: tuple[int, ...] = setting(
        "devices per batched forward pass to run every fleet with (1 = each "
        "device alone; others are reported against it)",
        (1,),
    )

    def validate(self) -> None:
        if self.quick:
            self.models, self.sizes, self.total_steps = ("tiny-llama",), (2, 10), 40
        require_at_least_one(self, "repeats")
        if not self.batch_devices or any(b < 1 for b in self.batch_devices):
            raise UserError(f"batch_devices must be 1 or more devices per pass, got {self.batch_devices}")
        if any(s < 1 or self.total_steps % s for s in self.sizes):
            raise UserError(f"every fleet size must divide total_steps={self.total_steps}: {self.sizes}")
