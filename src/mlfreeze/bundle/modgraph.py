"""The app's own module graph, read with ``ast`` (nothing is imported).

Starting from the app's entry module (and any of its hidden imports), every module it imports
is either the project's own (a ``.py`` file found through the project's search path, the
freeze's ``pathex``) or an outside module (the standard library's, an installed
distribution's, or one that cannot be found at all). The graph is what an update in place
(:mod:`mlfreeze.bundle.incremental`) keys on: the project's own files may change freely, while the
outside modules they import decide what PyInstaller collects into the PYZ archive and
``_internal/``, so a change there needs a full freeze.

Resolution follows the import system and PyInstaller's module graph: ``import a.b.c`` imports
``a``, ``a.b`` and ``a.b.c``; ``from a.b import c`` imports ``a.b`` and also ``a.b.c`` when that is a
module (else ``c`` is a name inside ``a.b``); relative imports resolve against the importing
module's package. Imports anywhere in a file count (inside functions, ``try``, ``if TYPE_CHECKING``),
as they do for PyInstaller, which scans the bytecode.

Two readers share this import scan:

- :func:`app_graph` (for an update in place): the own modules by dotted name and the outside
  modules they import, resolved through the freeze's search path and ``sys.path``.
- :func:`project_modules` (for the freeze digest, :mod:`mlfreeze.bundle.incremental`): the project's
  source files the entry reaches, looked up only in the project's own source folders (its root,
  ``src/``, the entry's folder, the freeze's pathex inside the project). It must change exactly
  when one of those files changes and never read what sits beside them (``.nox/``, ``dist/``,
  ``build/``, ``.git/``, which every build rewrites): only files a name resolves to are read, a
  folder is never walked; a name found nowhere there comes from an installed distribution, which
  the digest covers by name and version.

Literal ``importlib.import_module("...")`` and ``__import__("...")`` calls count as imports too.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.machinery import ModuleSpec, PathFinder
from pathlib import Path


@dataclass(frozen=True, kw_only=True)
class ModuleGraph:
    """``own``: dotted name -> the ``.py`` file of every project module reachable from the roots
    (a package by its ``__init__.py``; a namespace package, which has no file, is left out);
    ``external``: the dotted names of the outside modules those files import, sorted."""

    own: Mapping[str, Path]
    external: tuple[str, ...]

    def top_level(self) -> list[str]:
        """The project's own top-level modules and packages, sorted."""
        return sorted({name.split(".")[0] for name in self.own})

    def bundle_paths(self) -> dict[str, Path]:
        """Where each own module lands in ``_internal/`` when collected as source (PyInstaller's
        ``module_collection_mode`` ``"py"``): ``pkg/__init__.py``, ``pkg/mod.py`` -> its file."""
        out = {}
        for name, path in self.own.items():
            rel = name.replace(".", "/")
            out[f"{rel}/{path.name}" if path.stem == "__init__" else rel + path.suffix] = path
        return out


class _Resolver:
    """Module specs found through ``search_path`` then ``sys.path``, the way the frozen build's
    Analysis searches (``pathex`` first), without importing anything; cached per name."""

    def __init__(self, search_path: Sequence[Path]) -> None:
        self.own_dirs = [p.resolve() for p in search_path]
        self.path = [str(p) for p in self.own_dirs] + [p for p in sys.path if p and p not in map(str, self.own_dirs)]
        self.specs: dict[str, ModuleSpec | None] = {}

    def spec(self, name: str) -> ModuleSpec | None:
        if name not in self.specs:
            parent, _, _ = name.rpartition(".")
            where: list[str] | None = self.path
            if parent:
                p = self.spec(parent)
                where = list(p.submodule_search_locations or []) if p is not None else None
            try:
                self.specs[name] = PathFinder.find_spec(name, where) if where else None
            except (ImportError, ValueError, OSError):
                self.specs[name] = None
        return self.specs[name]

    def is_own(self, top: str) -> bool:
        """The top-level name resolves to a source file, package or namespace folder that lies
        directly in a folder of the search path (not merely below one: ``src/x`` under the root)."""
        spec = self.spec(top)
        if spec is None:
            return False
        if spec.origin and spec.has_location:
            if not spec.origin.endswith((".py", ".pyw")):
                return False
            origin = Path(spec.origin).resolve()
            places = [origin.parent if origin.stem == "__init__" else origin]
        else:
            places = [Path(p).resolve() for p in spec.submodule_search_locations or []]
        return bool(places) and all(p.parent in self.own_dirs for p in places)

    def file(self, name: str) -> Path | None:
        spec = self.spec(name)
        if spec is None or not spec.has_location or not spec.origin or not spec.origin.endswith((".py", ".pyw")):
            return None
        return Path(spec.origin)


def _imports(tree: ast.AST, name: str, is_package: bool) -> Iterable[tuple[str, bool]]:
    """``(dotted name, certain)`` of what a module imports; ``certain`` is False for ``from a import b``'s
    ``a.b``, which is a module only if one exists."""
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, True
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                if node.level - 1 > len(parts) or not package:
                    continue  # beyond the top-level package: an ImportError at run time
                base = ".".join(parts[:len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if not base:
                continue
            yield base, True
            for alias in node.names:
                if alias.name != "*":
                    yield f"{base}.{alias.name}", False
        elif isinstance(node, ast.Call) and _is_import_module(node) and node.args \
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str) \
                and node.args[0].value and not node.args[0].value.startswith("."):
            yield node.args[0].value, True


def app_graph(roots: Sequence[str], search_path: Sequence[Path]) -> ModuleGraph:
    """The module graph of the project's own code from ``roots`` (dotted module names: the entry
    module, hidden imports), ``search_path`` being the folders its own modules are found in.

    Roots that are not the project's own are recorded as outside modules. A file that does not
    parse raises SyntaxError (PyInstaller would fail on it too)."""
    r = _Resolver(search_path)
    own: dict[str, Path] = {}
    external: set[str] = set()
    queue: list[tuple[str, bool]] = [(n, True) for n in roots]
    seen: set[str] = set()
    while queue:
        dotted, certain = queue.pop()
        parts = dotted.split(".")
        names = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if not r.is_own(parts[0]):
            for i, n in enumerate(names):
                if certain or i < len(names) - 1 or r.spec(n) is not None:
                    external.add(n)
            continue
        for n in names:
            if n in seen:
                continue
            path = r.file(n)
            spec = r.spec(n)
            if spec is None:
                break  # not a module of the package (a name inside it, or missing)
            seen.add(n)
            if path is None:
                continue  # a namespace package: no file of its own
            own[n] = path
            tree = ast.parse(path.read_bytes(), filename=str(path))
            queue.extend(_imports(tree, n, path.stem == "__init__"))
    return ModuleGraph(own=dict(sorted(own.items())), external=tuple(sorted(external)))


def entry_module(entry: Path, search_path: Sequence[Path]) -> str | None:
    """The dotted name the entry script imports as through ``search_path`` (``src/app/__main__.py``
    with ``src`` on it: ``app.__main__``), or None when it has none: a name that is not an
    identifier, a folder on the way without ``__init__.py``, or another file found first by that name."""
    entry = entry.resolve()
    if entry.suffix != ".py":
        return None
    r = _Resolver(search_path)
    for folder in r.own_dirs:
        if not entry.is_relative_to(folder):
            continue
        parts = [*entry.relative_to(folder).parent.parts, entry.stem]
        if not all(p.isidentifier() for p in parts):
            continue
        if not all((folder.joinpath(*parts[:i]) / "__init__.py").is_file() for i in range(1, len(parts))):
            continue
        name = ".".join(parts)
        found = r.file(name)
        if found is not None and found.resolve() == entry:
            return name
    return None


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
    return {name for name, _ in _imports(tree, module, is_package)}


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
