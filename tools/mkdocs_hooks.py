"""MkDocs hook (mkdocs.yml `hooks:`): publish the measured results beside the pages.

The benchmark pages link their plots and JSON under `tools/results/`, outside `docs/`. This adds
those files to the site at the same path (`tools/results/...`), so the links resolve and strict
mode checks them. Markdown files there are left out (MkDocs would render them as pages); the pages
name them as code paths instead.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = (".png", ".json", ".sh", ".txt", ".log")


def on_files(files, config):
    for path in sorted((ROOT / "tools" / "results").rglob("*")):
        if path.is_file() and path.suffix in PUBLISHED:
            files.append(File.generated(config, path.relative_to(ROOT).as_posix(), abs_src_path=str(path)))
    return files
