"""How many of a two-point ZO step's 2q perturbed copies go through one forward pass by default.

Batching the copies pays where a pass is bound by reading the weights, not by arithmetic: a GPU at
device batch sizes, an int8 base on a CPU (every pass dequantizes the weights again), and a CPU
pass over few tokens. A CPU pass over many tokens is compute-bound: the copies then cost what
sequential passes cost, plus k copies' activations, so they go one at a time. The thresholds are
`edgetune bench speed --zo-passes sequential,batched` on a 2-core CPU
(tools/results/batched-zo-2026-12-06/). A memory cap may lower the number further (memory/planner.py).
"""

from __future__ import annotations

# A CPU forward over at most this many tokens (micro-batch x sequence length) is bandwidth-bound
# enough for batched copies to pay.
CPU_BATCHED_TOKENS = 128


def default_perturbations_per_pass(queries: int, device_type: str, precision: str, tokens_per_pass: int) -> int:
    """2q (every copy in one pass) where batching pays, else 1 (one at a time, in place)."""
    every_copy = 2 * queries
    if device_type == "cuda" or precision == "int8" or tokens_per_pass <= CPU_BATCHED_TOKENS:
        return every_copy
    return 1
