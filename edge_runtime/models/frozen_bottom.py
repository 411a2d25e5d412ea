"""Run a decoder's frozen bottom layers once per example when LoRA trains only its top layers.

With LoRA in the top N layers (`lora_layers`), the layers below hold no trained tensor: their output
is a pure function of the tokens. A ZO step runs the model twice on one batch and a run sees each
training example many times, so that output is computed once per token sequence and kept, and a
step runs the top N layers only (SmolLM2-135M, top 12 of 30 layers: about 2.3x fewer seconds a step;
docs/benchmarks/convergence/notes.md).

Rows are left-padded with explicit position ids (heads/label_words.py), so a real token's hidden
state does not depend on the padding around it and a kept row can be re-padded into any batch. The
cache is installed as the decoder body's `forward` (an instance attribute) instead of a wrapper
module, so every tensor keeps its name: torch.func's functional_call, checkpoints and peft's adapter
files see the same model as without it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

# Decoders whose body runs `inputs_embeds` through its layers unchanged (Gemma, for one, rescales
# them), so a kept hidden state can be fed back in as the embeddings of the layers above it.
CACHEABLE_FAMILIES = frozenset({"llama"})


class FrozenBottom:
    """The kept outputs of a decoder body's bottom `split` layers, by token sequence, up to `max_bytes`;
    rows beyond that are computed each time they are needed."""

    def __init__(self, body: nn.Module, split: int, max_bytes: int) -> None:
        self.body, self.split, self.max_bytes = body, split, max_bytes
        layers = body.layers
        self.bottom, self.top = nn.ModuleList(layers[:split]), nn.ModuleList(layers[split:])
        self.kept: dict[tuple[int, ...], torch.Tensor] = {}
        self.kept_bytes = 0
        self.computed = 0  # sequences the bottom layers ran for, kept or not
        self._forward = type(body).forward.__get__(body)

    def install(self) -> None:
        self.body.forward = self.forward

    def remove(self) -> None:
        del self.body.forward

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, **kwargs):
        if not _can_use_kept(input_ids, attention_mask, position_ids, kwargs):
            return self._forward(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                inputs_embeds=inputs_embeds,
                **kwargs,
            )
        hidden = self.hidden_states(input_ids, attention_mask, position_ids)
        with self._running(self.top, self.body.norm):
            return self._forward(
                inputs_embeds=hidden, attention_mask=attention_mask, position_ids=position_ids, **kwargs
            )

    def hidden_states(self, input_ids, attention_mask, position_ids) -> torch.Tensor:
        """The bottom layers' output for a left-padded batch (zeros at the padding), from what is kept."""
        keys = [tuple(ids[mask.bool()].tolist()) for ids, mask in zip(input_ids, attention_mask)]
        rows = {key: self.kept[key] for key in keys if key in self.kept}
        missing = [row for row, key in enumerate(keys) if key not in rows]
        if missing:
            rows.update(self._compute(input_ids, attention_mask, position_ids, keys, missing))
        first = next(iter(rows.values()))
        width = input_ids.shape[1]
        hidden = first.new_zeros((len(keys), width, first.shape[-1]))
        for row, key in enumerate(keys):
            hidden[row, width - len(rows[key]) :] = rows[key]
        return hidden

    @torch.no_grad()
    def _compute(self, input_ids, attention_mask, position_ids, keys, missing) -> dict[tuple[int, ...], torch.Tensor]:
        with self._running(self.bottom, nn.Identity()):
            hidden = self._forward(
                input_ids=input_ids[missing],
                attention_mask=attention_mask[missing],
                position_ids=position_ids[missing],
                use_cache=False,
            ).last_hidden_state
        self.computed += len(missing)
        computed = {}
        for row, states, mask in zip(missing, hidden, attention_mask[missing]):
            states = states[mask.bool()].clone()
            computed[keys[row]] = states
            size = states.numel() * states.element_size()
            if self.kept_bytes + size <= self.max_bytes:
                self.kept[keys[row]] = states
                self.kept_bytes += size
        return computed

    @contextlib.contextmanager
    def _running(self, layers: nn.ModuleList, norm: nn.Module) -> Iterator[None]:
        """The body with only `layers` and `norm` in place, for one call; restored even on an error."""
        saved = self.body.layers, self.body.norm
        self.body.layers, self.body.norm = layers, norm
        try:
            yield
        finally:
            self.body.layers, self.body.norm = saved


def _can_use_kept(input_ids, attention_mask, position_ids, kwargs) -> bool:
    """Kept rows stand in for the bottom layers only for token ids with explicit positions (implicit
    ones would shift with the padding), in left-padded rows, outside generation (a key/value cache of
    the top layers alone would be wrong)."""
    if any(value is None for value in (input_ids, attention_mask, position_ids)):
        return False
    if kwargs.get("use_cache") or kwargs.get("past_key_values") is not None:
        return False
    return bool(attention_mask[:, -1].all())


def keep_frozen_bottom(model: nn.Module, family: str, trained_layers: int, max_bytes: int) -> FrozenBottom | None:
    """Install a `FrozenBottom` under the top `trained_layers` of a peft-wrapped decoder, or return
    None where it does not apply: a family not known to be safe, nothing frozen below, or a trained
    tensor below the top layers, embeddings included (LoRA placed by module names)."""
    body = getattr(model.get_base_model(), "model", None)
    layers = getattr(body, "layers", None)
    if family not in CACHEABLE_FAMILIES or not isinstance(layers, nn.ModuleList):
        return None
    split = len(layers) - trained_layers
    below = [body.embed_tokens, *layers[:split]]
    if split <= 0 or any(p.requires_grad for module in below for p in module.parameters()):
        return None
    frozen = FrozenBottom(body, split, max_bytes)
    frozen.install()
    return frozen
