"""Random directions z(seed, parameter) that are never stored, only regenerated.

Each parameter gets its own generator, seeded from (step seed, parameter name). That keeps a
direction independent of the order in which parameters are visited and of which other
parameters exist, so a device that trains a slice and a server that replays (seed, scalar)
pairs regenerate the same z without sharing any state; it also rules out MeZO's classic bug of
an unrelated random draw desynchronising perturbation and update.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

import torch

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def parameter_seed(seed: int, name: str) -> int:
    # torch's CPU generator keeps only 32 bits of a seed, so mix first, then fold.
    mixed = _splitmix64(seed ^ (zlib.crc32(name.encode()) << 32))
    return (mixed ^ (mixed >> 32)) & 0xFFFFFFFF


def query_seeds(step_seed: int, queries: int) -> list[int]:
    """Independent seeds for the q directions of one step, derived so a step can be replayed."""
    return [_splitmix64(step_seed * 1_000_003 + i) for i in range(queries)]


def step_seed(run_seed: int, step: int) -> int:
    """The seed of one training step: a resumed run draws the same directions it would have."""
    return _splitmix64((run_seed << 32) ^ step)


def direction(seed: int, name: str, like: torch.Tensor) -> torch.Tensor:
    """z ~ N(0, I) in fp32 with the shape and device of `like`."""
    generator = torch.Generator(device=like.device).manual_seed(parameter_seed(seed, name))
    return torch.randn(like.shape, generator=generator, device=like.device, dtype=torch.float32)


@torch.no_grad()
def perturb_(params: Mapping[str, torch.Tensor], seed: int, scale: float) -> None:
    """params += scale * z(seed), in place, one parameter's z alive at a time."""
    for name, p in params.items():
        p.add_(direction(seed, name, p), alpha=scale)


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
