"""The training methods by name: each is a gradient estimator paired with an update rule."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from edge_runtime.errors import UserError
from edge_runtime.estimators.backprop import Backprop
from edge_runtime.estimators.base import EstimateThenUpdate, Method
from edge_runtime.estimators.conservative import Conservative
from edge_runtime.estimators.forward_grad import ForwardGrad
from edge_runtime.estimators.hybrid import HybridZOFO
from edge_runtime.estimators.subspaces import Blocks, sparse
from edge_runtime.estimators.update_rules import SGD, Adam, Momentum
from edge_runtime.estimators.zo import TwoPointZO
from edge_runtime.pass_batching import default_perturbations_per_pass
from edge_runtime.spec import EstimatorSettings


@dataclass(frozen=True)
class MethodInfo:
    """A training method as the registry lists it: how to build it from the settings, its default learning
    rate, and what the memory model, the FLOP count and the planners need to know of it unbuilt."""

    name: str
    default_lr: float
    summary: str
    build: Callable[[EstimatorSettings], Method]
    # What the memory model needs (edge_runtime.memory.model): the kind of pass a step runs, and
    # how many copies of the trainable tensors the method keeps between steps besides the
    # parameters themselves (momentum, Adam moments, its own snapshot). Two-point ZO's restore
    # snapshot and the tangents/gradients made during a pass are counted by the memory model.
    pass_kind: Literal["forward", "jvp", "backward"]
    state_copies: int = 0
    # Forward passes a step runs besides its estimate's (ZO-SGD-Cons evaluates three candidates);
    # the step's FLOPs (edge_runtime.costs.flops) count them.
    extra_forward_passes: int = 0
    # Backprop through a small part of the model besides the step's main passes (hybrid ZO/FO).
    backprop_part: bool = False
    # Backprop that recomputes each transformer block's activations in the backward pass.
    recomputes_blocks: bool = False
    # The same method with blocks recomputed: where a memory planner looks first when this one
    # does not fit.
    recomputing_twin: str | None = None

    def check_adapter(self, adapter: str) -> None:
        """Refuse, as a UserError, an adapter kind this method cannot train."""
        # Prefix tuning hands its prefixes to attention as a key/value cache, which each layer
        # extends in place: recomputing a layer would extend it twice.
        if self.recomputes_blocks and adapter == "prefix":
            raise UserError(
                f"{self.name} recomputes each layer, which prefix tuning's key/value prefixes do not "
                "survive; train prefixes with fo-sgd or fo-adam, or use adapter lora or full"
            )

    @property
    def forward_only(self) -> bool:
        """Whether a step runs no backward pass at all: neither backprop nor a hybrid's backprop part."""
        return self.pass_kind != "backward" and not self.backprop_part

    def estimate_passes(self, queries: int) -> int:
        """Passes of the step's own kind: 2q forwards for two-point ZO, q jvps for Forward-Grad, one
        forward (with its backward) for backprop."""
        return {"forward": 2 * queries, "jvp": queries, "backward": 1}[self.pass_kind]

    def passes_per_step(self, queries: int) -> int:
        """Forward passes (function queries, as ZO-Bench counts them) of one step, extras included."""
        return self.estimate_passes(queries) + self.extra_forward_passes


def _zo(s: EstimatorSettings, sign: bool = False, subspace=None) -> TwoPointZO:
    return TwoPointZO(mu=s.mu, queries=s.queries, restore=s.zo_restore, sign=sign, clip=s.grad_clip, subspace=subspace)


def _adam(s: EstimatorSettings) -> Adam:
    return Adam(s.beta1, s.beta2, s.eps)


METHODS: dict[str, MethodInfo] = {
    m.name: m
    for m in (
        MethodInfo("zo-sgd", 1e-3, "MeZO: two-point ZO + SGD", lambda s: EstimateThenUpdate(_zo(s), SGD()), "forward"),
        MethodInfo(
            "zo-sgd-sign",
            1e-4,
            "two-point ZO, SGD on sign(g) z",
            lambda s: EstimateThenUpdate(_zo(s, sign=True), SGD()),
            "forward",
        ),
        MethodInfo(
            "zo-sgd-mmt",
            1e-4,
            "two-point ZO + heavy-ball momentum",
            lambda s: EstimateThenUpdate(_zo(s), Momentum(s.momentum)),
            "forward",
            state_copies=1,
        ),
        MethodInfo(
            "zo-sgd-cons",
            1e-3,
            "two-point ZO + SGD, step kept only if the loss does not rise",
            lambda s: Conservative(_zo(s)),
            "forward",
            state_copies=1,
            extra_forward_passes=3,
        ),
        MethodInfo(
            "zo-adam",
            1e-3,
            "two-point ZO + Adam",
            lambda s: EstimateThenUpdate(_zo(s), _adam(s)),
            "forward",
            state_copies=2,
        ),
        MethodInfo(
            "zo-sgd-block",
            1e-3,
            "block-wise ZO (one layer or tensor per query) + SGD",
            lambda s: EstimateThenUpdate(_zo(s, subspace=Blocks(s.zo_blocks)), SGD()),
            "forward",
        ),
        MethodInfo(
            "zo-sgd-sparse",
            1e-3,
            "sparse ZO (a fraction of coordinates per query, Sparse MeZO) + SGD",
            lambda s: EstimateThenUpdate(_zo(s, subspace=sparse(s.zo_density, s.zo_sparse_selection)), SGD()),
            "forward",
        ),
        # The backprop part's activations and gradient are small beside the forward pass's, so the
        # memory model counts a forward step; its extra pass is the backprop part's forward.
        MethodInfo(
            "zo-fo-hybrid",
            1e-3,
            "backprop for the head (or last layer), two-point ZO for the rest + SGD",
            lambda s: EstimateThenUpdate(HybridZOFO(_zo(s)), SGD()),
            "forward",
            extra_forward_passes=1,
            backprop_part=True,
        ),
        MethodInfo(
            "forward-grad",
            1e-3,
            "forward-mode AD (jvp) directional derivative + SGD",
            lambda s: EstimateThenUpdate(ForwardGrad(queries=s.queries, fallback_mu=s.mu, clip=s.grad_clip), SGD()),
            "jvp",
        ),
        MethodInfo(
            "fo-sgd",
            1e-2,
            "backprop + SGD (baseline)",
            lambda s: EstimateThenUpdate(Backprop(clip=s.grad_clip), SGD()),
            "backward",
            recomputing_twin="fo-sgd-ckpt",
        ),
        MethodInfo(
            "fo-adam",
            1e-3,
            "backprop + Adam (baseline)",
            lambda s: EstimateThenUpdate(Backprop(clip=s.grad_clip), _adam(s)),
            "backward",
            state_copies=2,
            recomputing_twin="fo-adam-ckpt",
        ),
        # The recomputation is one more forward pass of the blocks, counted as such in a step's FLOPs.
        MethodInfo(
            "fo-sgd-ckpt",
            1e-2,
            "backprop + SGD, block activations recomputed (checkpointing)",
            lambda s: EstimateThenUpdate(Backprop(clip=s.grad_clip, recompute=True), SGD()),
            "backward",
            extra_forward_passes=1,
            recomputes_blocks=True,
        ),
        MethodInfo(
            "fo-adam-ckpt",
            1e-3,
            "backprop + Adam, block activations recomputed (checkpointing)",
            lambda s: EstimateThenUpdate(Backprop(clip=s.grad_clip, recompute=True), _adam(s)),
            "backward",
            state_copies=2,
            extra_forward_passes=1,
            recomputes_blocks=True,
        ),
    )
}


def get_method(name: str) -> MethodInfo:
    """The method registered as `name`; an unknown name is a UserError that lists the known ones."""
    try:
        return METHODS[name]
    except KeyError:
        raise UserError(f"unknown method '{name}'; choose one of: {', '.join(METHODS)}") from None


def build_method(name: str, settings: EstimatorSettings) -> Method:
    """A new instance of method `name` reading `settings`, its optimizer state empty."""
    return get_method(name).build(settings)


def copies_per_pass(method: str, queries: int, device_type: str, tokens_per_pass: int, asked: int | None) -> int:
    """ZO's perturbed copies (Forward-Grad's tangents) per pass: as asked, else where batching pays on
    this device; 1 for backprop, which has none."""
    kind = get_method(method).pass_kind
    if kind == "backward":
        return 1
    return asked if asked is not None else default_perturbations_per_pass(kind, queries, device_type, tokens_per_pass)
