"""How a task's files become `Example`s: one reader per file format, shared field checks.

Users point `data_dir` at their own files, so every problem in a data file surfaces as a `UserError`
naming the file and the 1-based line: a KeyError or JSONDecodeError from deep inside the loader
would not tell them which row to fix.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from edge_runtime.errors import UserError
from edge_runtime.tasks.base import Example, TaskSpec

Row = Mapping[str, object]
RowReader = Callable[[Path], Iterator[tuple[int, Row]]]
K = TypeVar("K")
T = TypeVar("T")


class MalformedRow(Exception):
    """A row that parses but does not describe an example; `read_examples` adds file and line."""


@dataclass(frozen=True)
class TaskSource:
    """Where a task's data lives and how one row of it becomes an `Example`."""

    spec: TaskSpec
    # Split name accepted by `load_split` -> file name inside the task's folder.
    files: Mapping[str, str]
    read_rows: RowReader
    build_example: Callable[[Row], Example]


def read_examples(source: TaskSource, path: Path) -> tuple[Example, ...]:
    examples = []
    for line_no, row in source.read_rows(path):
        try:
            examples.append(source.build_example(row))
        except MalformedRow as exc:
            raise _located(path, line_no, str(exc)) from None
    return tuple(examples)


def read_jsonl(path: Path) -> Iterator[tuple[int, Row]]:
    for line_no, line in _numbered_lines(path):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _located(path, line_no, f"not valid JSON ({exc.msg}, column {exc.colno})") from None
        if not isinstance(row, dict):
            raise _located(path, line_no, f"expected a JSON object, got {type(row).__name__}")
        yield line_no, row


def read_tsv(path: Path) -> Iterator[tuple[int, Row]]:
    """Rows keyed by the header line's column names (GLUE's layout: a header, then one row a line)."""
    lines = _numbered_lines(path)
    first = next(lines, None)
    if first is None:
        raise UserError(f"{path}: empty file, expected a header line of tab-separated column names")
    header = first[1].split("\t")
    for line_no, line in lines:
        fields = line.split("\t")
        if len(fields) != len(header):
            raise _located(
                path,
                line_no,
                f"expected {len(header)} tab-separated fields ({', '.join(header)}), found {len(fields)}",
            )
        yield line_no, dict(zip(header, fields, strict=True))


def text_field(row: Row, name: str) -> str:
    """A non-empty string field, without surrounding whitespace (GLUE's SST-2 ends every sentence with
    a space, which would otherwise double the space before the prompt's next word)."""
    value = _required(row, name)
    if not isinstance(value, str):
        raise MalformedRow(f"field '{name}' must be a string, got {type(value).__name__}")
    text = value.strip()
    if not text:
        raise MalformedRow(f"field '{name}' is empty")
    return text


def lookup_field(row: Row, name: str, known: Mapping[K, T]) -> T:
    """The value that `known` maps the field to (a label index, a conjunction...)."""
    value = _required(row, name)
    for key, mapped in known.items():
        # Compare types too: True == 1 in Python, and a JSON `true` is not a valid 0/1 label.
        if type(value) is type(key) and value == key:
            return mapped
    expected = ", ".join(json.dumps(key) for key in known)
    raise MalformedRow(f"field '{name}' has unknown value {json.dumps(value)}; expected one of: {expected}")


def _required(row: Row, name: str) -> object:
    if name not in row:
        raise MalformedRow(f"missing field '{name}'")
    return row[name]


def _numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Non-blank lines with their 1-based numbers, line endings removed."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (bad byte at offset {exc.start})") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    # split("\n"), not splitlines(): JSON strings may hold U+2028 and other characters that
    # splitlines() treats as line breaks.
    for line_no, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if line.strip():
            yield line_no, line


def _located(path: Path, line_no: int, message: str) -> UserError:
    return UserError(f"{path}, line {line_no}: {message}")
