"""Activation checkpointing per transformer block: backprop at a fraction of its activation memory.

Inside `recomputed_blocks(module)`, each block keeps only its inputs during the forward pass and
recomputes its activations when the backward pass reaches it (Chen et al. 2016; what MeBP runs on
an iPhone), so a backward step holds one block's activations instead of every block's, for about
one more forward pass of compute. The model stays in eval mode (no dropout), so the recomputed
activations are the kept ones exactly and the gradient is unchanged.

A block is whatever transformers marks as checkpointable (`GradientCheckpointingLayer`: BERT's and
Llama's layers, and every architecture that supports `gradient_checkpointing_enable`). transformers'
own switch recomputes only in training mode, which would turn dropout on; this one does not.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers.modeling_layers import GradientCheckpointingLayer

from edge_runtime.errors import UserError


@contextmanager
def recomputed_blocks(module: nn.Module, enabled: bool = True) -> Iterator[None]:
    if not enabled:
        yield
        return
    blocks = [m for m in module.modules() if isinstance(m, GradientCheckpointingLayer)]
    if not blocks:
        raise UserError(
            f"{type(module).__name__} has no transformer blocks that can be recomputed "
            "(checkpointed backprop); train it with fo-sgd or fo-adam"
        )
    # A block may already carry its own `forward` (an accelerate hook); it is put back afterwards.
    own = [(block, block.__dict__.get("forward")) for block in blocks]
    for block, _ in own:
        block.forward = functools.partial(_recompute_in_backward, block.forward)
    try:
        yield
    finally:
        for block, forward in own:
            if forward is None:
                del block.forward
            else:
                block.forward = forward


def _recompute_in_backward(forward, *args, **kwargs):
    if not torch.is_grad_enabled():
        return forward(*args, **kwargs)
    return checkpoint(forward, *args, use_reentrant=False, **kwargs)
