"""Heads turn a model's outputs into one score per candidate answer (see heads/base.py)."""

from edge_runtime.heads.base import Batch, Head
from edge_runtime.heads.classifier import ClassifierHead
from edge_runtime.heads.label_words import CandidateScoringHead
from edge_runtime.tasks.templates import MEZO, PromptTemplate

__all__ = ["Batch", "Head", "ClassifierHead", "CandidateScoringHead", "head_for"]


def head_for(
    kind: str, tokenizer, task_kind: str, max_length: int, template: PromptTemplate = PromptTemplate(MEZO)
) -> Head:
    """Encoders classify (or score pairs for multiple choice); causal LMs score candidate words,
    asked through `template`."""
    if kind == "encoder":
        return ClassifierHead(tokenizer, multiple_choice=task_kind == "multiple_choice", max_length=max_length)
    return CandidateScoringHead(tokenizer, max_length=max_length, template=template)
