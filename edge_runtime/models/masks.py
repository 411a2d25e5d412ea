"""transformers skips building an attention mask when it sees no padding: a test that reads tensor
values. Code that has no values to read (meta tensors in the memory model) or may not branch on
them (`torch.vmap` over many devices' batches in the fleet emulator) asks it to answer as while
tracing: always build the mask. With a mask of ones the scores are the same."""

from __future__ import annotations

import contextlib
from unittest import mock


def always_build_masks() -> contextlib.AbstractContextManager:
    return mock.patch("transformers.masking_utils.is_tracing", lambda *_: True)
