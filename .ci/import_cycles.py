"""Fails when a package's modules, or its sub-packages, import each other in a circle.

A circle hides which module owns a name, and neither a deferred import inside a function nor one
under `if TYPE_CHECKING:` removes it: they hide the circle from Python, not from the reader, so
every kind counts here. Importing `a.b.c` also runs `a/__init__.py` and `a/b/__init__.py`; those
implicit edges are left out, or every module would sit in a circle with the package root that
re-exports the public API.

Two levels are checked. Modules: no module reaches itself through others. Packages: each of the
top package's sub-packages collapsed to one node (a top-level module is a node of its own), no
node reaches itself: `runtime/host.py -> trial.py -> runtime/job.py` was a loop between the
layers `trial` and `runtime` although no module sat in a circle.

Usage: python .ci/import_cycles.py [PACKAGE_DIR]   (default: capsule). Exit 1 names each circle.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def module_names(package: Path) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    root = package.parent
    names: dict[str, Path] = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _imported(tree: ast.AST, name: str, is_package: bool) -> list[tuple[str, list[str]]]:
    """(module, names imported from it) for every import the module can run."""
    found: list[tuple[str, list[str]]] = []
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, base]) if base else ".".join(package)
            found.append((base, [alias.name for alias in node.names]))
        pending.extend(ast.iter_child_nodes(node))
    return found


def import_graph(package: Path) -> dict[str, set[str]]:
    """Edges from each module to the package's modules it imports."""
    names = module_names(package)
    graph: dict[str, set[str]] = {name: set() for name in names}
    for name, path in names.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for module, imported in _imported(tree, name, path.name == "__init__.py"):
            targets = [f"{module}.{item}" for item in imported if f"{module}.{item}" in names]
            if module in names and (not imported or len(targets) < len(imported)):
                targets.append(module)  # `import a.b`, or names defined in the module itself
            graph[name].update(target for target in targets if target != name)
    return graph


def package_graph(graph: dict[str, set[str]], top: str) -> dict[str, set[str]]:
    """The graph with each sub-package of `top` collapsed to one node (`top.runtime.host` ->
    `top.runtime`); the package root itself is left out, as above."""

    def node(name: str) -> str:
        return ".".join(name.split(".")[:2])

    collapsed: dict[str, set[str]] = {}
    for source, targets in graph.items():
        if source == top:
            continue
        edges = collapsed.setdefault(node(source), set())
        edges.update(node(t) for t in targets if t != top and node(t) != node(source))
    return collapsed


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def main(argv: list[str]) -> int:
    package = Path(argv[0] if argv else "capsule")
    if not (package / "__init__.py").is_file():
        print(f"import_cycles: {package} is not a package folder", file=sys.stderr)
        return 2
    graph = import_graph(package)
    packages = package_graph(graph, package.name)
    failed = False
    for kind, levels in (("import cycle", graph), ("package import cycle", packages)):
        for component in cycles(levels):
            failed = True
            members = set(component)
            edges = [
                f"{source} -> {target}{_via(graph, source, target) if levels is packages else ''}"
                for source in component
                for target in sorted(levels[source] & members)
            ]
            print(f"{kind} among {', '.join(component)}: {'; '.join(edges)}")
    return 1 if failed else 0


def _via(graph: dict[str, set[str]], source: str, target: str) -> str:
    """The module imports that make a package edge, as " (a.b -> c.d, ...)"."""

    def inside(name: str, node: str) -> bool:
        return name == node or name.startswith(node + ".")

    pairs = sorted(
        f"{a} -> {b}"
        for a, targets in graph.items()
        if inside(a, source)
        for b in targets
        if inside(b, target)
    )
    return f" ({', '.join(pairs)})"


if __name__ == "__main__":
    sys.setrecursionlimit(10_000)
    sys.exit(main(sys.argv[1:]))
