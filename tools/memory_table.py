"""Print the memory table of docs/benchmarks/memory.md from `edgetune bench memory` JSON files.

    python tools/memory_table.py tools/results/memory-2026-11-23/*.json
"""

from __future__ import annotations

import json
import sys

from edge_runtime.bench.memory import table

if __name__ == "__main__":
    rows = [row for path in sys.argv[1:] for row in json.load(open(path))["rows"]]
    print(table(rows))
