"""Stop a run before it crosses its memory cap, with its state intact.

Between steps, each step's measured peak is compared with the cap after adding the growth seen
over the last step: a run whose usage creeps up (a leak, a cache, longer batches) is stopped
while the next step would still fit, not after it failed. On CUDA the allocator's per-process
limit is set as well, so an allocation past the cap raises instead of taking the device down.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from edge_runtime.memory import measure


@dataclass
class Verdict:
    fits: bool
    last_peak: int
    predicted: int


class MemoryWatchdog:
    def __init__(self, cap: int, device: torch.device) -> None:
        self.cap, self.device = cap, device
        self.peaks: list[int] = []
        if device.type == "cuda":
            total = torch.cuda.get_device_properties(device).total_memory
            torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total), device)

    def step_started(self) -> None:
        measure.reset_peak(self.device)

    def step_finished(self) -> Verdict:
        self.peaks.append(measure.peak_bytes(self.device))
        growth = self.peaks[-1] - self.peaks[-2] if len(self.peaks) > 1 else 0
        predicted = self.peaks[-1] + max(growth, 0)
        return Verdict(predicted < self.cap, self.peaks[-1], predicted)

    @property
    def peak(self) -> int:
        return max(self.peaks, default=0)
