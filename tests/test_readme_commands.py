"""Every `edgetune` command line the README shows parses against the real CLI: a renamed flag or
subcommand breaks this test, not a reader's first try."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from edge_runtime.cli import parser

ROOT = Path(__file__).resolve().parent.parent


def command_lines(markdown: str) -> list[str]:
    """`edgetune ...` lines of the fenced shell blocks and of inline code, continuations joined."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", markdown, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if re.search(r"(^|/|\s)edgetune\s", line + " "):
                lines.append(line)
    # Inline code that names a command with its flags (not a mere mention like `edgetune bench`).
    lines += [inline for inline in re.findall(r"`([^`\n]*edgetune [^`\n]*)`", markdown) if " --" in inline]
    return lines


def argv_of(line: str) -> list[str]:
    words = shlex.split(line)
    start = next(i for i, word in enumerate(words) if word == "edgetune" or word.endswith("/edgetune"))
    return words[start + 1:]


README_COMMANDS = command_lines((ROOT / "README.md").read_text())


def test_the_readme_shows_commands():
    assert len(README_COMMANDS) >= 10


@pytest.mark.parametrize("line", README_COMMANDS)
def test_a_readme_command_line_parses(line):
    argv = argv_of(line)
    try:
        parser().parse_args(argv)
    except SystemExit as exit_:
        if exit_.code == 0:  # --help
            return
        pytest.fail(f"`edgetune {' '.join(argv)}` does not parse (exit {exit_.code})")
