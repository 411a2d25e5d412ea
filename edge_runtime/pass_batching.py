"""How many of a step's perturbed copies (two-point ZO's 2q, Forward-Grad's q tangents) go through
one forward pass by default, on any backend (this module imports neither torch nor onnxruntime).

Batching pays where a pass is bound by reading the weights, not by arithmetic: a GPU at device
batch sizes, a CPU pass over few tokens. A CPU pass over many tokens is compute-bound: the copies
then cost what sequential passes cost, and past a few thousand tokens more (activations fall out of
cache). Measured on a 2-core CPU, MiniLM and SmolLM2, fp32 and int8, 128 tokens per example
(`edgetune bench speed --zo-passes sequential,batched`, docs/benchmarks/batched-zo/): a
batched ZO pass of at most 1,024 tokens took 0.63-1.13x the time of its copies one at a time (14
of 24 rows 0.9x or less), 1,025-4,096 tokens 0.82-1.12x, 16,384 tokens 1.26-2.07x; a jvp carries
more per token than it reads, and 4 tangents of 512 tokens in one pass took 0.30-0.62x.
A memory cap may lower the number (memory/planner.py).
"""

from __future__ import annotations

CPU_BATCHED_TOKENS = {"forward": 1024, "jvp": 2048}  # the most tokens a batched CPU pass takes


def default_perturbations_per_pass(pass_kind: str, queries: int, device_type: str, tokens_per_pass: int) -> int:
    """All of a step's copies in one pass on a GPU; on a CPU as many as keep the pass within
    CPU_BATCHED_TOKENS, and 1 (one at a time) where not even two do or for backprop."""
    if pass_kind not in CPU_BATCHED_TOKENS:
        return 1
    copies = 2 * queries if pass_kind == "forward" else queries
    if device_type == "cuda":
        return copies
    return max(1, min(copies, CPU_BATCHED_TOKENS[pass_kind] // max(tokens_per_pass, 1)))
