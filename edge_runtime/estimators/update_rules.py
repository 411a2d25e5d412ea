"""Parameter updates applied one parameter at a time, so only one gradient estimate is alive.

torch.optim would need every .grad filled at once, i.e. a full copy of the trainable weights,
which is exactly what MeZO-style training avoids. The formulas match torch.optim.SGD (no
momentum), ZO-Bench's ZO-SGD-MMT and torch.optim.Adam (tests compare them).
"""

from __future__ import annotations

import torch

from edge_runtime.estimators.base import Estimate, Params, UpdateRule


class SGD(UpdateRule):
    """p -= lr * g: torch.optim.SGD without momentum; no state."""

    @torch.no_grad()
    def apply(self, params: Params, estimate: Estimate, lr: float) -> None:
        """Move each parameter by -lr times its estimate, in place."""
        for _, p, grad in estimate.gradients(params):
            p.add_(grad, alpha=-lr)


class Momentum(UpdateRule):
    """m = beta * m + g; p -= lr * m. Stores one extra tensor per parameter."""

    def __init__(self, beta: float) -> None:
        self.beta = beta
        self.buffers: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def apply(self, params: Params, estimate: Estimate, lr: float) -> None:
        """Fold each estimate into its parameter's buffer (its first estimate starts the buffer), then move
        the parameter by -lr times the buffer, in place."""
        for name, p, grad in estimate.gradients(params):
            m = self.buffers.get(name)
            if m is None:
                m = self.buffers[name] = grad.clone()
            else:
                m.mul_(self.beta).add_(grad)
            p.add_(m, alpha=-lr)

    def state_dict(self):
        """The buffers, keyed `momentum.<parameter name>`."""
        return {f"momentum.{n}": t for n, t in self.buffers.items()}

    def load_state_dict(self, state):
        """Copies of the buffers state_dict saved; other keys are ignored."""
        self.buffers = {k.removeprefix("momentum."): v.clone() for k, v in state.items() if k.startswith("momentum.")}


class Adam(UpdateRule):
    """torch.optim.Adam's update, one parameter at a time: moments m and v per parameter (two extra tensors
    each), bias-corrected by the rule's step count `t`, which every apply advances."""

    def __init__(self, beta1: float, beta2: float, eps: float) -> None:
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.t = 0
        self.m: dict[str, torch.Tensor] = {}
        self.v: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def apply(self, params: Params, estimate: Estimate, lr: float) -> None:
        """One Adam step of every parameter the estimate yields, in place; a parameter's moments start at
        zero with its first estimate."""
        self.t += 1
        bias1 = 1 - self.beta1**self.t
        bias2_sqrt = (1 - self.beta2**self.t) ** 0.5
        for name, p, grad in estimate.gradients(params):
            m = self.m.setdefault(name, torch.zeros_like(grad))
            v = self.v.setdefault(name, torch.zeros_like(grad))
            m.lerp_(grad, 1 - self.beta1)
            v.mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
            denom = (v.sqrt() / bias2_sqrt).add_(self.eps)
            p.addcdiv_(m, denom, value=-lr / bias1)

    def state_dict(self):
        """The step count (`adam.t`) and the moments (`adam.m.<name>`, `adam.v.<name>`)."""
        state = {"adam.t": torch.tensor(self.t)}
        state.update({f"adam.m.{n}": t for n, t in self.m.items()})
        state.update({f"adam.v.{n}": t for n, t in self.v.items()})
        return state

    def load_state_dict(self, state):
        """Copies of what state_dict saved; without `adam.t` the step count starts again at 0."""
        self.t = int(state.get("adam.t", torch.tensor(0)))
        self.m = {k.removeprefix("adam.m."): v.clone() for k, v in state.items() if k.startswith("adam.m.")}
        self.v = {k.removeprefix("adam.v."): v.clone() for k, v in state.items() if k.startswith("adam.v.")}
