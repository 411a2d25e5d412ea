"""Causal-LM head: score each candidate continuation by its token log-likelihood (MeZO's
prompt + label words). "<sentence> It was" -> " terrible" / " great"; the prompt template
(tasks/templates.py) renders each example.

With calibration, fixed per-candidate `offsets` are subtracted from the scores (warm_start/
calibration.py): they are constants of the head, trained with it, saved beside the adapter and
written into an exported graph's manifest.

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

from edge_runtime.errors import UserError
from edge_runtime.heads.base import Batch, Forward, Head
from edge_runtime.tasks.base import Example
from edge_runtime.tasks.templates import MEZO, PromptTemplate


class CandidateScoringHead(Head):
    padding_side = "left"

    def __init__(self, tokenizer, *, max_length: int, template: PromptTemplate = PromptTemplate(MEZO)) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.template = template
        self.offsets: torch.Tensor | None = None  # [candidates], subtracted from the scores
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.prefix = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _candidate_ids(self, text: str) -> list[int]:
        ids = self._ids(text)
        if not ids:
            raise UserError(f"the candidate {text!r} tokenizes to nothing; choose label words with some text")
        return ids

    def _single_token_candidates(self, candidates: Sequence[tuple[str, ...]]) -> list[int] | None:
        if any(c != candidates[0] for c in candidates):
            return None
        ids = [self._candidate_ids(c) for c in candidates[0]]
        return [i[0] for i in ids] if all(len(i) == 1 for i in ids) else None

    def encode_prompts(self, prompts: Sequence[str], label_words: tuple[str, ...]) -> Batch:
        """Bare prompts scored against fixed label words (calibration's inputs); labels are all 0."""
        return self._encode(prompts, [label_words] * len(prompts), [0] * len(prompts))

    def encode(self, examples: Sequence[Example]) -> Batch:
        rendered = [self.template.render(ex) for ex in examples]
        return self._encode([p for p, _ in rendered], [c for _, c in rendered], [ex.label for ex in examples])

    def _encode(self, prompts: Sequence[str], candidates: Sequence[tuple[str, ...]], labels: Sequence[int]) -> Batch:
        labels = torch.tensor(list(labels), dtype=torch.long)
        single = self._single_token_candidates(candidates)
        if single is not None:
            rows = [(self._ids(prompt), []) for prompt in prompts]
            extras = {"candidate_ids": torch.tensor(single), "n_candidates": torch.tensor(len(single))}
        else:
            rows = [
                (self._ids(prompt), self._candidate_ids(c)) for prompt, cands in zip(prompts, candidates) for c in cands
            ]
            extras = {"n_candidates": torch.tensor(len(candidates[0]))}
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
            input_ids[r, width - len(seq) :] = torch.tensor(seq)
            mask[r, width - len(seq) :] = 1
            if n:
                targets[r, keep - n :] = torch.tensor(seq[-n:])
                target_mask[r, keep - n :] = True
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return {"input_ids": input_ids, "attention_mask": mask, "position_ids": positions}, targets, target_mask

    def constants(self) -> dict[str, list[float]]:
        return {} if self.offsets is None else {"score_offsets": self.offsets.tolist()}

    def load_constants(self, constants: dict) -> None:
        offsets = constants.get("score_offsets")
        self.offsets = None if offsets is None else torch.tensor(offsets, dtype=torch.float32)

    def scores(self, forward: Forward, batch: Batch) -> torch.Tensor:
        scores = self.raw_scores(forward, batch)
        return scores if self.offsets is None else scores - self.offsets.to(scores.device)

    def raw_scores(self, forward: Forward, batch: Batch) -> torch.Tensor:
        """The candidates' log-likelihoods, before calibration."""
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
