"""Seeds and random directions z(seed, parameter), identical on every backend and machine.

A direction is never stored, only regenerated: by the device that perturbs, by the same device
when it updates, and by a coordinator or another device that replays a (seed, scalar) upload.
Those may run PyTorch, ONNX Runtime without PyTorch, or another numpy, so directions are drawn
with numpy (PCG64, float32 normals) rather than torch's generator, and `FINGERPRINT` lets two
parties check that they draw the same numbers before they trust each other's seeds.

Each parameter gets its own generator, seeded from (step seed, parameter name). That keeps a
direction independent of the order in which parameters are visited and of which other
parameters exist (a device training one slice draws the same z as a server replaying it), and
rules out MeZO's classic bug of an unrelated random draw desynchronising perturbation and update.

This module imports numpy only: the torch-free device agent uses it as it is.
"""

from __future__ import annotations

import hashlib
import zlib

import numpy as np

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def parameter_seed(seed: int, name: str) -> int:
    return _splitmix64(seed ^ (zlib.crc32(name.encode()) << 32))


def query_seeds(step_seed: int, queries: int) -> list[int]:
    """Independent seeds for the q directions of one step, derived so a step can be replayed."""
    return [_splitmix64(step_seed * 1_000_003 + i) for i in range(queries)]


def step_seed(run_seed: int, step: int) -> int:
    """The seed of one training step: a resumed run draws the same directions it would have."""
    return _splitmix64((run_seed << 32) ^ step)


def normal(seed: int, name: str, shape: tuple[int, ...], out: np.ndarray | None = None) -> np.ndarray:
    """z ~ N(0, I) in float32, the direction of parameter `name` for `seed`; drawn into `out`
    (a float32 array of that shape) when given, so a caller can own the memory."""
    generator = np.random.Generator(np.random.PCG64(parameter_seed(seed, name)))
    return generator.standard_normal(shape, dtype=np.float32, out=out)


def _fingerprint() -> str:
    sample = normal(12345, "fingerprint", (4096,))
    return hashlib.sha256(sample.tobytes()).hexdigest()[:16]


# Two parties whose fingerprints differ would rebuild different updates from the same seeds.
FINGERPRINT = _fingerprint()
