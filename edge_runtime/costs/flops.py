"""The work of one training step, counted on the real architecture: FLOPs and weight bytes read.

The model is the memory model's meta-device build (`meta_model`) and the pass is the memory model's
pass (`run_pass`), here under torch's FlopCounterMode, so FLOPs follow the transformers code that
runs, as the memory estimate does, and cost no memory. The counter sees every matmul-type op
dispatched (mm, bmm, addmm, attention), the tangent matmuls of forward-mode AD included as torch
executes them: a jvp through a linear layer runs three matmuls, not two (one is the zero tangent
of the frozen operand; measured 3.2x one matmul's time, counted 3x), which is why a jvp pass counts
~2.8x a forward. Elementwise ops are not counted: a few per cent beside the matmuls.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, replace
from typing import Literal

from torch.utils.flop_counter import FlopCounterMode

from edge_runtime.estimators import get_method
from edge_runtime.memory.model import Workload, meta_model, run_pass
from edge_runtime.spec import AdapterSpec

PassKind = Literal["forward", "jvp", "backward"]
# Times a pass reads every weight: a backward pass reads them again for the input gradients.
_WEIGHT_READS: dict[str, int] = {"forward": 1, "jvp": 1, "backward": 2}


@dataclass(frozen=True)
class StepCost:
    flops: int  # all passes of one step (int8 steps count multiply-adds the same way)
    bytes_read: int  # weight bytes the passes read, at the base's precision
    passes: int


def pass_flops(work: Workload, kind: PassKind) -> int:
    """FLOPs of one pass of ``kind`` over ``work.batch`` x ``work.seq_len``; the precision does not change them."""
    return _pass_flops(replace(work.adapter, precision="fp32"), kind, work.batch, work.seq_len)


@functools.lru_cache(maxsize=256)
def _pass_flops(adapter: AdapterSpec, kind: PassKind, batch: int, seq_len: int) -> int:
    net = meta_model(Workload(adapter))
    trainable = {name: p for name, p in net.named_parameters() if p.requires_grad}
    counter = FlopCounterMode(display=False)
    run_pass(net, trainable, kind, batch, seq_len, counter)
    return counter.get_total_flops()


def weight_bytes(work: Workload) -> int:
    """Bytes of every weight and buffer of the model at the workload's precision (int8 tables included)."""
    net = meta_model(work)
    return sum(t.numel() * t.element_size() for t in itertools.chain(net.parameters(), net.buffers()))


def step_cost(work: Workload) -> StepCost:
    """One optimizer step over ``work.batch`` examples: two-point ZO runs 2q forward passes (plus the
    method's extra ones), Forward-Grad q jvp passes, backprop one forward + backward. Batched, ZO's
    2q passes (Forward-Grad's q) read the weights once per `work.perturbations_per_pass` of them."""
    info = get_method(work.method.name)
    kind: PassKind = info.pass_kind
    passes = info.estimate_passes(work.method.settings.queries)
    flops = passes * pass_flops(work, kind)
    if info.extra_forward_passes:
        flops += info.extra_forward_passes * pass_flops(work, "forward")
    batched = passes if kind == "backward" else -(-passes // work.perturbations_per_pass)
    reads = batched * _WEIGHT_READS[kind] + info.extra_forward_passes
    return StepCost(flops=flops, bytes_read=reads * weight_bytes(work), passes=passes + info.extra_forward_passes)
