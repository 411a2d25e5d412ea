"""WinoGrande 1.1, read from its JSON Lines (`sentence` with one "_" blank, `option1`/`option2`,
`answer` "1"/"2")."""

from __future__ import annotations

from edge_runtime.tasks.base import Example, TaskSpec
from edge_runtime.tasks.reading import MalformedRow, Row, TaskSource, lookup_field, read_jsonl, text_field


def _winogrande_example(row: Row) -> Example:
    sentence = text_field(row, "sentence")
    blanks = sentence.count("_")
    if blanks != 1:
        raise MalformedRow(f"field 'sentence' must hold exactly one '_' blank, found {blanks}")
    options = (text_field(row, "option1"), text_field(row, "option2"))
    # MeZO's template: no prompt, the LM scores each completed sentence as a whole (so a scorer has
    # to start from the tokenizer's BOS token to have a context for the first word).
    return Example(
        text=sentence,
        prompt="",
        candidates=tuple(sentence.replace("_", option) for option in options),
        label=lookup_field(row, "answer", {"1": 0, "2": 1}),
        fields=(("sentence", sentence), ("option1", options[0]), ("option2", options[1])),
    )


WINOGRANDE = TaskSource(
    spec=TaskSpec(
        name="winogrande",
        kind="multiple_choice",
        label_words=(),
        train_split="train",
        eval_split="eval",
        description=(
            "WinoGrande 1.1: which of two names fills the blank; train = train_xs 160 "
            "(train_s 640 and train_m 2,558 also packaged), eval = dev 1,267."
        ),
    ),
    files={
        "train": "train_xs.jsonl",
        "train_xs": "train_xs.jsonl",
        "train_s": "train_s.jsonl",
        "train_m": "train_m.jsonl",
        "eval": "dev.jsonl",
    },
    read_rows=read_jsonl,
    build_example=_winogrande_example,
)
