"""Domain imports point one way: no import cycle between `app/<domain>` packages.

A domain is a package directly under `app/` (`app/policy`, `app/exposure`, ...); top-level
modules (`app/db.py`, `app/errors.py`, `app/identifiers.py`, `app/chain.py`, ...) are shared
ground, not domains. Every `import app.<domain>...` / `from app.<domain>... import` /
`from app import <domain>` in any module of another domain counts, wherever it is written
(module top, function body, `TYPE_CHECKING` block).
"""

import ast
from collections import defaultdict
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "app"

Edge = tuple[str, str]


def _domains() -> set[str]:
    return {p.name for p in APP.iterdir() if (p / "__init__.py").is_file()}


def _imported(node: ast.AST) -> list[str]:
    """The dotted names an import statement reaches (`from app import x` reaches `app.x`)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
        return [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return []


def import_graph() -> dict[Edge, set[str]]:
    """Each edge between two domains, with the modules (relative to `app/`) that make it."""
    domains = _domains()
    edges: dict[Edge, set[str]] = defaultdict(set)
    for path in sorted(APP.rglob("*.py")):
        parts = path.relative_to(APP).parts
        if len(parts) < 2:  # a top-level module
            continue
        source = parts[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            assert not (isinstance(node, ast.ImportFrom) and node.level), (
                f"{path}: use absolute imports, so this test sees every one"
            )
            for name in _imported(node):
                top, _, rest = name.partition(".")
                domain = rest.split(".")[0]
                if top == "app" and domain in domains and domain != source:
                    edges[(source, domain)].add(str(path.relative_to(APP)))
    return edges


def cyclic_edges(edges: set[Edge]) -> set[Edge]:
    """The edges that lie on a cycle: those whose target reaches back to their source."""
    successors: dict[str, set[str]] = defaultdict(set)
    for source, target in edges:
        successors[source].add(target)

    def reaches(start: str, goal: str) -> bool:
        seen, todo = {start}, [start]
        while todo:
            node = todo.pop()
            if node == goal:
                return True
            for nxt in successors[node] - seen:
                seen.add(nxt)
                todo.append(nxt)
        return False

    return {(source, target) for source, target in edges if reaches(target, source)}


def test_cyclic_edges_are_the_edges_on_a_cycle():
    edges = {("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("d", "e"), ("e", "d"), ("x", "a")}
    assert cyclic_edges(edges) == {("a", "b"), ("b", "c"), ("c", "a"), ("d", "e"), ("e", "d")}
    assert cyclic_edges({("a", "b"), ("b", "c"), ("a", "c")}) == set()


def test_the_graph_sees_imports_in_every_form():
    edges = import_graph()
    assert "alerts/router.py" in edges[("alerts", "auth")]  # from app.auth.dependencies import
    assert "plans/service.py" in edges[("plans", "exposure")]  # from app.exposure import ...


def test_no_import_cycle_between_domains():
    edges = import_graph()
    found = cyclic_edges(set(edges))
    described = "\n".join(
        f"  {a} -> {b}: {', '.join(sorted(edges[(a, b)]))}" for a, b in sorted(found)
    )
    assert not found, f"import cycle between domains; point the import the other way:\n{described}"


def test_no_domain_imports_the_check_path():
    """`app/checks` sits on top of the domains it records for (policy, access log, alerts,
    auth, operations): only the application's top-level modules start it."""
    edges = import_graph()
    importers = {
        source: modules for (source, target), modules in edges.items() if target == "checks"
    }
    assert not importers, f"domains importing app.checks: {importers}"
