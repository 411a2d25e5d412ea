"""Rebuild a device's update from its seed-and-scalar upload (FedKSeed / DeComFL).

A ZO-SGD or Forward-Grad device's local trajectory is theta_T = theta_0 - sum_t lr * (1/q) sum_i
g_{t,i} z(seed_{t,i}), and every seed is step_seed(task seed, t) expanded by query_seeds, which the
coordinator chose. So the device uploads only the T*q scalars g (4 bytes each) and the coordinator
regenerates each z. Cost: T*q draws of the assigned tensors' size, done once per upload when the
round merges; devices never replay anything (they download the merged state), so the replay cost
is bounded by the round's steps, not by the history of the run.

Block-wise ZO (ZO-Bench) replays too: each query's block comes from its seed alone, so the replay
adds z only to that block's tensors, as the device did. Sparse ZO does not: its default masks
follow the weights' magnitudes along the device's own trajectory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from edge_runtime.protocol import pb
from edge_runtime.protocol.specs import method_of
from edge_runtime.seeded.blocks import block_of, blocks_of, chosen_block
from edge_runtime.seeded.draws import normal, query_seeds, step_seed
from edge_runtime.spec import MethodSpec

# Methods whose update is plain SGD along the seeded directions: only those replay exactly.
REPLAYABLE_METHODS = frozenset({"zo-sgd", "zo-sgd-sign", "zo-sgd-block", "forward-grad"})


def replay_task(
    task: pb.Task, scalars: Sequence[float], shapes: Mapping[str, tuple[int, ...]]
) -> dict[str, np.ndarray]:
    """The update a seeds upload for `task` stands for: its tensors, seed, rate and method."""
    return replay_update(
        {n: shapes[n] for n in task.tensors}, scalars, seed=task.seed, lr=task.lr, method=method_of(task)
    )


def replay_update(
    shapes: Mapping[str, tuple[int, ...]], scalars: Sequence[float], *, seed: int, lr: float, method: MethodSpec
) -> dict[str, np.ndarray]:
    """The dense delta (final minus start) of the named tensors, in the order the device trained
    them, after len(scalars) / queries steps of `method`: the very spec the device's task carried."""
    deltas = {name: np.zeros(shape, dtype=np.float32) for name, shape in shapes.items()}
    scratch = {name: np.empty(shape, dtype=np.float32) for name, shape in shapes.items()}
    queries, grouping = method.settings.queries, method.settings.zo_blocks
    owner = {name: block_of(name, grouping) for name in shapes}
    blocks = blocks_of(list(shapes), grouping) if method.name == "zo-sgd-block" else None
    for step in range(len(scalars) // queries):
        for i, query_seed in enumerate(query_seeds(step_seed(seed, step), queries)):
            coefficient = np.float32(-lr * scalars[step * queries + i] / queries)
            chosen = chosen_block(blocks, query_seed) if blocks else None
            for name, delta in deltas.items():
                if chosen is None or owner[name] == chosen:
                    delta += coefficient * normal(query_seed, name, shapes[name], out=scratch[name])
    return deltas
