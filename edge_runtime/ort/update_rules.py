"""SGD, heavy-ball momentum and Adam on numpy arrays, in place, one parameter at a time.

The same formulas as `edge_runtime/estimators/update_rules.py` (torch), which tests check
against this module step for step; numpy cannot share torch's in-place tensor calls, so the
arithmetic is written once more here, and only here, for backends without torch.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

# (name, parameter, gradient estimate); the estimate is a fresh array the rule may overwrite.
Gradients = Iterator[tuple[str, np.ndarray, np.ndarray]]


class SGD:
    def apply(self, gradients: Gradients, lr: float) -> None:
        for _, p, grad in gradients:
            grad *= lr
            p -= grad


class Momentum:
    """m = beta * m + g; p -= lr * m. Stores one extra array per parameter."""

    def __init__(self, beta: float) -> None:
        self.beta = beta
        self.buffers: dict[str, np.ndarray] = {}

    def apply(self, gradients: Gradients, lr: float) -> None:
        for name, p, grad in gradients:
            m = self.buffers.get(name)
            if m is None:
                m = self.buffers[name] = grad.copy()
            else:
                m *= self.beta
                m += grad
            grad[...] = m
            grad *= lr
            p -= grad


class Adam:
    def __init__(self, beta1: float, beta2: float, eps: float) -> None:
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.t = 0
        self.m: dict[str, np.ndarray] = {}
        self.v: dict[str, np.ndarray] = {}

    def apply(self, gradients: Gradients, lr: float) -> None:
        self.t += 1
        bias1 = 1 - self.beta1**self.t
        bias2_sqrt = (1 - self.beta2**self.t) ** 0.5
        for name, p, grad in gradients:
            m = self.m.setdefault(name, np.zeros_like(grad))
            v = self.v.setdefault(name, np.zeros_like(grad))
            m += np.float32(1 - self.beta1) * (grad - m)
            v *= np.float32(self.beta2)
            v += np.float32(1 - self.beta2) * grad * grad
            denom = np.sqrt(v)
            denom /= np.float32(bias2_sqrt)
            denom += np.float32(self.eps)
            np.divide(m, denom, out=grad)
            grad *= np.float32(lr / bias1)
            p -= grad
