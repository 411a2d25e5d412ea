"""Examples to the graph's numpy inputs, and the graph's scores to loss and accuracy, with
`tokenizers` alone: what `heads/classifier.py` and `heads/label_words.py` do with transformers and
torch, token for token (tests compare the two), for devices that have neither.

The graph already ends at the head's scores' source (class logits, or the last position's
vocabulary logits of a causal LM), so only tokenization, the head's warm-start constants (an
encoder's logit scale, a causal LM's calibration offsets) and the loss live here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from edge_runtime.errors import UserError
from edge_runtime.ort.manifest import TOKENIZER_DIR, Manifest
from edge_runtime.tasks import Example
from edge_runtime.tasks.templates import MEZO, PromptTemplate


@dataclass
class ArrayBatch:
    inputs: dict[str, np.ndarray]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def length(self) -> int:
        return int(self.inputs["input_ids"].shape[1])


class GraphEncoding:
    def __init__(self, folder: str | Path, manifest: Manifest) -> None:
        path = Path(folder) / TOKENIZER_DIR / "tokenizer.json"
        if not path.is_file():
            raise UserError(f"{path} is missing: the graph folder needs the fast tokenizer export-graph writes")
        self.tokenizer = Tokenizer.from_file(str(path))
        self.manifest = manifest
        self.causal = manifest.kind == "causal_lm"
        self.template = PromptTemplate(**(manifest.template or {"name": MEZO}))
        self.constants: dict = {}  # Head.constants() of the PyTorch head this graph stands for
        self.tokenizer.no_truncation()
        if self.causal:
            self.tokenizer.no_padding()
        else:
            self.tokenizer.enable_padding(pad_id=manifest.pad_id, pad_token=self.tokenizer.id_to_token(manifest.pad_id))

    def encode(self, examples: Sequence[Example], max_length: int) -> ArrayBatch:
        labels = np.array([ex.label for ex in examples], dtype=np.int64)
        if self.causal:
            inputs = self._causal_inputs(examples, max_length)
        else:
            self.tokenizer.enable_truncation(max_length)
            inputs = self._encoder_inputs(examples)
        return ArrayBatch({name: inputs[name] for name in self.manifest.inputs}, labels)

    def _encoder_inputs(self, examples: Sequence[Example]) -> dict[str, np.ndarray]:
        texts = [ex.text for ex in examples]
        encodings = self.tokenizer.encode_batch(texts)
        return {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        }

    def _causal_inputs(self, examples: Sequence[Example], max_length: int) -> dict[str, np.ndarray]:
        # Left padding with explicit positions and prompts truncated from the left, as the
        # PyTorch head feeds the same graph (the answer's neighbouring words matter most).
        prefix = [] if self.manifest.bos_id is None else [self.manifest.bos_id]
        room = max(max_length - len(prefix), 1)
        prompts = [self.template.render(ex)[0] for ex in examples]
        rows = [prefix + e.ids[-room:] for e in self.tokenizer.encode_batch(prompts, add_special_tokens=False)]
        width = max(len(r) for r in rows)
        input_ids = np.full((len(rows), width), self.manifest.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            input_ids[i, width - len(row) :] = row
            mask[i, width - len(row) :] = 1
        positions = np.maximum(mask.cumsum(-1) - 1, 0)
        return {"input_ids": input_ids, "attention_mask": mask, "position_ids": positions}

    def scores(self, outputs: np.ndarray) -> np.ndarray:
        """[batch, candidates] in fp32: scaled class logits, or the label words' calibrated log-probabilities."""
        if not self.causal:
            return outputs.astype(np.float32, copy=False) * np.float32(self.constants.get("logit_scale", 1.0))
        scores = self.raw_scores(outputs)
        offsets = self.constants.get("score_offsets")
        return scores if offsets is None else scores - np.asarray(offsets, dtype=np.float32)

    def raw_scores(self, outputs: np.ndarray) -> np.ndarray:
        """A causal LM's label-word log-probabilities before calibration."""
        return log_softmax(outputs)[:, self.manifest.candidate_ids]


def log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def cross_entropy(scores: np.ndarray, labels: np.ndarray, reduction: str = "mean") -> float:
    losses = -log_softmax(scores.astype(np.float64))[np.arange(len(labels)), labels]
    return float(losses.mean() if reduction == "mean" else losses.sum())
