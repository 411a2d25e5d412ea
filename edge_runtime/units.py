"""Byte sizes as people write them ("1.2GB", "512MiB") and as we print them."""

from __future__ import annotations

import re

from edge_runtime.errors import UserError

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_bytes(text: str | int) -> int:
    """Decimal units are powers of 10 (GB = 10^9), binary ones powers of 2 (GiB = 2^30)."""
    if isinstance(text, int) and not isinstance(text, bool):
        value, unit = float(text), ""
    else:
        found = _SIZE.match(str(text))
        if not found or found.group(2).lower() not in _UNITS:
            raise UserError(f"cannot read {text!r} as a size; write e.g. 1.2GB, 512MB, 8GiB or a number of bytes")
        value, unit = float(found.group(1)), found.group(2).lower()
    size = int(value * _UNITS[unit])
    if size <= 0:
        raise UserError(f"a size must be positive, got {text!r}")
    return size


def format_bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"
