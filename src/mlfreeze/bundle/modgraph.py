"""The project's own modules a bundle holds: the entry's import graph inside the project tree.

PyInstaller collects the modules the entry imports, transitively. The freeze digest
(mlfreeze.bundle.incremental) must change exactly when one of the project's modules among them
changes, and must never read what sits beside them (``.nox/``, ``dist/``, ``build/``, ``.git/``,
which every build rewrites). :func:`project_modules` follows ``import`` and ``from ... import``
statements (anywhere in a module, relative ones included) and ``importlib.import_module("...")``
with a literal name, with :mod:`ast`, starting from the entry script and any named modules (an
entry point's module, ``[tool.mlfreeze] hiddenimports``). A name is looked up only in the
project's source folders (its root, ``src/``, the entry's folder, the freeze's pathex inside the
project); a name found nowhere there comes from an installed distribution, which the digest
covers by name and version. Only files are read that a name resolves to: a folder is never
walked.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Sequence
from pathlib import Path

# Top-level folders of a project that never hold its modules: build outputs, caches, VCS, venvs.
SKIP_DIRS = frozenset({".nox", ".tox", ".git", ".hg", ".venv", "venv", "dist", "build", "__pycache__",
                       "node_modules", ".mypy_cache", ".pytest_cache", ".ruff_cache"})


def _module_files(name: str, roots: Sequence[Path]) -> list[Path]:
    """The files of ``name`` and of its parent packages, in the first root that has its top-level
    name; ``[]`` when no root has it (an installed distribution's module, or none)."""
    parts = name.split(".")
    if parts[0] in SKIP_DIRS:
        return []
    for root in roots:
        if not ((root / parts[0]).with_suffix(".py").is_file() or (root / parts[0]).is_dir()):
            continue
        here, files = root, []
        for part in parts:
            here = here / part
            if (here / "__init__.py").is_file():
                files.append(here / "__init__.py")
            elif here.with_suffix(".py").is_file():
                files.append(here.with_suffix(".py"))
                break  # what follows is an attribute of this module
            elif not here.is_dir():
                break  # an attribute of a package (from pkg import name)
        return files
    return []


def _is_import_module(node: ast.Call) -> bool:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return name in ("import_module", "__import__")


def imported_names(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Every module name ``tree`` (the source of ``module``) may import, relative imports resolved;
    ``from a import b`` yields ``a`` and ``a.b`` (``b`` may be a submodule)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                prefix = ".".join([*base, *([node.module] if node.module else [])])
            else:
                prefix = node.module or ""
            if prefix:
                names.add(prefix)
            names.update(f"{prefix}.{a.name}" if prefix else a.name for a in node.names if a.name != "*")
        elif isinstance(node, ast.Call) and _is_import_module(node) and node.args \
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            names.add(node.args[0].value)
    return {n for n in names if n and not n.startswith(".")}


def project_modules(*, roots: Sequence[Path], scripts: Iterable[Path] = (), modules: Iterable[str] = ()
                    ) -> list[Path]:
    """The project's source files PyInstaller collects: ``scripts`` (the entry) and every module of
    the project they, or the named ``modules``, import, transitively; sorted. ``roots``: the folders
    a top-level name is looked up in, in order (those outside the project are the caller's to leave out)."""
    seen: dict[Path, None] = {}
    scripts = [Path(s) for s in scripts]
    queue = [*scripts, *(f for name in modules for f in _module_files(name, roots))]
    while queue:
        path = queue.pop()
        if path in seen:
            continue
        seen[path] = None
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError):
            continue  # hashed all the same; PyInstaller reports it
        module = "__main__" if path in scripts else _name_of(path, roots)
        for name in sorted(imported_names(tree, module, path.name == "__init__.py")):
            queue += [f for f in _module_files(name, roots) if f not in seen]
    return sorted(seen)


def _name_of(path: Path, roots: Sequence[Path]) -> str:
    """The dotted module name of ``path`` under the innermost root that holds it (``""`` if none):
    ``<root>/src/pkg/mod.py`` is ``pkg.mod`` when ``<root>/src`` is a root."""
    holding = [r for r in roots if path.is_relative_to(r)]
    if not holding:
        return ""
    parts = list(path.relative_to(max(holding, key=lambda r: len(r.parts))).with_suffix("").parts)
    if parts and parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)
