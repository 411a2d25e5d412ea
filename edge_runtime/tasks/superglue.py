"""RTE, BoolQ and COPA, read from JSON Lines in the SuperGLUE layout (BoolQ's eval file in Google's).

Prompts and label words are MeZO's OPT templates (`large_models/templates.py`), split so that
`prompt + candidate` is exactly the text MeZO scores and each candidate carries its own leading space.
"""

from __future__ import annotations

from edge_runtime.tasks.base import Example, TaskSpec
from edge_runtime.tasks.reading import MalformedRow, Row, TaskSource, lookup_field, read_jsonl, text_field

# No leading space: RTE's and BoolQ's prompts end with a newline.
RTE_LABEL_WORDS = ("Yes", "No")
BOOLQ_LABEL_WORDS = ("No", "Yes")

_BOOL_LABELS = {False: 0, True: 1}


def _rte_example(row: Row) -> Example:
    premise = text_field(row, "premise")
    hypothesis = text_field(row, "hypothesis")
    return Example(
        text=(premise, hypothesis),
        prompt=f'{premise}\nDoes this mean that "{hypothesis}" is true? Yes or No?\n',
        candidates=RTE_LABEL_WORDS,
        label=lookup_field(row, "label", {"entailment": 0, "not_entailment": 1}),
        fields=(("premise", premise), ("hypothesis", hypothesis)),
    )


def _boolq_example(row: Row) -> Example:
    question = text_field(row, "question")
    passage = text_field(row, "passage")
    if "answer" in row:  # Google's layout (dev.jsonl): the title is a field of its own.
        label = lookup_field(row, "answer", _BOOL_LABELS)
    elif "label" in row:  # SuperGLUE's layout (FewGLUE train): passage = "<title> -- <paragraph>".
        label = lookup_field(row, "label", _BOOL_LABELS)
        # Dropped so that training rows look like the eval rows (and like HF `boolq`, which MeZO uses).
        passage = passage.split(" -- ", 1)[-1]
    else:
        raise MalformedRow("missing field 'answer' (Google layout) or 'label' (SuperGLUE layout)")
    # MeZO's default BoolQ template (BoolQTemplateV3): capitalised question with "?", then a newline.
    asked = question[0].upper() + question[1:] + ("" if question.endswith("?") else "?")
    return Example(
        text=(question, passage),
        prompt=f"{passage} {asked}\n",
        candidates=BOOLQ_LABEL_WORDS,
        label=label,
        fields=(("passage", passage), ("question", asked)),
    )


def _copa_example(row: Row) -> Example:
    premise = text_field(row, "premise")
    conjunction = lookup_field(row, "question", {"cause": " because", "effect": " so"})
    choices = (text_field(row, "choice1"), text_field(row, "choice2"))
    continued = tuple(_continue_sentence(choice) for choice in choices)
    return Example(
        text=premise,
        prompt=premise.removesuffix(".") + conjunction,
        candidates=tuple(" " + choice for choice in continued),
        label=lookup_field(row, "label", {0: 0, 1: 1}),
        fields=(
            ("premise", premise),
            ("premise_stem", premise.removesuffix(".")),
            ("conjunction", conjunction.strip()),
            ("choice1", choices[0]),
            ("choice2", choices[1]),
            ("choice1_continued", continued[0]),
            ("choice2_continued", continued[1]),
        ),
    )


def _continue_sentence(choice: str) -> str:
    """MeZO's "correct" capitalisation: the choice continues the premise, so its first word is
    lower-cased, except the pronoun "I"."""
    first, space, rest = choice.partition(" ")
    return (first if first == "I" else first.lower()) + space + rest


RTE = TaskSource(
    spec=TaskSpec(
        name="rte",
        kind="classification",
        label_words=RTE_LABEL_WORDS,
        train_split="train",
        eval_split="eval",
        description="RTE (SuperGLUE): does the premise entail the hypothesis; train 2,490, eval = val 277.",
    ),
    files={"train": "train.jsonl", "eval": "val.jsonl"},
    read_rows=read_jsonl,
    build_example=_rte_example,
)

BOOLQ = TaskSource(
    spec=TaskSpec(
        name="boolq",
        kind="classification",
        label_words=BOOLQ_LABEL_WORDS,
        train_split="train",
        eval_split="eval",
        description=(
            "BoolQ: yes/no questions about a Wikipedia paragraph; train = the 32-example FewGLUE "
            "sample (the full train split is not packaged), eval = dev 3,270."
        ),
    ),
    files={"train": "fewglue_train32.jsonl", "eval": "dev.jsonl"},
    read_rows=read_jsonl,
    build_example=_boolq_example,
)

COPA = TaskSource(
    spec=TaskSpec(
        name="copa",
        kind="multiple_choice",
        label_words=(),
        train_split="train",
        eval_split="eval",
        description="COPA (SuperGLUE): the more plausible cause or effect of a premise; train 400, eval = val 100.",
    ),
    files={"train": "train.jsonl", "eval": "val.jsonl"},
    read_rows=read_jsonl,
    build_example=_copa_example,
)
