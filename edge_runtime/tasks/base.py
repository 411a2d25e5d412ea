"""What every task looks like to the rest of the runtime.

A task is a list of `Example`s per split. Every example carries both views that the two kinds of
heads need, so one task serves encoders and causal LMs alike:

- encoders with a classification head read `text` (a sentence or a sentence pair) and predict
  `label` among `len(candidates)` classes; for multiple-choice tasks they score each
  (`prompt`, candidate) pair instead;
- causal LMs read `prompt` and score each continuation in `candidates` by its token
  log-likelihood (MeZO's prompt + label words; e.g. "<sentence> It was" -> " terrible" / " great").

`fields` keeps the row's texts by name (and a few forms derived from them, such as a COPA choice
written to continue its premise), so that another prompt template (tasks/templates.py) can render
the same example differently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TaskKind = Literal["classification", "multiple_choice"]


@dataclass(frozen=True)
class Example:
    text: str | tuple[str, str]
    prompt: str
    candidates: tuple[str, ...]
    label: int
    fields: tuple[tuple[str, str], ...] = ()

    @property
    def field_values(self) -> dict[str, str]:
        return dict(self.fields)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: TaskKind
    # Label words for classification tasks (same for every example); empty for multiple choice.
    label_words: tuple[str, ...]
    train_split: str
    eval_split: str
    description: str
    # Sentences that describe each class, for an encoder's zero-shot head (cosine similarity of a
    # text's embedding to each); empty where no single sentence describes a class (sentence pairs).
    label_descriptions: tuple[str, ...] = ()

    @property
    def num_labels(self) -> int:
        """Outputs of an encoder's head: one per class, or one score per (prompt, candidate) pair."""
        return 1 if self.kind == "multiple_choice" else len(self.label_words)
