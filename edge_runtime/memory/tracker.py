"""Count the bytes of tensors a piece of code allocates, live and at peak, from shapes alone.

Run under the meta device, nothing is allocated at all: this is how the memory model measures a
model's activations, tangents and gradients for any batch and sequence length, including models
that could never be loaded here (Llama-2-7B, OPT-13B). On real tensors it counts the same bytes,
which is how the tests check that the simulation matches.
"""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class LiveBytes(TorchDispatchMode):
    """Peak of the bytes held by storages created inside the block (views and in-place results
    share their input's storage and are not counted again)."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._alive: dict[int, weakref.ref] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = {id(t.untyped_storage()) for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        out = func(*args, **kwargs)
        for t in tree_flatten(out)[0]:
            # Zero tensors (forward AD's tangent of a frozen weight) report a size but own no memory.
            if isinstance(t, torch.Tensor) and not t._is_zerotensor() and id(t.untyped_storage()) not in inputs:
                self._count(t.untyped_storage())
        return out

    def _count(self, storage: torch.UntypedStorage) -> None:
        key = id(storage)
        known = self._alive.get(key)
        if known is not None and known() is storage:
            return
        size = storage.nbytes()
        self.live += size
        self.peak = max(self.peak, self.live)

        def freed(_ref, size=size, key=key) -> None:
            self.live -= size
            self._alive.pop(key, None)

        self._alive[key] = weakref.ref(storage, freed)
