"""The import graph of src/ has the shape docs/architecture.md draws: groups in layers, no cycles.

Every ``import`` counts, function-level ones included (a function-level import hides a cycle; it
does not remove it). The runtime (``mlfreeze_runtime``, frozen into every bundle) never imports the
builder (``mlfreeze``); within the builder a lower group never imports a higher one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
# lowest first; a module may import its own group and the groups before it
LAYERS = (
    ("errors", "_proc", "units", "globs", "schema", "hostinfo", "platforms", "specs"),
    ("project",),
    ("models",),
    ("bundle",),
    ("release",),
    ("sizes",),
    ("options", "build", "plan", "init", "sessions", "cli", "__main__"),
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(SRC.rglob("*.py")) if "demo" not in p.parts}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The first-party modules ``name`` imports (``from pkg import sub`` counts as ``pkg.sub``)."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


GRAPH = {name: _imports(name, path, set(_modules())) for name, path in _modules().items()}


def _group(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _rank(module: str) -> int:
    group = _group(module)
    for rank, groups in enumerate(LAYERS):
        if group in groups:
            return rank
    raise AssertionError(f"{module}: its group {group!r} is in no layer of this test (add it where it belongs)")


def test_the_runtime_never_imports_the_builder() -> None:
    leaks = {m: sorted(t for t in targets if t.split(".")[0] == "mlfreeze")
             for m, targets in GRAPH.items() if m.startswith("mlfreeze_runtime")}
    assert {m: t for m, t in leaks.items() if t} == {}


def test_a_lower_group_never_imports_a_higher_one() -> None:
    upward = sorted(f"{m} -> {t}" for m, targets in GRAPH.items() if m.split(".")[0] == "mlfreeze" and m != "mlfreeze"
                    for t in targets if t.split(".")[0] == "mlfreeze" and t != "mlfreeze" and _rank(t) > _rank(m))
    assert upward == []


def _cycle() -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(GRAPH):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles_function_level_imports_included() -> None:
    assert _cycle() is None


@pytest.mark.parametrize("source, expected", [
    ("from mlfreeze.project import config\n", {"mlfreeze.project.config"}),
    ("def f():\n    from mlfreeze.bundle.freeze import x\n", {"mlfreeze.bundle.freeze"}),
    ("import mlfreeze.specs\n", {"mlfreeze.specs"}),
])
def test_the_graph_sees_every_kind_of_import(tmp_path: Path, source: str, expected: set[str]) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(source)
    assert _imports("mlfreeze.probe", probe, set(_modules())) == expected
