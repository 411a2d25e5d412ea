"""Causal-LM head: score each candidate continuation by its token log-likelihood (MeZO's
prompt + label words). "<sentence> It was" -> " terrible" / " great".

Sequences are left-padded with explicit position ids so every row ends at the last column; the
model then computes vocabulary logits for the last few positions only (`logits_to_keep`), which
keeps the [batch, length, vocab] tensor (200 MB for SmolLM2 at batch 8 x 128) out of memory;
`use_cache=False` likewise, since a training pass never reuses the keys and values (47 MB).
When every example shares the same one-token candidates (classification tasks), one forward pass
over the prompts scores all candidates at once; otherwise each (prompt, candidate) is a row.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from edge_runtime.heads.base import Batch, Forward, Head
from edge_runtime.tasks.base import Example


class CandidateScoringHead(Head):
    padding_side = "left"

    def __init__(self, tokenizer, *, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.prefix = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _single_token_candidates(self, examples: Sequence[Example]) -> list[int] | None:
        candidates = examples[0].candidates
        if any(ex.candidates != candidates for ex in examples):
            return None
        ids = [self._ids(c) for c in candidates]
        return [i[0] for i in ids] if all(len(i) == 1 for i in ids) else None

    def encode(self, examples: Sequence[Example]) -> Batch:
        labels = torch.tensor([ex.label for ex in examples], dtype=torch.long)
        single = self._single_token_candidates(examples)
        if single is not None:
            rows = [(self._ids(ex.prompt), []) for ex in examples]
            extras = {"candidate_ids": torch.tensor(single), "n_candidates": torch.tensor(len(single))}
        else:
            rows = [(self._ids(ex.prompt), self._ids(c)) for ex in examples for c in ex.candidates]
            extras = {"n_candidates": torch.tensor(len(examples[0].candidates))}
        inputs, targets, target_mask = self._left_pad(rows)
        if single is None:
            extras.update(targets=targets, target_mask=target_mask)
        return Batch(inputs, labels, extras)

    def _left_pad(self, rows: list[tuple[list[int], list[int]]]):
        # Truncate prompts from the left: the words next to the answer matter most.
        seqs, cand_lens = [], []
        for prompt, cand in rows:
            room = max(self.max_length - len(cand) - len(self.prefix), 1)
            seqs.append(self.prefix + prompt[-room:] + cand)
            cand_lens.append(len(cand))
        width = max(len(s) for s in seqs)
        keep = max(max(cand_lens), 1)
        input_ids = torch.full((len(seqs), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        targets = torch.zeros((len(seqs), keep), dtype=torch.long)
        target_mask = torch.zeros((len(seqs), keep), dtype=torch.bool)
        for r, (seq, n) in enumerate(zip(seqs, cand_lens)):
            input_ids[r, width - len(seq):] = torch.tensor(seq)
            mask[r, width - len(seq):] = 1
            if n:
                targets[r, keep - n:] = torch.tensor(seq[-n:])
                target_mask[r, keep - n:] = True
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return {"input_ids": input_ids, "attention_mask": mask, "position_ids": positions}, targets, target_mask

    def scores(self, forward: Forward, batch: Batch) -> torch.Tensor:
        n_candidates = int(batch.extras["n_candidates"])
        if "candidate_ids" in batch.extras:
            logits = forward(**batch.inputs, logits_to_keep=1, use_cache=False).logits[:, -1].float()
            return logits.log_softmax(-1)[:, batch.extras["candidate_ids"]]
        targets, target_mask = batch.extras["targets"], batch.extras["target_mask"]
        keep = targets.shape[1]
        # Logits at position t predict token t+1, so the last `keep` targets need the `keep`
        # logits just before the final column.
        logits = forward(**batch.inputs, logits_to_keep=keep + 1, use_cache=False).logits[:, :keep].float()
        token_logp = logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        mean_logp = (token_logp * target_mask).sum(-1) / target_mask.sum(-1).clamp(min=1)
        return mean_logp.view(len(batch), n_candidates)
