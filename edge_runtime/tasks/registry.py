"""The tasks by name, and their splits loaded from the packaged data or a user's folder."""

from __future__ import annotations

import functools
from pathlib import Path

from edge_runtime.errors import UserError
from edge_runtime.tasks.base import Example, TaskSpec
from edge_runtime.tasks.glue import SST2
from edge_runtime.tasks.reading import TaskSource, read_examples
from edge_runtime.tasks.superglue import BOOLQ, COPA, RTE
from edge_runtime.tasks.winogrande import WINOGRANDE

# One folder per task, named like the task; a user's data_dir has the same layout.
PACKAGED_DATA_DIR = Path(__file__).with_name("data")

_SOURCES: dict[str, TaskSource] = {source.spec.name: source for source in (SST2, RTE, BOOLQ, COPA, WINOGRANDE)}

TASKS: dict[str, TaskSpec] = {name: source.spec for name, source in _SOURCES.items()}


def get_task(name: str) -> TaskSpec:
    return _source(name).spec


def load_split(name: str, split: str, data_dir: str | Path | None = None) -> list[Example]:
    """The examples of one split, in file order.

    `split` is "train" or "eval" (WinoGrande also takes "train_xs", "train_s", "train_m");
    `data_dir` holds `<task>/<file>` like the packaged data, which is the default.
    """
    source = _source(name)
    try:
        file_name = source.files[split]
    except KeyError:
        raise UserError(f"task '{name}' has no split '{split}'; choose one of: {', '.join(source.files)}") from None
    root = PACKAGED_DATA_DIR if data_dir is None else Path(data_dir).expanduser()
    path = (root / name / file_name).resolve()
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise UserError(f"task '{name}' split '{split}': data file not found: {path}") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    # A new list each call: callers may shuffle or extend it without touching the cached tuple.
    return list(_cached_examples(name, path, stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=32)
def _cached_examples(name: str, path: Path, mtime_ns: int, size: int) -> tuple[Example, ...]:
    # Modification time and size are in the key so that an edited file is read again, not served stale.
    return read_examples(_SOURCES[name], path)


def _source(name: str) -> TaskSource:
    try:
        return _SOURCES[name]
    except KeyError:
        raise UserError(f"unknown task '{name}'; choose one of: {', '.join(_SOURCES)}") from None
