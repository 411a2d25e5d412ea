"""What the process uses now and at most: resident memory on CPU, the allocator on CUDA.

torch is imported only for CUDA devices: the ONNX Runtime memory probe measures a process without it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import re
import resource
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    import torch

_PROCESS = psutil.Process()
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_M_MMAP_THRESHOLD = -3
_libc = ctypes.CDLL(ctypes.util.find_library("c")) if ctypes.util.find_library("c") else None


def rss_bytes() -> int:
    return _PROCESS.memory_info().rss


def current_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        import torch

        return torch.cuda.memory_allocated(device)
    return rss_bytes()


def peak_bytes(device: torch.device) -> int:
    """High-water mark since the last `reset_peak` (or the process start)."""
    if device.type == "cuda":
        import torch

        return torch.cuda.max_memory_allocated(device)
    if _STATUS.exists():
        found = re.search(r"VmHWM:\s+(\d+) kB", _STATUS.read_text())
        if found:
            return int(found.group(1)) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak(device: torch.device) -> bool:
    """Restart the high-water mark at the current usage; False where the OS cannot (then the
    peak stays the process-lifetime one, an over-estimate)."""
    if device.type == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        _CLEAR_REFS.write_text("5")  # Linux >= 4.0: "5" resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def release_freed_memory() -> None:
    """Hand memory that Python and malloc still hold after frees back to the OS."""
    gc.collect()
    if _libc is not None and hasattr(_libc, "malloc_trim"):
        _libc.malloc_trim(0)


def pin_allocator() -> None:
    """Make resident memory follow live tensors (glibc only; elsewhere a no-op).

    glibc raises its mmap threshold up to 32 MB each time a large block is freed, after which
    tensors of that size come from the heap and stay resident when freed: RSS then counts
    activations of earlier passes that nothing uses, and a cap is hit by memory that is free.
    A fixed threshold keeps every tensor above 128 KB in its own mapping, returned on free.
    """
    if _libc is not None and hasattr(_libc, "mallopt"):
        _libc.mallopt(_M_MMAP_THRESHOLD, 128 * 1024)
