"""Which block of the trained tensors a block-wise ZO query perturbs (ZO-Bench's block-wise ZO):
a block is a layer (by index; a head is a block of its own) or a single tensor, and a query's
block follows from its seed alone, so the coordinator's replay draws the block the device did."""

from __future__ import annotations

import re
from collections.abc import Sequence

from edge_runtime.spec import BlockGrouping

_LAYER_INDEX = re.compile(r"\.(\d+)\.")


def block_of(name: str, grouping: BlockGrouping) -> str:
    """The block a parameter belongs to: its layer (by index; a head is a block of its own) or itself."""
    found = _LAYER_INDEX.search(name) if grouping == "layer" else None
    return f"layer {found.group(1)}" if found else name


def blocks_of(names: Sequence[str], grouping: BlockGrouping) -> list[str]:
    """The blocks of the trained tensors, in their order: what a block-wise ZO query draws one of."""
    return list(dict.fromkeys(block_of(n, grouping) for n in names))


def chosen_block(blocks: Sequence[str], seed: int) -> str:
    """The block a query perturbs, from its seed alone (so the coordinator's replay draws it too)."""
    return blocks[seed % len(blocks)]
