"""What a step reports (its loss, passes, and the seeds and scalars of its queries) and the rules
for those scalars: finite or the step failed, clipped, and for ZO-SGD-Sign reduced to a sign.

The PyTorch estimators (`edge_runtime.estimators`) and the numpy ones of the ONNX Runtime backend
(`edge_runtime.ort.methods`) both build on these, so the two cannot drift apart on what counts as a
failed step or on the scalar a device uploads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class StepResult:
    loss: float
    forward_passes: int
    # The (seed, scalar) pairs of this step when the method is seed-replayable, else empty.
    seeds: list[int] = field(default_factory=list)
    scalars: list[float] = field(default_factory=list)


class NonFiniteLoss(RuntimeError):
    """The loss or the estimate is NaN/Inf; no update was applied."""


def check_finite(loss: float, scalars: list[float] = ()) -> None:
    if not math.isfinite(loss) or not all(math.isfinite(s) for s in scalars):
        raise NonFiniteLoss(f"loss {loss}, projected gradients {list(scalars)}")


def clip_scalar(value: float, bound: float | None) -> float:
    return value if bound is None else max(-bound, min(bound, value))


def zo_scalar(g: float, *, clip: float | None, sign: bool) -> float:
    """The scalar a two-point query contributes: clipped, and for ZO-Bench's ZO-SGD-Sign its sign
    (of the scalar, not of g * z element-wise)."""
    g = clip_scalar(g, clip)
    return float((g > 0) - (g < 0)) if sign else g
