"""Prompt templates: how a causal LM is asked a task, and which words answer it.

A template renders an `Example` from its named `fields` into the prompt the LM continues and the
candidate continuations it scores. Each task keeps MeZO's template under the name "mezo" (the
reproduction tables use it) and a few others; its default is the template with the best measured
zero-shot accuracy on SmolLM2-135M-Instruct (`edgetune bench warm-start --models smollm2-135m`). A
template also names the calibration that suited it (heads/label_words.py): some prompts make the LM
prefer one answer whatever the input, which subtracting the mean scores removes.

Users may pass their own template instead of a name: a prompt with the task's field names in
braces, e.g. "Review: {sentence}\\nSentiment:", and the label words it is answered with.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, replace
from typing import Literal

from edge_runtime.errors import UserError
from edge_runtime.tasks.base import Example, TaskSpec

Calibration = Literal["none", "content-free", "centred"]
CALIBRATIONS: tuple[str, ...] = ("none", "content-free", "centred")
MEZO = "mezo"


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    # A format string over the example's fields; None keeps the example's own (MeZO's) prompt.
    prompt: str | None = None
    # Format strings too (a multiple-choice task's candidates come from the example's fields);
    # None keeps the example's own candidates.
    candidates: tuple[str, ...] | None = None
    calibration: Calibration = "none"

    def render(self, example: Example) -> tuple[str, tuple[str, ...]]:
        """(prompt, candidates) of `example` under this template."""
        if self.prompt is None and self.candidates is None:
            return example.prompt, example.candidates
        fields = example.field_values
        prompt = example.prompt if self.prompt is None else self.prompt.format(**fields)
        candidates = (
            example.candidates if self.candidates is None else tuple(c.format(**fields) for c in self.candidates)
        )
        return prompt, candidates

    def render_content_free(self, example: Example, text: str) -> str:
        """The prompt with every field of `example` replaced by `text` (contextual calibration)."""
        if self.prompt is None:
            raise UserError(
                f"template {self.name!r} keeps the task's own prompt, which has no slots to "
                "fill with a content-free input; use calibration 'centred' or 'none'"
            )
        return self.prompt.format(**{name: text for name in example.field_values})


# The first template of each task is its default. SST-2 dev (872), SmolLM2-135M-Instruct, no training
# (docs/benchmarks/warm-start/warm-start-smollm2.json): review 0.780 as it stands, sentiment 0.773
# centred (0.556 raw), mezo 0.681 centred (0.515 raw).
TEMPLATES: dict[str, dict[str, PromptTemplate]] = {
    "sst2": {
        "review": PromptTemplate("review", "Review: {sentence}\nSentiment:", (" negative", " positive")),
        "sentiment": PromptTemplate("sentiment", "{sentence} The sentiment is", (" negative", " positive"), "centred"),
        MEZO: PromptTemplate(MEZO, calibration="centred"),
    },
    "rte": {
        MEZO: PromptTemplate(MEZO),
        "true-false": PromptTemplate(
            "true-false", "{premise}\nQuestion: {hypothesis} True or False?\nAnswer:", (" True", " False"), "centred"
        ),
    },
    "boolq": {
        MEZO: PromptTemplate(MEZO),
        "qa": PromptTemplate("qa", "{passage}\nQuestion: {question}\nAnswer:", (" No", " Yes"), "centred"),
    },
    "copa": {MEZO: PromptTemplate(MEZO)},
    "winogrande": {MEZO: PromptTemplate(MEZO)},
}


def template_names(task: str) -> list[str]:
    return list(TEMPLATES.get(task, {MEZO: None}))


def prompt_template(
    spec: TaskSpec, prompt: str = "default", label_words: tuple[str, ...] = (), calibration: str = "auto"
) -> PromptTemplate:
    """The template a run asked for: a name ("default" = the task's first), or a format string of
    the user's own with its label words; `calibration` "auto" keeps the template's own."""
    known = TEMPLATES.get(spec.name, {MEZO: PromptTemplate(MEZO)})
    if "{" in prompt:
        template = _custom(spec, prompt, label_words)
    else:
        name = next(iter(known)) if prompt == "default" else prompt
        if name not in known:
            raise UserError(
                f"task {spec.name!r} has no prompt template {name!r}; choose one of: "
                f"default, {', '.join(known)}, or write one with the task's fields in braces"
            )
        template = known[name]
        if label_words:
            template = replace(template, candidates=_checked_label_words(spec, label_words, template.prompt))
    if calibration == "auto":
        return template
    if calibration not in CALIBRATIONS:
        raise UserError(f"unknown calibration {calibration!r}; choose one of: auto, {', '.join(CALIBRATIONS)}")
    if calibration != "none" and spec.kind != "classification":
        raise UserError(
            f"calibration {calibration!r} shifts the scores of fixed label words; {spec.name} is a "
            "multiple-choice task, whose candidates change with every example: use calibration none"
        )
    return replace(template, calibration=calibration)


# Every task's field names, for checking a user's template before any example is read.
_FIELDS: dict[str, tuple[str, ...]] = {
    "sst2": ("sentence",),
    "rte": ("premise", "hypothesis"),
    "boolq": ("passage", "question"),
    "copa": ("premise", "premise_stem", "conjunction", "choice1", "choice2", "choice1_continued", "choice2_continued"),
    "winogrande": ("sentence", "option1", "option2"),
}


def _custom(spec: TaskSpec, prompt: str, label_words: tuple[str, ...]) -> PromptTemplate:
    fields = _FIELDS[spec.name]
    try:
        used = {name for _, name, _, _ in string.Formatter().parse(prompt) if name is not None}
    except ValueError as error:
        raise UserError(f"prompt template {prompt!r} is not a valid format string: {error}") from None
    unknown = sorted(used - set(fields))
    if unknown or not used:
        problem = (
            "has no slot for the input"
            if not used or unknown == [""]
            else f"names unknown fields {', '.join(name or '{}' for name in unknown)}"
        )
        raise UserError(
            f"prompt template {prompt!r} {problem}; {spec.name}'s fields are "
            + ", ".join("{" + f + "}" for f in fields)
        )
    if spec.kind != "classification":
        raise UserError(
            f"{spec.name} is a multiple-choice task: its candidates come from each example, so only "
            f"its named templates ({', '.join(template_names(spec.name))}) apply"
        )
    if not label_words:
        raise UserError(
            f"a prompt template of your own needs its label words, one per class of {spec.name} "
            f"(e.g. --label-words '{','.join(spec.label_words)}')"
        )
    return PromptTemplate("custom", prompt, _checked_label_words(spec, label_words, prompt))


def _checked_label_words(spec: TaskSpec, label_words: tuple[str, ...], prompt: str | None) -> tuple[str, ...]:
    """The words as the prompt is continued with them: after one space, unless the prompt ends in
    whitespace (config lists strip their items, and the space decides which token a word is)."""
    if spec.kind != "classification":
        raise UserError(f"{spec.name} is a multiple-choice task; label words apply to classification tasks only")
    if len(label_words) != len(spec.label_words):
        raise UserError(
            f"{spec.name} has {len(spec.label_words)} classes, so it needs {len(spec.label_words)} "
            f"label words, got {len(label_words)}: {', '.join(map(repr, label_words))}"
        )
    if any(not word.strip() for word in label_words):
        raise UserError(f"label words must not be empty or blank, got {', '.join(map(repr, label_words))}")
    spaced = spec.label_words[0].startswith(" ") if prompt is None else not prompt[-1:].isspace()
    return tuple((" " if spaced else "") + word.strip() for word in label_words)
