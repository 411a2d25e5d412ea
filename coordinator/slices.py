"""Cut the trainable tensors into slices, the unit Spry gives to one device.

The default slice is one adapted layer's LoRA A/B pair (`...q_proj.lora_A.default.weight` and
its `lora_B` partner): the two matrices only act together, so training one without the other is
wasted work (with B = 0 at initialisation, A's gradient is zero). Tensors that are not LoRA (an
encoder's classification head, a prefix) form one slice per module.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_LORA = re.compile(r"^(?P<module>.+)\.lora_[AB]\.[^.]+\.weight$")


@dataclass(frozen=True)
class Slice:
    id: str
    tensors: tuple[str, ...]
    numel: int

    @property
    def nbytes(self) -> int:
        return 4 * self.numel  # trainable tensors are fp32


def slice_tensors(shapes: Mapping[str, tuple[int, ...]]) -> list[Slice]:
    """Slices in the order the tensors come (the model's registration order)."""
    groups: dict[str, list[str]] = {}
    for name in shapes:
        lora = _LORA.match(name)
        key = lora.group("module") if lora else name.rsplit(".", 1)[0]
        groups.setdefault(key, []).append(name)
    return [Slice(key, tuple(names), sum(_numel(shapes[n]) for n in names)) for key, names in groups.items()]


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n
