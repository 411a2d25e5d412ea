"""Encoder heads: sequence classification, or pair scoring for multiple-choice tasks."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from edge_runtime.heads.base import Batch, Forward, Head
from edge_runtime.tasks.base import Example


class ClassifierHead(Head):
    """Classification reads `example.text`; multiple choice scores each (prompt, candidate) pair
    with a one-logit head, so the same model answers any number of candidates.

    The scores are the model's logits times `logit_scale`, a temperature the warm start fixes:
    the linear head itself stays at the scale of the embeddings, so one learning rate (and one
    perturbation size) suits it and the adapters alike, where a head holding the temperature in its
    weights makes the adapters' directions far steeper than its own.
    """

    def __init__(self, tokenizer, *, multiple_choice: bool, max_length: int) -> None:
        self.logit_scale = 1.0
        self.tokenizer = tokenizer
        self.multiple_choice = multiple_choice
        self.max_length = max_length
        self.padding_side = tokenizer.padding_side
        self.pad_token_id = tokenizer.pad_token_id or 0

    def encode(self, examples: Sequence[Example]) -> Batch:
        labels = torch.tensor([ex.label for ex in examples], dtype=torch.long)
        if self.multiple_choice:
            n_candidates = len(examples[0].candidates)
            firsts = [ex.prompt for ex in examples for _ in ex.candidates]
            seconds = [c.strip() for ex in examples for c in ex.candidates]
            enc = self._tokenize(firsts, seconds)
            return Batch(dict(enc), labels, {"n_candidates": torch.tensor(n_candidates)})
        if isinstance(examples[0].text, tuple):
            enc = self._tokenize([ex.text[0] for ex in examples], [ex.text[1] for ex in examples])
        else:
            enc = self._tokenize([ex.text for ex in examples], None)
        return Batch(dict(enc), labels)

    def _tokenize(self, firsts: list[str], seconds: list[str] | None):
        return self.tokenizer(
            firsts, seconds, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )

    def constants(self) -> dict[str, float]:
        return {"logit_scale": self.logit_scale}

    def load_constants(self, constants: dict) -> None:
        self.logit_scale = float(constants.get("logit_scale", 1.0))

    def scores(self, forward: Forward, batch: Batch) -> torch.Tensor:
        logits = forward(**batch.inputs).logits * self.logit_scale
        if self.multiple_choice:
            return logits.view(len(batch), int(batch.extras["n_candidates"]))
        return logits
