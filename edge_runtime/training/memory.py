"""What the process uses now and at most: RSS on CPU, the allocator's peak on CUDA."""

from __future__ import annotations

import resource

import psutil
import torch

_PROCESS = psutil.Process()


def current_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    return _PROCESS.memory_info().rss


def peak_bytes(device: torch.device) -> int:
    """High-water mark since the process started (CPU) or since the last reset (CUDA)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
