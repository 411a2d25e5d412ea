"""SST-2, read from GLUE's TSV files (a `sentence<TAB>label` header, labels 0 = negative, 1 = positive)."""

from __future__ import annotations

from edge_runtime.tasks.base import Example, TaskSpec
from edge_runtime.tasks.reading import Row, TaskSource, lookup_field, read_tsv, text_field

# MeZO's OPT template: "<sentence> It was" followed by the label word.
SST2_LABEL_WORDS = (" terrible", " great")


def _sst2_example(row: Row) -> Example:
    sentence = text_field(row, "sentence")
    return Example(
        text=sentence,
        prompt=f"{sentence} It was",
        candidates=SST2_LABEL_WORDS,
        label=lookup_field(row, "label", {"0": 0, "1": 1}),
        fields=(("sentence", sentence),),
    )


SST2 = TaskSource(
    spec=TaskSpec(
        name="sst2",
        kind="classification",
        label_words=SST2_LABEL_WORDS,
        train_split="train",
        eval_split="eval",
        description="SST-2 (GLUE): sentiment of movie-review sentences; train 67,349, eval = GLUE dev 872.",
        # MiniLM, SST-2 dev (872), cosine to each: 0.711; "a negative/positive review" 0.696,
        # "terrible"/"great" 0.620 (`edgetune bench warm-start`).
        label_descriptions=("This movie is bad.", "This movie is great."),
    ),
    files={"train": "train.tsv", "eval": "dev.tsv"},
    read_rows=read_tsv,
    build_example=_sst2_example,
)
