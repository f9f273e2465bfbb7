"""The shared package's modules form layers: no module imports (at the top or inside a function) one that imports
it back, directly or through others, so each shared piece has one home below the modules that use it."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path, package: str) -> set[str]:
    """The modules of ``package`` that ``path`` imports anywhere in its body."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith(package + ".")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from .x import y / from . import x
                base = package if node.level == 1 else None
                if base is None:
                    continue
                mod = f"{base}.{node.module}" if node.module else None
                found |= {mod} if mod else {f"{base}.{a.name}" for a in node.names}
            elif node.module and (node.module == package or node.module.startswith(package + ".")):
                found |= {node.module} if node.module != package else {f"{package}.{a.name}" for a in node.names}
    return found


def _graph(package: str) -> dict[str, set[str]]:
    mods = {f"{package}.{p.stem}": p for p in (ROOT / package).glob("*.py") if p.stem != "__init__"}
    return {m: {d for d in _imports(p, package) if d in mods and d != m} for m, p in mods.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state and (found := visit(d)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_reads_every_kind_of_import(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import har.a\nfrom har.b import x\nfrom .c import y\nfrom . import d\n"
                 "def f():\n    from har import e\n")
    assert _imports(f, "har") == {"har.a", "har.b", "har.c", "har.d", "har.e"}


def test_shared_package_has_no_import_cycle():
    graph = _graph("har")
    assert {"har.reports", "har.plots", "har.storage", "har.storage_s3"} <= set(graph)
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph))}"
