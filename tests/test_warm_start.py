"""Forward-only warm starts: pooling as the encoder was trained, heads solved from statistics that
add up exactly, calibration applied the same way on every backend, and training that goes on from there."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_runtime.config import build_config
from edge_runtime.heads import head_for
from edge_runtime.models import load_model
from edge_runtime.models.pooled_classifier import Pooling
from edge_runtime.models.precision import prepare_model
from edge_runtime.objective import Objective
from edge_runtime.tasks import get_task, load_split
from edge_runtime.tasks.registry import PACKAGED_DATA_DIR
from edge_runtime.training.config import TrainConfig
from edge_runtime.training.trainer import build_run, fit, warm_start
from edge_runtime.warm_start import FeatureStatistics, StatisticsError, fit_head
from edge_runtime.warm_start.forward import embeddings, feature_statistics
from edge_runtime.warm_start.linear_head import MIN_TEMPERATURE


def test_minilm_embeddings_are_sentence_transformers_own():
    from sentence_transformers import SentenceTransformer

    from edge_runtime.models.minilm import minilm_folder

    loaded = load_model("minilm")
    assert loaded.model.pooling == Pooling(mode="mean", normalize=True)
    objective = Objective(prepare_model(loaded), head_for("encoder", loaded.tokenizer, "classification", 128))
    examples = load_split("sst2", "eval")[:6]  # sentences of different lengths: padding must not count
    ours = embeddings(objective, objective.head.encode(examples))
    theirs = SentenceTransformer(str(minilm_folder()), device="cpu").encode(
        [ex.text for ex in examples], convert_to_tensor=True
    )
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


def _separable(n: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    features = rng.standard_normal((n, width)) + 3.0 * labels[:, None] * np.eye(width)[0]
    return features, labels


def test_statistics_add_up_exactly_across_batches_and_devices():
    features, labels = _separable(200, 8)
    whole = FeatureStatistics.empty(2, 8)
    whole.add(features, labels)
    devices = []
    for part in np.array_split(np.arange(200), 3):  # devices see different shares, in several batches
        stats = FeatureStatistics.empty(2, 8)
        for batch in np.array_split(part, 4):
            stats.add(features[batch], labels[batch])
        devices.append(stats)
    merged = devices[0].merged(devices[1]).merged(devices[2])
    for got, want in zip(merged.fold(), whole.fold()):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9)
    assert merged.examples == 200


@pytest.mark.parametrize("solver", ["centroids", "ridge"])
def test_a_solved_head_separates_unseen_examples_at_a_sensible_temperature(solver):
    features, labels = _separable(400, 8)
    stats = FeatureStatistics.empty(2, 8)
    stats.add(features[:300], labels[:300])
    head = fit_head(stats, solver)
    logits = head.temperature * (features[300:] @ head.weight.T + head.bias)
    assert (logits.argmax(1) == labels[300:]).mean() > 0.85
    assert np.sqrt((head.weight**2).sum(1).mean()) == pytest.approx(1.0)  # the scale is the temperature alone

    # The cross-fitted temperature is close to the best one for unseen examples.
    def loss(t):
        scaled = t * (features[300:] @ head.weight.T + head.bias)
        return np.mean(np.logaddexp.reduce(scaled, axis=1) - scaled[np.arange(100), labels[300:]])

    best = min(np.logspace(-2, 3, 200), key=loss)
    assert loss(head.temperature) < loss(best) + 0.05


def test_a_head_that_separates_nothing_keeps_a_logit_scale_training_can_move():
    # Labels independent of the features: cross-fitting alone would pick a near-zero temperature,
    # and every gradient through the head would shrink with it.
    rng = np.random.default_rng(0)
    stats = FeatureStatistics.empty(2, 8)
    stats.add(rng.standard_normal((400, 8)), rng.integers(0, 2, 400))
    head = fit_head(stats, "centroids")
    assert head.temperature == pytest.approx(MIN_TEMPERATURE)


def test_a_head_without_examples_of_a_class_in_a_fold_is_refused():
    features, labels = _separable(40, 4)
    stats = FeatureStatistics.empty(2, 4)
    stats.add(features[labels == 0], labels[labels == 0])
    with pytest.raises(StatisticsError, match="class 1 has none"):
        fit_head(stats, "centroids")


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t.update(counts=-t["counts"]),
        lambda t: t.update(counts=t["counts"] + 0.5),
        lambda t: t.update(sums=t["sums"] * 100),
        lambda t: t.update(gram=np.full_like(t["gram"], np.nan)),
        lambda t: t.update(gram=t["gram"][:, :3]),
        lambda t: t.pop("gram"),
    ],
)
def test_statistics_that_no_honest_device_could_send_are_refused(tamper):
    features, labels = _separable(50, 4)
    stats = FeatureStatistics.empty(2, 4)
    stats.add(features, labels)
    tensors = stats.as_tensors()
    FeatureStatistics.from_tensors(tensors, 2, 4, max_examples=50)  # as sent: accepted
    with pytest.raises(StatisticsError):
        FeatureStatistics.from_tensors(tensors, 2, 4, max_examples=49)  # more examples than the device has
    tamper(tensors)
    with pytest.raises(StatisticsError):
        FeatureStatistics.from_tensors(tensors, 2, 4, max_examples=50)


def _minilm_config(tmp_path, **overrides) -> TrainConfig:
    base = dict(
        model="minilm",
        task="sst2",
        k_shot=32,
        eval_examples=96,
        batch_size=16,
        max_length=48,
        eval_batch_size=32,
        progress=False,
        out_dir=str(tmp_path / "run"),
    )
    return build_config(TrainConfig, base, overrides)


def test_minilm_warm_starts_give_a_real_head_from_forward_passes_only(tmp_path):
    accuracy = {}
    for kind in ("none", "zero-shot", "centroids", "ridge"):
        run = build_run(_minilm_config(tmp_path / kind, warm_start=kind, steps=1, k_shot=64, eval_examples=200))
        start = warm_start(run)
        assert start.kind == kind
        from edge_runtime.local.evaluation import evaluate

        accuracy[kind] = evaluate(run.objective, run.eval, 32, run.device).accuracy
    # A random head is a coin; every warm start reads the sentiment (SST-2 dev, 96 examples).
    assert accuracy["none"] < 0.65
    assert min(accuracy["zero-shot"], accuracy["centroids"], accuracy["ridge"]) > 0.65, accuracy


def test_a_warm_started_head_plus_a_few_zo_steps_lowers_the_dev_loss(tmp_path):
    """The whole forward-only path on a small fixture whose training and dev sets are the same 48
    reviews: a zero-shot head, then ZO steps on the adapter alone."""
    fixture = tmp_path / "data" / "sst2"
    fixture.mkdir(parents=True)
    rows = (PACKAGED_DATA_DIR / "sst2" / "dev.tsv").read_text().splitlines()[:49]  # header + 48 reviews
    for name in ("train.tsv", "dev.tsv"):
        (fixture / name).write_text("\n".join(rows) + "\n")
    summary = fit(
        build_run(
            _minilm_config(
                tmp_path,
                data_dir=str(tmp_path / "data"),
                k_shot=0,
                eval_examples=None,
                warm_start="zero-shot",
                method="zo-sgd",
                steps=40,
                lr=3e-3,
                train_head=False,
            )
        )
    )
    assert summary["warm_start"]["kind"] == "zero-shot"
    assert summary["eval_accuracy_before"] > 0.65
    assert summary["eval_loss_after"] < summary["eval_loss_before"] - 0.002, summary


def test_multiple_choice_statistics_count_every_candidate_pair():
    loaded = load_model("tiny-bert", num_labels=1)
    objective = Objective(prepare_model(loaded), head_for("encoder", loaded.tokenizer, "multiple_choice", 64))
    examples = load_split("copa", "train")[:10]
    stats = feature_statistics(objective, examples, 4, torch.device("cpu"))
    counts = stats.fold()[0]
    assert counts.tolist() == [10, 10]  # one right and one wrong pair per example
    head = fit_head(stats, "centroids", candidates=2)
    assert head.weight.shape == (1, stats.width)


def test_calibration_offsets_shift_scores_identically_on_torch_and_onnx_runtime(exported_graph):
    """The same constants, the same scores: an ORT device reads them from its task, as torch does."""
    from edge_runtime.ort.session import GraphObjective

    folder = exported_graph("tiny-llama")
    graph = GraphObjective(folder)
    loaded = load_model("tiny-llama", num_labels=2)
    model = prepare_model(loaded)
    template = graph.encoding.template
    head = head_for("causal_lm", loaded.tokenizer, "classification", 64, template)
    objective = Objective(model, head)
    graph.load({name: p.detach().numpy() for name, p in objective.params.items()})
    examples = load_split("sst2", "eval")[:5]
    constants = {"score_offsets": [0.7, -0.7]}
    head.load_constants(constants)
    graph.encoding.constants = constants
    with torch.no_grad():
        torch_scores = objective.scores(head.encode(examples)).numpy()
    ort_scores = graph.scores(graph.encoding.encode(examples, 64))
    np.testing.assert_allclose(ort_scores, torch_scores, rtol=1e-4, atol=1e-4)
    head.load_constants({})
    with torch.no_grad():
        raw = objective.scores(head.encode(examples)).numpy()
    np.testing.assert_allclose(torch_scores, raw - np.array([0.7, -0.7]), rtol=1e-5, atol=1e-5)


def test_encoder_logit_scale_applies_identically_on_torch_and_onnx_runtime(exported_graph):
    from edge_runtime.ort.session import GraphObjective

    folder = exported_graph("tiny-bert")
    graph = GraphObjective(folder)
    loaded = load_model("tiny-bert", num_labels=2)
    objective = Objective(prepare_model(loaded), head_for("encoder", loaded.tokenizer, "classification", 64))
    graph.load({name: p.detach().numpy() for name, p in objective.params.items()})
    objective.head.load_constants({"logit_scale": 37.0})
    graph.encoding.constants = {"logit_scale": 37.0}
    examples = load_split("sst2", "eval")[:5]
    with torch.no_grad():
        torch_scores = objective.scores(objective.head.encode(examples)).numpy()
        torch_features = embeddings(objective, objective.head.encode(examples)).numpy()
    batch = graph.encoding.encode(examples, 64)
    np.testing.assert_allclose(graph.scores(batch), torch_scores, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(graph.features(batch), torch_features, rtol=1e-4, atol=1e-4)


def test_task_spec_descriptions_exist_for_the_zero_shot_head():
    assert len(get_task("sst2").label_descriptions) == 2
    with pytest.raises(Exception, match="describing each class"):
        from edge_runtime.warm_start.forward import resolve_encoder_warm_start, warm_start_encoder

        loaded = load_model("tiny-bert")
        objective = Objective(prepare_model(loaded), head_for("encoder", loaded.tokenizer, "classification", 64))
        kind = resolve_encoder_warm_start("zero-shot", get_task("rte"), 0)
        warm_start_encoder(objective, get_task("rte"), kind, [], 8, torch.device("cpu"))


@pytest.mark.parametrize("model_name", ["tiny-bert", "tiny-llama"])
def test_an_onnx_runtime_device_sends_the_statistics_a_torch_device_sends(exported_graph, model_name):
    from edge_runtime.agent.ort_backend import OrtModel
    from edge_runtime.local.torch_model import TorchModel
    from edge_runtime.protocol import pb
    from edge_runtime.spec import AdapterSpec
    from tests.federation import wire_task

    ort_model = OrtModel(exported_graph(model_name))
    torch_model = TorchModel(AdapterSpec(model_name, "sst2", max_length=64))
    ort_model.load_state(torch_model.state())
    task = wire_task(torch_model.spec, work=pb.Task.STATISTICS, statistics_examples=40)
    examples = load_split("sst2", "train")[:50]
    ours, theirs = ort_model.statistics(task, examples), torch_model.statistics(task, examples)
    assert ours.examples == theirs.examples == 40
    assert set(ours.deltas) == set(theirs.deltas)
    for name in ours.deltas:
        np.testing.assert_allclose(ours.deltas[name], theirs.deltas[name], rtol=1e-3, atol=1e-3)
