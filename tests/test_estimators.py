"""Each estimator against autograd on a tiny LoRA model: unbiasedness, exactness, restores."""

import math

import pytest
import torch

from edge_runtime.estimators import EstimatorSettings, NonFiniteLoss, build_method
from edge_runtime.estimators.base import DenseEstimate, SeedScalarEstimate
from edge_runtime.estimators.forward_grad import ForwardGrad
from edge_runtime.estimators.perturbation import direction
from edge_runtime.estimators.update_rules import Adam, Momentum
from edge_runtime.estimators.zo import TwoPointZO


def true_gradient(objective, batch) -> torch.Tensor:
    params = list(objective.params.values())
    with torch.enable_grad():
        grads = torch.autograd.grad(objective.loss(batch), params)
    return torch.cat([g.flatten() for g in grads])


def mean_estimate(estimator, objective, batch, n: int) -> torch.Tensor:
    total = None
    for seed in range(n):
        estimate = estimator.estimate(objective, batch, seed)
        flat = torch.cat([g.flatten() for _, _, g in estimate.gradients(objective.params)])
        total = flat if total is None else total + flat
    return total / n


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


def test_tiny_problem_is_not_trivial(tiny_llama_objective):
    objective, batch, _ = tiny_llama_objective
    dims = sum(p.numel() for p in objective.params.values())
    assert 200 <= dims <= 5000
    assert true_gradient(objective, batch).abs().min() >= 0  # all finite
    assert true_gradient(objective, batch).norm() > 0


def ideal_estimate(objective, batch, seeds, sign: bool) -> torch.Tensor:
    """mean_i f(grad . z_i) z_i with the exact gradient: unbiased by construction."""
    grad = true_gradient(objective, batch)
    total = torch.zeros_like(grad)
    for seed in seeds:
        z = torch.cat([direction(seed, n, p).flatten() for n, p in objective.params.items()])
        projected = grad @ z
        total += (torch.sign(projected) if sign else projected) * z
    return total / len(seeds)


@pytest.mark.parametrize("sign", [False, True])
def test_two_point_zo_equals_the_ideal_estimator_on_the_same_directions(tiny_llama_objective, sign):
    """Perturbation and update use the same z: the estimate matches exact-derivative estimates."""
    objective, batch, _ = tiny_llama_objective
    estimator = TwoPointZO(mu=1e-3, queries=4, sign=sign)
    estimate = estimator.estimate(objective, batch, seed=3)
    flat = torch.cat([g.flatten() for _, _, g in estimate.gradients(objective.params)])
    assert cosine(flat, ideal_estimate(objective, batch, estimate.seeds, sign)) > 0.99


# For d dimensions and n Gaussian directions the mean estimate's cosine with the true gradient is
# about sqrt(n / (n + d)) (sqrt(600/1496) = 0.63 here; with sign(g) the signal shrinks by
# sqrt(2/pi), giving about 0.55). A biased or desynchronised estimator stays near 0.
@pytest.mark.parametrize("sign, bound", [(False, 0.5), (True, 0.42)])
def test_two_point_zo_expectation_matches_gradient(tiny_llama_objective, sign, bound):
    objective, batch, _ = tiny_llama_objective
    estimated = mean_estimate(TwoPointZO(mu=1e-3, queries=1, sign=sign), objective, batch, 600)
    assert cosine(estimated, true_gradient(objective, batch)) > bound


def test_forward_grad_expectation_matches_gradient(tiny_llama_objective):
    objective, batch, _ = tiny_llama_objective
    estimated = mean_estimate(ForwardGrad(queries=1, fallback_mu=1e-3), objective, batch, 600)
    assert cosine(estimated, true_gradient(objective, batch)) > 0.5


def test_forward_grad_directional_derivative_is_exact(tiny_llama_objective):
    objective, batch, _ = tiny_llama_objective
    grad = true_gradient(objective, batch)
    estimator = ForwardGrad(queries=1, fallback_mu=1e-3)
    for seed in (1, 2, 3):
        tangent = torch.cat([direction(seed, n, p).flatten() for n, p in objective.params.items()])
        loss, derivative = estimator.directional_derivative(objective, batch, seed)
        assert derivative == pytest.approx(float(grad @ tangent), rel=1e-4, abs=1e-6)
        assert loss == pytest.approx(objective.loss(batch).item(), rel=1e-6)


def test_two_point_difference_approaches_the_exact_derivative(tiny_llama_objective):
    objective, batch, _ = tiny_llama_objective
    _, exact = ForwardGrad(queries=1, fallback_mu=1e-3).directional_derivative(objective, batch, 7)
    _, approx = TwoPointZO(mu=1e-3, queries=1).directional_derivative(objective, batch, 7)
    assert approx == pytest.approx(exact, rel=1e-2, abs=1e-4)


@pytest.mark.parametrize(
    "method",
    [
        "zo-sgd",
        "zo-sgd-sign",
        "zo-sgd-mmt",
        "zo-sgd-cons",
        "zo-adam",
        "zo-sgd-block",
        "zo-sgd-sparse",
        "zo-fo-hybrid",
        "forward-grad",
    ],
)
def test_snapshot_restore_is_bit_exact_with_zero_lr(tiny_llama_objective, method):
    objective, batch, _ = tiny_llama_objective
    before = {n: p.detach().clone() for n, p in objective.params.items()}
    build_method(method, EstimatorSettings(queries=2)).step(objective, batch, lr=0.0, seed=5)
    for name, p in objective.params.items():
        assert torch.equal(p, before[name]), name


def test_inplace_restore_is_within_rounding(tiny_llama_objective):
    """MeZO's +mu, -2mu, +mu cycle: fp32 rounding leaves at most a few ulps, never a drift."""
    objective, batch, _ = tiny_llama_objective
    before = {n: p.detach().clone() for n, p in objective.params.items()}
    method = build_method("zo-sgd", EstimatorSettings(zo_restore="inplace"))
    for seed in range(10):
        method.step(objective, batch, lr=0.0, seed=seed)
    for name, p in objective.params.items():
        ulp = torch.finfo(torch.float32).eps * before[name].abs().max().clamp(min=1e-3)
        assert (p - before[name]).abs().max() <= 8 * ulp, name


def test_directions_do_not_depend_on_which_parameters_are_present(tiny_llama_objective):
    objective, _, _ = tiny_llama_objective
    estimate = SeedScalarEstimate(0.0, 2, seeds=[11, 12], scalars=[0.5, -2.0])
    full = {n: g for n, _, g in estimate.gradients(objective.params)}
    last = dict(list(objective.params.items())[-2:])
    for name, _, grad in estimate.gradients(last):
        assert torch.equal(grad, full[name])


def test_conservative_step_never_raises_the_batch_loss(tiny_llama_objective):
    objective, batch, _ = tiny_llama_objective
    method = build_method("zo-sgd-cons", EstimatorSettings())
    for seed in range(20):
        before = objective.loss(batch).item()
        result = method.step(objective, batch, lr=0.05, seed=seed)
        assert result.forward_passes == 5
        assert objective.loss(batch).item() <= before + 1e-7


def test_non_finite_loss_raises_before_any_update(tiny_llama_objective):
    objective, batch, _ = tiny_llama_objective
    name, p = next(iter(objective.params.items()))
    with torch.no_grad():
        p[0, 0] = math.nan
    before = {n: q.detach().clone() for n, q in objective.params.items()}
    for method in ("zo-sgd", "forward-grad", "fo-sgd"):
        with pytest.raises(NonFiniteLoss):
            build_method(method, EstimatorSettings()).step(objective, batch, lr=1.0, seed=0)
        for n, q in objective.params.items():
            torch.testing.assert_close(q, before[n], rtol=0, atol=0, equal_nan=True)


def test_forward_grad_falls_back_with_a_warning_when_attention_lacks_forward_ad():
    from edge_runtime.heads import head_for
    from edge_runtime.models import apply_lora, load_model
    from edge_runtime.objective import Objective
    from edge_runtime.tasks import load_split

    loaded = load_model("tiny-llama", seed=0, attn_implementation="sdpa")
    objective = Objective(
        apply_lora(loaded, r=2, alpha=4), head_for("causal_lm", loaded.tokenizer, "classification", 32)
    )
    batch = objective.head.encode(load_split("sst2", "train")[:4])
    estimator = ForwardGrad(queries=1, fallback_mu=1e-3)
    with pytest.warns(RuntimeWarning, match="falls back to two-point"):
        estimate = estimator.estimate(objective, batch, seed=0)
    assert estimate.forward_passes == 2 and math.isfinite(estimate.scalars[0])


def _dense(params, grads):
    for p, g in zip(params.values(), grads):
        p.grad = g.clone()
    return DenseEstimate(0.0, 1)


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (lambda: Adam(0.9, 0.999, 1e-8), lambda ps: torch.optim.Adam(ps, lr=0.01)),
        (lambda: Momentum(0.9), lambda ps: torch.optim.SGD(ps, lr=0.01, momentum=0.9)),
    ],
)
def test_update_rules_match_torch_optim(ours, theirs):
    gen = torch.Generator().manual_seed(0)
    a = {
        "w": torch.nn.Parameter(torch.randn(5, 3, generator=gen)),
        "b": torch.nn.Parameter(torch.randn(3, generator=gen)),
    }
    b = {n: torch.nn.Parameter(p.detach().clone()) for n, p in a.items()}
    rule, reference = ours(), theirs(list(b.values()))
    for _ in range(5):
        grads = [torch.randn(p.shape, generator=gen) for p in a.values()]
        rule.apply(a, _dense(a, grads), lr=0.01)
        _dense(b, grads)
        reference.step()
    for n in a:
        torch.testing.assert_close(a[n], b[n], rtol=1e-6, atol=1e-7)
