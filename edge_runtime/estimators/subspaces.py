"""Which coordinates a ZO query perturbs: ZO-Bench's variance-reduction plug-ins.

A two-point estimate's variance grows with the number of perturbed coordinates, so ZO-Bench
(Zhang et al. 2024) perturbs fewer of them: one block of parameters per query (block-wise ZO,
also MeZO-BCD), or a sparse subset of coordinates (Sparse MeZO perturbs the smallest-magnitude
weights). A `Subspace` restricts the direction z(seed) to such a set; the estimator perturbs along
it and the update regenerates exactly the same restricted z, so nothing but masks is stored.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping

import numpy as np
import torch

from edge_runtime.estimators.perturbation import direction
from edge_runtime.seeded.blocks import block_of, blocks_of, chosen_block
from edge_runtime.seeded.draws import parameter_seed
from edge_runtime.spec import BlockGrouping, SparseSelection


class Subspace(ABC):
    def begin_step(self, params: Mapping[str, torch.Tensor]) -> None:
        """Called with the unperturbed parameters before a step's queries (magnitude masks)."""

    @abstractmethod
    def direction(self, seed: int, name: str, p: torch.Tensor) -> torch.Tensor | None:
        """z(seed) for parameter `name` restricted to the subspace; None where it is all zero."""

    @torch.no_grad()
    def perturb_(self, params: Mapping[str, torch.Tensor], seed: int, scale: float) -> None:
        """params += scale * z(seed), in place, one parameter's z alive at a time."""
        for name, p in params.items():
            z = self.direction(seed, name, p)
            if z is not None:
                p.add_(z, alpha=scale)


class FullSpace(Subspace):
    """MeZO: every trainable coordinate, every query."""

    def direction(self, seed, name, p):
        return direction(seed, name, p)


class Blocks(Subspace):
    """One block per query, drawn uniformly from the query's seed (randomised block coordinate
    descent: stateless, so a resumed run and a seed replay draw the same blocks)."""

    def __init__(self, grouping: BlockGrouping = "layer") -> None:
        self.grouping = grouping
        self.block_of: dict[str, str] = {}
        self.blocks: list[str] = []

    def begin_step(self, params):
        if set(params) != set(self.block_of):
            self.block_of = {n: block_of(n, self.grouping) for n in params}
            self.blocks = blocks_of(list(params), self.grouping)

    def direction(self, seed, name, p):
        return direction(seed, name, p) if self.block_of[name] == chosen_block(self.blocks, seed) else None


class RandomSparse(Subspace):
    """A fresh random `density` fraction of each tensor's coordinates per query, drawn from the seed."""

    def __init__(self, density: float) -> None:
        self.density = density

    def direction(self, seed, name, p):
        generator = np.random.Generator(np.random.PCG64(parameter_seed(seed, f"mask:{name}")))
        keep = torch.from_numpy(generator.random(tuple(p.shape), dtype=np.float32) < self.density)
        return direction(seed, name, p).mul_(keep.to(p.device))


class MagnitudeSparse(Subspace):
    """Sparse MeZO: the `density` fraction of each tensor with the smallest magnitudes, chosen
    afresh each step from the unperturbed weights (ties at the threshold are all kept, so a
    zero-initialised LoRA B is perturbed whole until it moves). One bool mask per tensor."""

    def __init__(self, density: float) -> None:
        self.density = density
        self.masks: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def begin_step(self, params):
        for name, p in params.items():
            magnitude = p.detach().abs().flatten()
            k = max(math.ceil(self.density * magnitude.numel()), 1)
            threshold = magnitude.kthvalue(k).values
            self.masks[name] = p.detach().abs() <= threshold

    def direction(self, seed, name, p):
        return direction(seed, name, p).mul_(self.masks[name])


def sparse(density: float, selection: SparseSelection) -> Subspace:
    return MagnitudeSparse(density) if selection == "magnitude" else RandomSparse(density)
