"""Device profiles: one YAML per real device model, read into typed values and checked.

Every figure in a profile is ``{value: ..., source: "<where it was published, with its URL>"}``
or ``{value: ..., estimate: "<the reasoning, in one line>"}``, so nobody can take a guess for a
measurement. A bad profile is refused in one line naming the file and the field path. Values are
kept in SI units (bytes, FLOP/s, bit/s, seconds) so the virtual clock needs no conversions.

The YAMLs live in the repository's top-level ``device_profiles/``; ``edge_runtime/devices/device_profiles``
is a committed symlink to it, listed as package data, so a regular install copies the files into
the package (setuptools follows the link) and an editable install reads the live folder: no copy
step that could go stale.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from edge_runtime.errors import UserError
from edge_runtime.spec import PRECISIONS
from edge_runtime.units import parse_bytes

BACKENDS = ("torch", "onnxruntime")
KINDS = ("phone", "single-board", "jetson", "laptop")
Pattern = Literal["always", "charging-at-night", "office-hours"]
# When a windowed pattern is online unless the profile gives its own window. Phones train on the
# charger at night (Google's production FL: only when idle, charging and on an unmetered network,
# Bonawitz et al. 2019, https://arxiv.org/abs/1902.01046); laptops while their owners work.
DEFAULT_WINDOWS: dict[str, str] = {"charging-at-night": "23:00-07:00", "office-hours": "09:00-17:00"}
# bf16 runs at the fp16 figure: every unit profiled here executes both 16-bit formats at one rate.
_THROUGHPUT_KEY = {"fp32": "fp32", "fp16": "fp16", "bf16": "fp16", "int8": "int8"}
_WINDOW = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")
_URL = re.compile(r"https?://\S+")


@dataclass(frozen=True)
class Availability:
    pattern: Pattern
    window: tuple[int, int] | None  # [start, end) in minutes after midnight, may wrap; None: always
    jitter_minutes: float  # each device's window is shifted by a uniform draw in +-jitter
    dropout_probability: float  # chance an online device drops out of a round it was given


@dataclass(frozen=True)
class DeviceProfile:
    id: str  # the file's stem, e.g. "pixel-8"
    name: str
    kind: str
    compute_unit: str  # which processor the figures are for, and why that one
    total_memory: int  # bytes the training runs in (system RAM, unified memory, or a dGPU's own)
    memory_cap: int  # bytes an app may use of it: the device's cap
    memory_bandwidth: float  # bytes/s
    throughput: Mapping[str, float]  # sustained matmul FLOP/s (int8: ops/s) by fp32 / fp16 / int8
    uplink: float  # bit/s
    downlink: float  # bit/s
    latency: float  # seconds, one way per transfer
    backends: tuple[str, ...]
    precisions: tuple[str, ...]
    availability: Availability
    provenance: Mapping[str, str]  # field path -> "source: ..." or "estimate: ..."

    def flops_per_second(self, precision: str) -> float:
        if precision not in self.precisions:
            raise UserError(f"device {self.id} does not run {precision}; it runs {', '.join(self.precisions)}")
        return self.throughput[_THROUGHPUT_KEY[precision]]


class _Reader:
    """Walks one parsed YAML, naming the file and field path in every refusal."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.provenance: dict[str, str] = {}

    def fail(self, path: str, message: str) -> UserError:
        return UserError(f"{self.file}: {path}: {message}")

    def table(self, data: Any, path: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict:
        where = f"{path}: " if path else ""
        if not isinstance(data, dict):
            raise UserError(f"{self.file}: {where}expected a table of fields, got {data!r}")
        unknown = [k for k in data if k not in required + optional]
        if unknown:
            raise self.fail(
                _join(path, str(unknown[0])), f"unknown field; known here: {', '.join(required + optional)}"
            )
        missing = [k for k in required if k not in data]
        if missing:
            raise self.fail(_join(path, missing[0]), "missing")
        return data

    def text(self, data: dict, path: str, key: str) -> str:
        value = data[key]
        if not isinstance(value, str) or not value.strip():
            raise self.fail(_join(path, key), f"expected non-empty text, got {value!r}")
        return value.strip()

    def choice(self, data: dict, path: str, key: str, options: tuple[str, ...]) -> str:
        value = data[key]
        if value not in options:
            raise self.fail(_join(path, key), f"{value!r} is not one of: {', '.join(options)}")
        return value

    def choices(self, data: dict, path: str, key: str, options: tuple[str, ...]) -> tuple[str, ...]:
        values = data[key]
        if not isinstance(values, list) or not values:
            raise self.fail(_join(path, key), f"expected a non-empty list, got {values!r}")
        for value in values:
            if value not in options:
                raise self.fail(_join(path, key), f"{value!r} is not one of: {', '.join(options)}")
        return tuple(values)

    def figure(self, data: dict, path: str, key: str, parse: Callable[[Any], float]) -> float:
        """A ``{value, source | estimate}`` table: the value parsed, its provenance recorded."""
        field = _join(path, key)
        if not isinstance(data[key], dict):
            raise self.fail(
                field, f"expected {{value: ..., source: URL}} or {{value: ..., estimate: why}}, got {data[key]!r}"
            )
        entry = self.table(data[key], field, ("value",), ("source", "estimate"))
        given = [k for k in ("source", "estimate") if k in entry]
        if not given:
            raise self.fail(field, "missing source or estimate")
        if len(given) == 2:
            raise self.fail(field, "give a source or an estimate, not both")
        note = entry[given[0]]
        if not isinstance(note, str) or not note.strip():
            raise self.fail(f"{field}.{given[0]}", "expected non-empty text")
        if given[0] == "source" and not _URL.search(note):
            raise self.fail(f"{field}.source", "a source must include its URL; otherwise write an estimate")
        try:
            value = parse(entry["value"])
        except (UserError, TypeError, ValueError) as error:
            raise self.fail(f"{field}.value", str(error)) from None
        self.provenance[field] = f"{given[0]}: {note.strip()}"
        return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _positive(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"must be a positive number, got {value!r}")
    return float(value)


def _fraction(value: Any) -> float:
    share = _positive(value)
    if share > 1:
        raise ValueError(f"a share of the memory must be at most 1, got {value!r}")
    return share


def _probability(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"expected a probability in [0, 1), got {value!r}")
    return float(value)


def _non_negative(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"expected a number >= 0, got {value!r}")
    return float(value)


def _bytes(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"expected a size such as 8GB, got {value!r}")
    return parse_bytes(value)


def _window(reader: _Reader, text: Any, path: str) -> tuple[int, int]:
    found = _WINDOW.match(text) if isinstance(text, str) else None
    if found:
        h1, m1, h2, m2 = map(int, found.groups())
        if h1 < 24 and h2 < 24 and m1 < 60 and m2 < 60 and (h1, m1) != (h2, m2):
            return h1 * 60 + m1, h2 * 60 + m2
    raise reader.fail(path, f"expected a daily window such as 23:00-07:00, got {text!r}")


def _memory(reader: _Reader, data: Any) -> tuple[int, int, float]:
    memory = reader.table(data, "memory", ("total", "bandwidth_gbytes_per_s"), ("app_share", "app_cap"))
    total = int(reader.figure(memory, "memory", "total", _bytes))
    bandwidth = reader.figure(memory, "memory", "bandwidth_gbytes_per_s", _positive) * 1e9
    given = [k for k in ("app_share", "app_cap") if k in memory]
    if len(given) != 1:
        raise reader.fail(
            "memory.app_share",
            "give exactly one of memory.app_share (a fraction of memory.total) or memory.app_cap (a size)",
        )
    if given[0] == "app_share":
        cap = int(total * reader.figure(memory, "memory", "app_share", _fraction))
    else:
        cap = int(reader.figure(memory, "memory", "app_cap", _bytes))
        if cap > total:
            raise reader.fail("memory.app_cap", f"{cap:,} bytes is above memory.total ({total:,} bytes)")
    return total, cap, bandwidth


def _availability(reader: _Reader, data: Any) -> Availability:
    table = reader.table(data, "availability", ("pattern", "dropout_probability"), ("window", "jitter_minutes"))
    pattern = reader.choice(table, "availability", "pattern", ("always", *DEFAULT_WINDOWS))
    window = None
    if pattern == "always":
        if "window" in table or "jitter_minutes" in table:
            raise reader.fail("availability.window", "the pattern 'always' has no window or jitter")
    else:
        window = _window(reader, table.get("window", DEFAULT_WINDOWS[pattern]), "availability.window")
    jitter = reader.figure(table, "availability", "jitter_minutes", _non_negative) if "jitter_minutes" in table else 0.0
    dropout = reader.figure(table, "availability", "dropout_probability", _probability)
    return Availability(pattern, window, jitter, dropout)


def parse_profile(data: Any, file: str) -> DeviceProfile:
    reader = _Reader(file)
    top = reader.table(
        data,
        "",
        ("name", "kind", "compute_unit", "memory", "compute", "link", "backends", "precisions", "availability"),
    )
    total, cap, bandwidth = _memory(reader, top["memory"])
    compute = reader.table(top["compute"], "compute", ("fp32_gflops", "fp16_gflops", "int8_gflops"))
    throughput = {
        p: reader.figure(compute, "compute", f"{p}_gflops", _positive) * 1e9 for p in ("fp32", "fp16", "int8")
    }
    link = reader.table(top["link"], "link", ("up_mbit_per_s", "down_mbit_per_s", "latency_ms"))
    return DeviceProfile(
        id=Path(file).stem,
        name=reader.text(top, "", "name"),
        kind=reader.choice(top, "", "kind", KINDS),
        compute_unit=reader.text(top, "", "compute_unit"),
        total_memory=total,
        memory_cap=cap,
        memory_bandwidth=bandwidth,
        throughput=throughput,
        uplink=reader.figure(link, "link", "up_mbit_per_s", _positive) * 1e6,
        downlink=reader.figure(link, "link", "down_mbit_per_s", _positive) * 1e6,
        latency=reader.figure(link, "link", "latency_ms", _positive) / 1e3,
        backends=reader.choices(top, "", "backends", BACKENDS),
        precisions=reader.choices(top, "", "precisions", PRECISIONS),
        availability=_availability(reader, top["availability"]),
        provenance=reader.provenance,
    )


def load_profile(path: str | Path) -> DeviceProfile:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"device profile not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise UserError(f"{path.name}: not valid YAML ({' '.join(str(error).split())})") from None
    return parse_profile(data, path.name)


def load_profiles(folder: str | Path) -> dict[str, DeviceProfile]:
    """Every ``*.yaml`` in ``folder`` by profile id."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"device profile folder not found: {folder}")
    profiles = {p.id: p for p in map(load_profile, sorted(folder.glob("*.yaml")))}
    if not profiles:
        raise UserError(f"no device profiles (*.yaml) in {folder}")
    return profiles


def builtin_profiles_dir() -> Path:
    return Path(__file__).parent / "device_profiles"


def builtin_profiles() -> dict[str, DeviceProfile]:
    """The profiles shipped in the repository's device_profiles/ (and inside the installed package)."""
    return dict(_shipped())


@functools.lru_cache(maxsize=1)
def _shipped() -> dict[str, DeviceProfile]:
    # Read once per process: a fleet of a thousand emulated devices asks a thousand times.
    return load_profiles(builtin_profiles_dir())


def find_profile(name_or_path: str) -> DeviceProfile:
    """A YAML file, or the id of a shipped profile (e.g. pixel-8)."""
    if Path(name_or_path).suffix in (".yaml", ".yml") or "/" in name_or_path:
        return load_profile(name_or_path)
    shipped = builtin_profiles()
    if name_or_path not in shipped:
        raise UserError(f"unknown device profile {name_or_path!r}; shipped: {', '.join(shipped)}, or a YAML path")
    return shipped[name_or_path]
