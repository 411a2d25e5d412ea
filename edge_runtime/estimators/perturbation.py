"""Random directions as torch tensors, and the snapshot that undoes a perturbation exactly.

The numbers come from `edge_runtime.seeded.draws`, shared with the torch-free backends.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from edge_runtime.seeded.draws import normal, parameter_seed, query_seeds, step_seed

__all__ = ["Snapshot", "direction", "parameter_seed", "query_seeds", "step_seed"]


def direction(seed: int, name: str, like: torch.Tensor) -> torch.Tensor:
    """z ~ N(0, I) in fp32 with the shape and device of `like`."""
    # Allocated by torch and filled by numpy: the memory tracker and allocator see it like any tensor.
    z = torch.empty(tuple(like.shape), dtype=torch.float32)
    normal(seed, name, tuple(like.shape), out=z.numpy())
    return z.to(like.device)


class Snapshot:
    """A preallocated copy of the trainable parameters for bit-exact restores.

    The in-place +mu, -2mu, +mu cycle of MeZO cannot restore fp32 values exactly (p -> fl(p + a)
    is many-to-one; measured: about 45% of elements end one ulp off per cycle). For adapters the
    copy costs a few MB, so it is the default; `restore="inplace"` keeps MeZO's zero-copy cycle
    for full fine-tuning where a second copy of the weights does not fit.
    """

    def __init__(self, params: Mapping[str, torch.Tensor]) -> None:
        self.params = params
        self.buffers = {name: p.detach().clone() for name, p in params.items()}

    @torch.no_grad()
    def save(self) -> None:
        for name, p in self.params.items():
            self.buffers[name].copy_(p)

    @torch.no_grad()
    def load(self) -> None:
        for name, p in self.params.items():
            p.copy_(self.buffers[name])
