"""The app's entry as ``[tool.mlfreeze] entry`` names it: a script or an entry point.

- A script: a path relative to the project root (``src/main.py``, ``app/__main__.py``); PyInstaller
  freezes it as it is.
- An entry point: ``package.module:function`` (the form of ``[project.scripts]``), whose module
  lives in the project's tree (at the root or under ``src/``). PyInstaller needs a script, so the
  freeze writes a launcher (:func:`launcher_text`) that imports the function and exits with what
  it returns, as pip's console-script wrappers do.

:func:`find_entry` is how ``mlfreeze init`` picks the entry of an existing project when it is not
told: ``[project.scripts]`` (and ``gui-scripts``) first, then the usual ``__main__`` locations.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlfreeze.errors import ConfigError, UsageError

_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
ENTRY_POINT = re.compile(rf"^\s*(?P<module>{_DOTTED})\s*:\s*(?P<attr>{_DOTTED})\s*(?:\[[^\]]*\])?\s*$")
SOURCE_DIRS = ("", "src")  # where a project's top-level packages live: flat and src layouts
# The launcher's file name: never the name of a project module (a script's folder is on the
# module path of the analysis, so a launcher named like the app's package would shadow it).
LAUNCHER_NAME = "mlfreeze_entry.py"


@dataclass(frozen=True, kw_only=True)
class EntryPoint:
    """``module:attr`` (``attr`` may be dotted: ``app:cli.main``)."""

    module: str
    attr: str

    def __str__(self) -> str:
        return f"{self.module}:{self.attr}"


def parse_entry_point(value: str) -> EntryPoint | None:
    """``pkg.cli:main`` -> EntryPoint; None for anything else (a script path)."""
    m = ENTRY_POINT.match(value)
    return EntryPoint(module=m.group("module"), attr=m.group("attr")) if m else None


def module_file(root: Path, module: str) -> Path | None:
    """The source file of ``module`` in the project tree (``<root>[/src]/pkg/cli.py`` or
    ``.../pkg/cli/__init__.py``), None when the tree does not hold it."""
    parts = module.split(".")
    for folder in SOURCE_DIRS:
        base = root.joinpath(folder, *parts)
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def module_root(file: Path, module: str) -> Path:
    """The folder that must be on the module path for ``module`` (whose source is ``file``) to import."""
    depth = len(module.split(".")) + (1 if file.name == "__init__.py" else 0)
    return file.parents[depth - 1]


def resolve(root: Path, value: str, where: str) -> tuple[Path, EntryPoint | None]:
    """``[tool.mlfreeze] entry`` as (source file, entry point or None). ConfigError naming ``where``
    when the script does not exist or the entry point's module is not in the project tree."""
    point = parse_entry_point(value)
    if point is None:
        script = root / value
        if not script.is_file():
            raise ConfigError(f"{where} points at {script}, which does not exist")
        return script, None
    found = module_file(root, point.module)
    if found is None:
        path = point.module.replace(".", "/")
        raise ConfigError(f"{where} is the entry point {value!r}, but neither {root} nor {root / 'src'} holds "
                          f"{path}.py or {path}/__init__.py; name a module of this project")
    return found, point


def launcher_text(point: EntryPoint) -> str:
    """The script PyInstaller freezes for an entry point: import, call, exit with its result."""
    head, _, rest = point.attr.partition(".")
    call = f"{head}.{rest}()" if rest else f"{head}()"
    return (f"# Launcher of the entry point {point}, written by mlfreeze for PyInstaller; do not edit.\n"
            "import sys\n\n"
            f"from {point.module} import {head}\n\n"
            "if __name__ == \"__main__\":\n"
            f"    sys.exit({call})\n")


# ---- how `mlfreeze init` finds the entry of an existing project ----

def main_locations(module: str) -> tuple[str, ...]:
    """The usual places of an app's ``__main__``, most specific first."""
    return (f"{module}.py", f"src/{module}/__main__.py", f"{module}/__main__.py", "__main__.py", "main.py",
            "src/main.py", "app.py", "src/app.py")


def scripts_of(pyproject: Mapping[str, Any]) -> dict[str, str]:
    """``[project.scripts]`` and ``[project.gui-scripts]``: name -> entry point."""
    project = pyproject.get("project")
    project = project if isinstance(project, dict) else {}
    out: dict[str, str] = {}
    for table in ("scripts", "gui-scripts"):
        found = project.get(table)
        if isinstance(found, dict):
            out.update({str(k): str(v) for k, v in found.items()})
    return out


def find_entry(root: Path, module: str, pyproject: Mapping[str, Any], explicit: str | None) -> tuple[str, str]:
    """(the ``entry`` value to write, how it was found) for ``mlfreeze init`` in an existing project.

    ``explicit`` (``--entry``): a script path relative to ``root``, an entry point, or the name of
    one of ``[project.scripts]``. Else the one ``[project.scripts]`` entry (several: UsageError
    listing them), else the first of :func:`main_locations` that exists. UsageError (exit 2) with
    one line when nothing fits."""
    scripts = scripts_of(pyproject)
    if explicit:
        if explicit in scripts:
            explicit = scripts[explicit]
        point = parse_entry_point(explicit)
        if point is not None:
            if module_file(root, point.module) is None:
                path = point.module.replace(".", "/")
                raise UsageError(f"--entry {explicit}: no {path}.py or {path}/__init__.py in {root} or "
                                 f"{root / 'src'}; name a module of this project (package.module:function)")
            return str(point), "--entry"
        script = Path(explicit)
        if script.is_absolute():
            try:
                script = script.resolve().relative_to(root.resolve())
            except ValueError:
                raise UsageError(f"--entry {explicit}: the script must be inside the project ({root})") from None
        if not (root / script).is_file() or script.suffix != ".py":
            raise UsageError(f"--entry {explicit}: no such Python script in {root}; pass a script path "
                             "(src/main.py) or an entry point (package.module:function)")
        return script.as_posix(), "--entry"
    if len(scripts) > 1:
        listed = ", ".join(f"{k} = {v}" for k, v in scripts.items())
        raise UsageError(f"[project.scripts] names several entry points ({listed}); pick the app's with "
                         f"--entry {next(iter(scripts))} (a script name, an entry point or a script path)")
    if scripts:
        (name, value), = scripts.items()
        point = parse_entry_point(value)
        if point is None or module_file(root, point.module) is None:
            raise UsageError(f"[project.scripts] {name} = {value!r} is not an entry point of a module in this "
                             "project; pass --entry with the app's script or package.module:function")
        return str(point), f"[project.scripts] {name}"
    for candidate in main_locations(module):
        if (root / candidate).is_file():
            return candidate, "found"
    raise UsageError(f"no entry script found in {root}: no [project.scripts] and none of "
                     f"{', '.join(main_locations(module))}; "
                     "pass --entry with the app's script (src/main.py) or entry point (package.module:function)")
