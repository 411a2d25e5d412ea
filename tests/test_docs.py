"""The README is a front door and docs/ the site behind it; these keep both honest.

- the README stays short (at most 200 lines);
- every `edgetune` command line in the README and in docs/**/*.md parses against the real CLI: a
  renamed flag or subcommand breaks this test, not a reader's first try;
- the generated references (docs/reference/cli.md, config.md) are what tools/cli_reference.py
  writes from the code now;
- every benchmark page (docs/benchmarks/**/README.md) is what `edgetune bench report` writes from
  the notes and JSON committed beside it, so no table can disagree with its JSON;
- the site builds with `mkdocs build --strict` (broken links, missing pages and missing includes
  fail), where mkdocs is installed (the `docs` extra, which `dev` includes).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge_runtime.cli import main, parser

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SHELL_FENCES = ("bash", "sh", "shell", "console")
# A command: `edgetune ...`, `.venv/bin/edgetune ...` (any path ending in /edgetune), `python -m edge_runtime ...`.
COMMAND = re.compile(r"(^|\s)(\S*/)?edgetune\s|(^|\s)python3?\s+-m\s+edge_runtime(\.cli)?\s")


def command_lines(markdown: str) -> list[str]:
    """Command lines of the shell-fenced blocks and of inline code, continuations joined, comments cut."""
    lines = []
    for lang, block in re.findall(r"^```(\w*)\n(.*?)^```", markdown, re.S | re.M):
        if lang not in SHELL_FENCES:
            continue
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if COMMAND.search(line + " "):
                lines.append(line)
    # Inline code that names a command with its flags (not a mere mention like `edgetune bench`).
    lines += [
        inline
        for inline in re.findall(r"`([^`\n]*edgetune [^`\n]*)`", markdown)
        if " --" in inline and COMMAND.search(inline + " ")
    ]
    return lines


def argv_of(line: str) -> list[str]:
    words = shlex.split(line)
    for i, word in enumerate(words):
        if word == "edgetune" or word.endswith("/edgetune"):
            return words[i + 1 :]
        if word == "-m" and i + 1 < len(words) and words[i + 1] in ("edge_runtime", "edge_runtime.cli"):
            return words[i + 2 :]
    raise AssertionError(f"no edgetune command in {line!r}")


COMMANDS = [(page.relative_to(ROOT).as_posix(), line) for page in PAGES for line in command_lines(page.read_text())]


def test_the_readme_is_a_front_door():
    lines = len((ROOT / "README.md").read_text().splitlines())
    assert lines <= 200, f"README.md has {lines} lines; move detail into docs/"


def test_the_readme_and_docs_show_commands():
    pages = {page for page, _ in COMMANDS}
    assert "README.md" in pages and len(pages) >= 10
    assert len(COMMANDS) >= 30


@pytest.mark.parametrize(("page", "line"), COMMANDS)
def test_a_command_line_parses(page, line):
    argv = argv_of(line)
    try:
        parser().parse_args(argv)
    except SystemExit as exit_:
        if exit_.code == 0:  # --help
            return
        pytest.fail(f"{page}: `edgetune {' '.join(argv)}` does not parse (exit {exit_.code})")


def _cli_reference():
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "tools" / "cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generated_references_are_current():
    module = _cli_reference()
    for path, render in module.PAGES.items():
        assert path.read_text() == render(), (
            f"{path.relative_to(ROOT)} is stale: run `python tools/cli_reference.py` and commit it"
        )


def test_the_benchmark_pages_are_what_bench_report_writes_from_their_results(tmp_path):
    committed = ROOT / "docs" / "benchmarks"
    copy = shutil.copytree(committed, tmp_path / "benchmarks")
    main(["bench", "report", str(copy), "--plots", "false"])
    pages = sorted(page.relative_to(copy) for page in copy.rglob("README.md"))
    assert len(pages) >= 14 and pages == sorted(page.relative_to(committed) for page in committed.rglob("README.md"))
    for page in pages:
        assert (copy / page).read_text() == (committed / page).read_text(), (
            f"docs/benchmarks/{page} is stale: run `edgetune bench report docs/benchmarks` and commit it"
        )


def test_every_subcommand_is_in_the_cli_reference():
    text = (ROOT / "docs" / "reference" / "cli.md").read_text()
    for heading in (
        "`edgetune train`",
        "`edgetune bench speed`",
        "`edgetune bench report`",
        "`edgetune fleet`",
        "`edgetune agent`",
        "`edgetune coordinator`",
        "`edgetune export-graph`",
        "`edgetune list`",
    ):
        assert heading in text


def test_the_site_builds_in_strict_mode(tmp_path):
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        pytest.skip("mkdocs and mkdocs-material are not installed (pip install -e '.[docs]')")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert (tmp_path / "site" / "reference" / "cli" / "index.html").is_file()
