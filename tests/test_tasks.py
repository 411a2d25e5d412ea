"""The task layer: packaged data, MeZO prompts, malformed-file errors, k-shot and eval sampling."""

from __future__ import annotations

import re
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.errors import UserError
from edge_runtime.tasks import TASKS, Example, few_shot, get_task, load_split, subsample
from edge_runtime.tasks.registry import PACKAGED_DATA_DIR
from edge_runtime.tasks.templates import MEZO, TEMPLATES, prompt_template

# Row counts and label counts as stated in each task's SOURCE.md (label index order).
SPLIT_LABEL_COUNTS = {
    ("sst2", "train"): [29780, 37569],
    ("sst2", "eval"): [428, 444],
    ("rte", "train"): [1249, 1241],
    ("rte", "eval"): [146, 131],
    ("boolq", "train"): [14, 18],
    ("boolq", "eval"): [1237, 2033],
    ("copa", "train"): [195, 205],
    ("copa", "eval"): [55, 45],
    ("winogrande", "train"): [80, 80],
    ("winogrande", "train_s"): [320, 320],
    ("winogrande", "train_m"): [1279, 1279],
    ("winogrande", "eval"): [628, 639],
}
ROW_COUNTS = {
    ("sst2", "train"): 67349,
    ("sst2", "eval"): 872,
    ("copa", "train"): 400,
    ("copa", "eval"): 100,
    ("rte", "train"): 2490,
    ("rte", "eval"): 277,
    ("boolq", "train"): 32,
    ("boolq", "eval"): 3270,
    ("winogrande", "train"): 160,
    ("winogrande", "train_xs"): 160,
    ("winogrande", "train_s"): 640,
    ("winogrande", "train_m"): 2558,
    ("winogrande", "eval"): 1267,
}


@pytest.mark.parametrize(("task", "split"), sorted(ROW_COUNTS))
def test_packaged_split_has_the_row_count_of_its_source(task: str, split: str) -> None:
    assert len(load_split(task, split)) == ROW_COUNTS[(task, split)]


@pytest.mark.parametrize(("task", "split"), sorted(SPLIT_LABEL_COUNTS))
def test_labels_map_to_the_counts_stated_in_source_md(task: str, split: str) -> None:
    examples = load_split(task, split)
    counts = Counter(example.label for example in examples)
    assert [counts[label] for label in range(2)] == SPLIT_LABEL_COUNTS[(task, split)]
    assert set(counts) == {0, 1}
    assert all(len(example.candidates) == 2 for example in examples)


def test_registry_names_the_five_tasks_with_matching_specs() -> None:
    assert list(TASKS) == ["sst2", "rte", "boolq", "copa", "winogrande"]
    for name, spec in TASKS.items():
        assert get_task(name) is spec and spec.name == name
        assert (spec.kind == "classification") == bool(spec.label_words)
        assert load_split(name, spec.train_split) and load_split(name, spec.eval_split)


def test_classification_examples_use_the_specs_label_words() -> None:
    for name in ("sst2", "rte", "boolq"):
        assert {example.candidates for example in load_split(name, "eval")} == {get_task(name).label_words}


def test_sst2_prompt_and_stripped_sentence() -> None:
    examples = load_split("sst2", "train")
    assert examples[0] == Example(
        text="hide new secretions from the parental units",
        prompt="hide new secretions from the parental units It was",
        candidates=(" terrible", " great"),
        label=0,
        fields=(("sentence", "hide new secretions from the parental units"),),
    )
    assert not any(example.text != str(example.text).strip() for example in examples)


def test_rte_prompt_follows_mezo_template() -> None:
    first = load_split("rte", "train")[0]
    premise = "No Weapons of Mass Destruction Found in Iraq Yet."
    hypothesis = "Weapons of Mass Destruction Found in Iraq."
    assert first.text == (premise, hypothesis)
    assert first.prompt == f'{premise}\nDoes this mean that "{hypothesis}" is true? Yes or No?\n'
    assert first.candidates == ("Yes", "No")
    assert first.label == 1  # not_entailment


def test_boolq_prompt_in_both_file_layouts() -> None:
    dev = load_split("boolq", "eval")[0]  # Google layout, answer false
    question, passage = _pair(dev)
    assert question == "does ethanol take more energy make that produces"
    assert passage.startswith("All biomass goes through")
    assert dev.prompt == f"{passage} Does ethanol take more energy make that produces?\n"
    assert (dev.candidates, dev.label) == (("No", "Yes"), 0)

    train = load_split("boolq", "train")[0]  # SuperGLUE layout, label false, title dropped
    question, passage = _pair(train)
    assert question == "is ghost in the shell based on the anime"
    assert passage.startswith("Animation studio Production I.G has produced")
    assert train.prompt == f"{passage} Is ghost in the shell based on the anime?\n"
    assert train.label == 0


def test_copa_prompt_drops_the_period_and_continues_the_choices() -> None:
    first = load_split("copa", "train")[0]
    assert (first.text, first.prompt, first.candidates, first.label) == (
        "My body cast a shadow over the grass.",
        "My body cast a shadow over the grass because",
        (" the sun was rising.", " the grass was cut."),
        0,
    )
    effect = load_split("copa", "eval")[5]
    assert effect.prompt == "I doubted the salesman's pitch so"
    assert effect.candidates == (" I turned his offer down.", " he persuaded me to buy the product.")
    assert effect.label == 0


def test_winogrande_candidates_fill_the_blank() -> None:
    first = load_split("winogrande", "train")[0]
    sentence = "Ian volunteered to eat Dennis's menudo after already having a bowl because _ despised eating intestine."
    assert first.text == sentence
    assert first.prompt == ""
    assert first.candidates == (sentence.replace("_", "Ian"), sentence.replace("_", "Dennis"))
    assert first.label == 1


def test_unknown_task_and_split_are_user_errors() -> None:
    with pytest.raises(UserError, match=r"unknown task 'nope'; choose one of: sst2, rte, boolq, copa, winogrande"):
        get_task("nope")
    with pytest.raises(UserError, match="unknown task 'nope'"):
        load_split("nope", "train")
    with pytest.raises(UserError, match=r"task 'sst2' has no split 'train_m'; choose one of: train, eval"):
        load_split("sst2", "train_m")


def test_missing_file_names_its_path(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found") as caught:
        load_split("copa", "eval", data_dir=tmp_path)
    assert str(tmp_path / "copa" / "val.jsonl") in str(caught.value)


def test_user_data_dir_with_the_packaged_layout(tmp_path: Path) -> None:
    _write(tmp_path / "sst2" / "dev.tsv", "sentence\tlabel\na fine film \t1\n\ndull \t0\n")
    examples = load_split("sst2", "eval", data_dir=str(tmp_path))
    assert [(example.prompt, example.label) for example in examples] == [("a fine film It was", 1), ("dull It was", 0)]


def test_edited_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "sst2" / "dev.tsv"
    _write(path, "sentence\tlabel\ngood\t1\n")
    assert len(load_split("sst2", "eval", data_dir=tmp_path)) == 1
    _write(path, "sentence\tlabel\ngood\t1\nbad\t0\n")
    assert len(load_split("sst2", "eval", data_dir=tmp_path)) == 2


WINOGRANDE_ROW = '{"sentence": "_ won.", "option1": "A", "option2": "B", "answer": "1"}\n'
COPA_ROW = '{"premise": "P.", "choice1": "A.", "choice2": "B.", "question": "cause", "label": 0}'


@pytest.mark.parametrize(
    ("task", "file_name", "content", "line", "reason"),
    [
        ("copa", "val.jsonl", COPA_ROW + "\n{not json\n", 2, "not valid JSON"),
        (
            "copa",
            "val.jsonl",
            COPA_ROW + "\n\n" + COPA_ROW.replace('"premise"', '"text"') + "\n",
            3,
            "missing field 'premise'",
        ),
        ("copa", "val.jsonl", COPA_ROW.replace('"label": 0', '"label": 2') + "\n", 1, "unknown value 2"),
        ("copa", "val.jsonl", COPA_ROW.replace('"label": 0', '"label": true') + "\n", 1, "unknown value true"),
        ("copa", "val.jsonl", COPA_ROW.replace("cause", "reason") + "\n", 1, "field 'question'"),
        ("copa", "val.jsonl", "[1, 2]\n", 1, "expected a JSON object"),
        ("rte", "val.jsonl", '{"premise": "p", "hypothesis": "h", "label": "maybe"}\n', 1, 'unknown value "maybe"'),
        ("rte", "val.jsonl", '{"premise": 3, "hypothesis": "h", "label": "entailment"}\n', 1, "must be a string"),
        ("boolq", "dev.jsonl", '{"question": "q", "passage": "p"}\n', 1, "missing field 'answer'"),
        ("winogrande", "dev.jsonl", WINOGRANDE_ROW.replace("_", "no blank"), 1, "one '_' blank"),
        ("sst2", "dev.tsv", "sentence\tlabel\ngood\t1\nbad\t0\textra\n", 3, "expected 2 tab-separated fields"),
        ("sst2", "dev.tsv", "sentence\tlabel\ngood\t1\n \tpositive\n", 3, "field 'sentence' is empty"),
    ],
)
def test_malformed_row_names_file_and_line(
    tmp_path: Path, task: str, file_name: str, content: str, line: int, reason: str
) -> None:
    path = tmp_path / task / file_name
    _write(path, content)
    with pytest.raises(UserError) as caught:
        load_split(task, "eval", data_dir=tmp_path)
    message = str(caught.value)
    assert f"{path}, line {line}:" in message
    assert reason in message


def test_sst2_train_loads_fast_and_is_cached(tmp_path: Path) -> None:
    # A copy has a path of its own, so this measures a cold parse whatever ran before.
    copy = tmp_path / "sst2" / "train.tsv"
    copy.parent.mkdir()
    shutil.copyfile(PACKAGED_DATA_DIR / "sst2" / "train.tsv", copy)
    start = time.perf_counter()
    first = load_split("sst2", "train", data_dir=tmp_path)
    assert time.perf_counter() - start < 1.5
    start = time.perf_counter()
    second = load_split("sst2", "train", data_dir=tmp_path)
    assert time.perf_counter() - start < 0.05
    assert first == second and first is not second


def test_few_shot_takes_exactly_k_per_class() -> None:
    for task in ("sst2", "rte", "boolq"):
        shots = few_shot(load_split(task, "train"), 8, seed=13)
        assert Counter(example.label for example in shots) == {0: 8, 1: 8}
        assert len({id(example) for example in shots}) == 16


def test_few_shot_takes_k_in_total_for_multiple_choice() -> None:
    examples = load_split("copa", "train")
    shots = few_shot(examples, 10, seed=0)
    assert len(shots) == 10 and len({id(example) for example in shots}) == 10
    # MeZO's `sample_subset`: np.random.seed(seed); np.random.permutation(len)[:num].
    np.random.seed(0)
    assert shots == [examples[i] for i in np.random.permutation(len(examples))[:10]]


def test_few_shot_is_deterministic_per_seed() -> None:
    for task in ("sst2", "winogrande"):
        examples = load_split(task, "train")
        assert few_shot(examples, 16, seed=42) == few_shot(examples, 16, seed=42)
        assert few_shot(examples, 16, seed=42) != few_shot(examples, 16, seed=43)


def test_few_shot_refuses_more_than_a_class_holds() -> None:
    boolq = load_split("boolq", "train")  # 14 false, 18 true
    assert len(few_shot(boolq, 14, seed=1)) == 28
    with pytest.raises(UserError, match=r"label 0 \('No'\) has 14"):
        few_shot(boolq, 15, seed=1)
    with pytest.raises(UserError, match="only 400"):
        few_shot(load_split("copa", "train"), 401, seed=1)
    with pytest.raises(UserError, match="at least 1"):
        few_shot(boolq, 0, seed=1)


def test_subsample_keeps_file_order() -> None:
    examples = load_split("rte", "eval")
    assert subsample(examples, None, seed=0) == examples
    assert subsample(examples, 10_000, seed=0) == examples
    picked = subsample(examples, 50, seed=0)
    positions = [next(i for i, example in enumerate(examples) if example is chosen) for chosen in picked]
    assert len(set(positions)) == 50 and positions == sorted(positions)
    assert picked == subsample(examples, 50, seed=0)
    assert picked != subsample(examples, 50, seed=1)
    with pytest.raises(UserError):
        subsample(examples, 0, seed=0)
    with pytest.raises(UserError, match="seed"):
        subsample(examples, 5, seed=-1)


def test_returned_lists_do_not_share_the_cache() -> None:
    examples = load_split("copa", "eval")
    examples.clear()
    assert len(load_split("copa", "eval")) == 100


def _pair(example: Example) -> tuple[str, str]:
    assert isinstance(example.text, tuple)
    return example.text


def _write(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")


def test_every_named_template_renders_every_example_of_its_task() -> None:
    for task, templates in TEMPLATES.items():
        spec = get_task(task)
        examples = load_split(task, "eval")[:20]
        for name, template in templates.items():
            for example in examples:
                prompt, candidates = template.render(example)
                assert len(candidates) == len(example.candidates), (task, name)
                if name == MEZO:
                    assert (prompt, candidates) == (example.prompt, example.candidates)
            assert prompt_template(spec, name) is template


def test_default_template_is_the_first_and_mezo_is_always_there() -> None:
    for task in TASKS:
        assert prompt_template(get_task(task)).name == next(iter(TEMPLATES[task]))
        assert prompt_template(get_task(task), "mezo").name == "mezo"


def test_a_template_of_ones_own_renders_with_spaced_label_words() -> None:
    template = prompt_template(get_task("sst2"), "Review: {sentence}\nSentiment:", ("negative", "positive"))
    example = load_split("sst2", "eval")[0]
    prompt, candidates = template.render(example)
    assert prompt == f"Review: {example.text}\nSentiment:"
    assert candidates == (" negative", " positive")
    newline = prompt_template(get_task("sst2"), "Review: {sentence}\nSentiment:\n", ("negative", "positive"))
    assert newline.render(example)[1] == ("negative", "positive")


@pytest.mark.parametrize(
    ("task", "prompt", "words", "calibration", "message"),
    [
        ("sst2", "Review: {text}", ("a", "b"), "auto", "unknown fields text; sst2's fields are {sentence}"),
        ("sst2", "Review: {}", ("a", "b"), "auto", "has no slot for the input"),
        ("sst2", "{sentence} It was", (), "auto", "needs its label words"),
        ("sst2", "{sentence} It was", ("bad",), "auto", "needs 2 label words"),
        ("sst2", "{sentence} It was", ("bad", " "), "auto", "must not be empty or blank"),
        ("sst2", "{sentence", ("a", "b"), "auto", "not a valid format string"),
        ("sst2", "nonsense", (), "auto", "has no prompt template 'nonsense'"),
        ("copa", "mezo", (), "centred", "multiple-choice task"),
        ("sst2", "mezo", (), "sometimes", "unknown calibration"),
    ],
)
def test_bad_templates_are_one_line_user_errors(task, prompt, words, calibration, message) -> None:
    with pytest.raises(UserError, match=re.escape(message)):
        prompt_template(get_task(task), prompt, words, calibration)
