"""Imports run one way: every import in edge_runtime/ and coordinator/ (those inside functions and
under TYPE_CHECKING too) goes from a layer to a layer below it, never up, and never across between
the independent parts of one layer. The table is the layer picture of docs/explanation/layers.md;
a new package fails here until it is given its place.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Layer:
    name: str
    units: frozenset[str]  # packages and top-level modules of edge_runtime; "coordinator" is the whole server
    independent: bool = False  # its units may not import each other (they may import any layer below)


def _layer(name: str, units: str, independent: bool = False) -> Layer:
    return Layer(name, frozenset(units.split()), independent)


# Lowest first. Within a layer that is not independent, imports may go either way but not in a cycle.
LAYERS = (
    _layer("common", "edge_runtime errors units config spec options seeded pass_batching protocol"),
    _layer("devices", "devices"),
    _layer("library", "models tasks heads objective estimators memory warm_start ort"),
    _layer("engine", "costs local", independent=True),
    _layer("roles", "agent coordinator training", independent=True),
    _layer("fleet", "fleet"),
    _layer("bench", "bench"),
    _layer("commands", "commands cli __main__"),
)
RANK = {unit: rank for rank, layer in enumerate(LAYERS) for unit in layer.units}


def _unit(module: str) -> str | None:
    """The layer unit a dotted module name belongs to; None for anything outside the two packages."""
    parts = module.split(".")
    if parts[0] == "coordinator":
        return "coordinator"
    if parts[0] != "edge_runtime":
        return None
    return parts[1] if len(parts) > 1 else "edge_runtime"


def _module_name(path: Path, root: Path = ROOT) -> tuple[str, str]:
    """(the module's dotted name, the package its relative imports start from)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
        return ".".join(parts), ".".join(parts)
    return ".".join(parts), ".".join(parts[:-1])


def _imports(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, imported dotted name) of every import in the file, wherever it stands."""
    _, package = _module_name(path, root)
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            # `from edge_runtime import fleet` imports a package: the name counts as part of the module.
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def _sources() -> list[Path]:
    files = [*(ROOT / "edge_runtime").rglob("*.py"), *(ROOT / "coordinator").rglob("*.py")]
    return sorted(f for f in files if "stubs" not in f.relative_to(ROOT).parts)  # protoc's output


def _edges() -> dict[tuple[str, str], list[str]]:
    """(importing unit, imported unit) -> where, for imports between different units."""
    edges: dict[tuple[str, str], list[str]] = {}
    for path in _sources():
        source = _unit(_module_name(path)[0])
        for line, name in _imports(path):
            target = _unit(name)
            if target is not None and target != source:
                edges.setdefault((source, target), []).append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return edges


def test_every_package_has_a_layer():
    units = {_unit(_module_name(path)[0]) for path in _sources()}
    assert units - RANK.keys() == set(), (
        "add these to LAYERS in tests/test_layers.py (and the picture in docs/explanation/layers.md)"
    )


def test_imports_go_down_the_layers():
    wrong = []
    for (source, target), where in sorted(_edges().items()):
        if source not in RANK or target not in RANK:
            wrong += [f"{w} (no layer for {source if source not in RANK else target})" for w in where]
            continue
        layer = LAYERS[RANK[source]]
        if RANK[target] > RANK[source]:
            wrong += [
                f"{w}: {source} ({layer.name}) imports upward, {target} ({LAYERS[RANK[target]].name})" for w in where
            ]
        elif RANK[target] == RANK[source] and layer.independent:
            wrong += [f"{w}: {source} and {target} are independent parts of layer {layer.name}" for w in where]
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_no_cycles_between_packages():
    graph: dict[str, set[str]] = {}
    for source, target in _edges():
        graph.setdefault(source, set()).add(target)
    done: set[str] = set()

    def visit(unit: str, path: list[str]) -> None:
        if unit in path:
            raise AssertionError("import cycle: " + " -> ".join([*path[path.index(unit) :], unit]))
        if unit not in done:
            for target in sorted(graph.get(unit, ())):
                visit(target, [*path, unit])
            done.add(unit)

    for unit in sorted(graph):
        visit(unit, [])


def test_the_scan_sees_imports_inside_functions(tmp_path):
    # The scan must count a lazy import as the import it is, or a wrong one could hide in a function.
    source = tmp_path / "edge_runtime" / "x.py"
    source.parent.mkdir()
    source.write_text("def f():\n    from edge_runtime.fleet import emulator\n    from . import y\n")
    assert _imports(source, tmp_path) == [(2, "edge_runtime.fleet.emulator"), (3, "edge_runtime.y")]
