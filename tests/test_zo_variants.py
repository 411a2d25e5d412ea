"""ZO-Bench's variance-reduction plug-ins (block-wise, sparse, hybrid ZO/FO) on a tiny LoRA model:
each perturbs and updates exactly the coordinates it promises, and still points along the gradient."""

import pytest
import torch

from edge_runtime.estimators import EstimatorSettings, build_method
from edge_runtime.estimators.hybrid import HybridZOFO, backprop_part
from edge_runtime.estimators.subspaces import Blocks, MagnitudeSparse, RandomSparse
from edge_runtime.estimators.zo import TwoPointZO
from edge_runtime.seeded.blocks import block_of, chosen_block
from tests.test_estimators import cosine, true_gradient


def changed_coordinates(objective, batch, estimator, seed=3):
    """Which coordinates one SGD step along the estimator's estimate moves."""
    before = {n: p.detach().clone() for n, p in objective.params.items()}
    estimate = estimator.estimate(objective, batch, seed)
    with torch.no_grad():
        for _name, p, grad in estimate.gradients(objective.params):
            p.add_(grad, alpha=-1e-2)
    return estimate, {n: p.detach() != before[n] for n, p in objective.params.items()}


def test_block_wise_zo_moves_one_layer_per_query(tiny_llama_objective):
    objective, batch, _ = tiny_llama_objective
    subspace = Blocks("layer")
    estimate, moved = changed_coordinates(objective, batch, TwoPointZO(mu=1e-3, queries=1, subspace=subspace))
    chosen = chosen_block(subspace.blocks, estimate.seeds[0])
    assert len(subspace.blocks) == len({block_of(n, "layer") for n in objective.params}) >= 2
    for name, mask in moved.items():
        assert mask.any() == (block_of(name, "layer") == chosen), name
    # Over many queries every block is drawn.
    assert {chosen_block(subspace.blocks, seed) for seed in range(200)} == set(subspace.blocks)


def test_block_wise_zo_by_tensor_perturbs_a_single_tensor(tiny_llama_objective):
    objective, batch, _ = tiny_llama_objective
    _, moved = changed_coordinates(objective, batch, TwoPointZO(mu=1e-3, queries=1, subspace=Blocks("tensor")))
    assert sum(mask.any() for mask in moved.values()) == 1


def test_random_sparse_zo_perturbs_about_the_asked_fraction(tiny_llama_objective):
    objective, batch, _ = tiny_llama_objective
    _, moved = changed_coordinates(objective, batch, TwoPointZO(mu=1e-3, queries=1, subspace=RandomSparse(0.25)))
    fraction = sum(int(m.sum()) for m in moved.values()) / sum(m.numel() for m in moved.values())
    assert 0.18 < fraction < 0.32


def test_magnitude_sparse_zo_moves_only_the_smallest_weights(tiny_llama_objective):
    objective, batch, _ = tiny_llama_objective
    magnitudes = {n: p.detach().abs().clone() for n, p in objective.params.items()}
    _, moved = changed_coordinates(objective, batch, TwoPointZO(mu=1e-3, queries=1, subspace=MagnitudeSparse(0.25)))
    for name, mask in moved.items():
        assert mask.any(), name
        # Every moved weight is at most as large as every unmoved one (ties aside).
        assert magnitudes[name][mask].max() <= magnitudes[name][~mask].min() or (~mask).sum() == 0, name
        assert mask.float().mean() <= 0.3, name


@pytest.mark.parametrize("subspace", [Blocks("layer"), RandomSparse(0.5)], ids=["block", "sparse"])
def test_restricted_zo_still_points_along_the_gradient(tiny_llama_objective, subspace):
    """Restricting z to a subspace scales the expectation per coordinate but keeps it a descent direction."""
    objective, batch, _ = tiny_llama_objective
    estimator = TwoPointZO(mu=1e-3, queries=1, subspace=subspace)
    total = None
    for seed in range(400):
        estimate = estimator.estimate(objective, batch, seed)
        grads = dict((n, g) for n, _, g in estimate.gradients(objective.params))
        flat = torch.cat([grads.get(n, torch.zeros_like(p)).flatten() for n, p in objective.params.items()])
        total = flat if total is None else total + flat
    assert cosine(total, true_gradient(objective, batch)) > 0.4


def test_hybrid_backprops_the_last_layer_of_a_model_without_head(tiny_llama_objective):
    objective, batch, _ = tiny_llama_objective
    names = list(objective.params)
    part = backprop_part(names)
    assert part and all(block_of(n, "layer") == block_of(names[-1], "layer") for n in part) and len(part) < len(names)
    sizes = [p.numel() for p in objective.params.values()]
    exact = dict(zip(names, torch.split(true_gradient(objective, batch), sizes)))
    estimate = HybridZOFO(TwoPointZO(mu=1e-3, queries=1)).estimate(objective, batch, seed=4)
    assert estimate.forward_passes == 3
    gradients = {n: g for n, _, g in estimate.gradients(objective.params)}
    assert set(gradients) == set(names)
    for name in part:  # the backprop part's gradient is exact
        assert torch.allclose(gradients[name].flatten(), exact[name], rtol=1e-4, atol=1e-7), name
    # ...and the rest stayed trainable for the next step.
    assert all(p.requires_grad for p in objective.params.values())


def test_hybrid_backprops_an_encoders_head():
    from edge_runtime.heads import head_for
    from edge_runtime.models import apply_lora, load_model
    from edge_runtime.objective import Objective
    from edge_runtime.tasks import load_split

    loaded = load_model("tiny-bert", seed=0)
    objective = Objective(
        apply_lora(loaded, r=2, alpha=4), head_for(loaded.kind, loaded.tokenizer, "classification", 32)
    )
    part = backprop_part(list(objective.params))
    assert part and all("classifier" in n for n in part)
    batch = objective.head.encode(load_split("sst2", "train")[:4])
    before = {n: p.detach().clone() for n, p in objective.params.items()}
    build_method("zo-fo-hybrid", EstimatorSettings()).step(objective, batch, lr=1e-1, seed=0)
    assert all(not torch.equal(objective.params[n], before[n]) for n in part)


def test_hybrid_steps_lower_the_batch_loss(tiny_llama_objective):
    objective, batch, _ = tiny_llama_objective
    method = build_method("zo-fo-hybrid", EstimatorSettings(mu=1e-3))
    first = objective.loss(batch).item()
    for step in range(20):
        method.step(objective, batch, lr=5e-2, seed=step)
    assert objective.loss(batch).item() < first
