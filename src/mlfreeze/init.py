"""``mlfreeze init [--app NAME] [--entry SCRIPT|MODULE:FUNCTION] [--force]``: make this folder a project.

Writes (each refused when it exists, unless ``--force``; nothing is written when any is refused):

- ``pyproject.toml``: ``[tool.mlfreeze]`` appended (a minimal pyproject.toml when absent). In an
  existing project the entry is ``--entry`` (a script path, ``package.module:function`` or a name
  of ``[project.scripts]``), else its one ``[project.scripts]`` entry point, else the usual
  ``__main__`` locations (mlfreeze.project.entry.find_entry); ``uses`` is inferred from
  ``[project] dependencies`` (:func:`infer_uses`, printed); size budgets are left commented out
  (an ordinary app's size is not known before its first build);
- ``noxfile.py``: a few lines calling :func:`mlfreeze.sessions.make_sessions`, naming where the
  build sessions install mlfreeze from (the package index when this mlfreeze came from one, else a
  wheel of it built into ``build/``);
- ``mlfreeze-models/models.toml`` with a ``demo`` set: mlfreeze's tiny demo CLIP (weights,
  config, verification probes) copied into ``mlfreeze-models/models/demo-clip/`` and pinned by
  sha256, its golden embeddings in ``mlfreeze-models/goldens/``. The folder's name is not a Python
  identifier, so setuptools' flat-layout package discovery never takes it (or its ``models/`` and
  ``goldens/``) for a package of an existing project;
- ``.github/workflows/build.yml`` (build on linux-cuda) and ``lock.yml`` (locks of other profiles), on
  the project's build Python (mlfreeze.project.pythons). In a project that is a folder of a larger
  git repository they go to the repository root's ``.github/workflows/`` (the only place GitHub
  reads), run in the project's folder (``working-directory``) and trigger on its changes;
- ``locks/<profile>.txt`` for this host's profile (``mlfreeze lock``; ``--no-lock`` skips it);
- in an empty directory, a minimal working app ``<module>.py`` (embeds a text and an image with
  mlfreeze's runtime CLIP loader; answers ``--health`` and ``--mlfreeze-probe``) and a .gitignore.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import re
import shutil
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from mlfreeze import __version__
from mlfreeze.errors import ConfigError, MlfreezeError, UsageError
from mlfreeze.schema import read_toml

DEMO_MODEL = "demo-clip"
TEMPLATES = Path(__file__).resolve().parent / "templates"
MODELS_HOME = Path("mlfreeze-models")  # manifest, models/ and goldens/ of the project
MANIFEST = MODELS_HOME / "models.toml"
DEMO_DIR = Path("models") / DEMO_MODEL  # relative to the manifest
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")
WORKFLOW_PROFILE = "linux-cuda"  # the profile build.yml builds
# Which stack part (src/mlfreeze/platforms/stack.toml) a declared dependency means: the distributions
# that provide the part's modules. faiss: every faiss-* build (faiss-cpu, faiss-gpu-cu12, ...).
PART_DISTRIBUTIONS = {"clip": ("open-clip-torch", "clip", "openai-clip", "clip-anytorch"),
                      "faces": ("insightface",), "faiss": ("faiss",)}
DEFAULT_USES = ("clip",)  # the demo set's model kind, when no dependency names a part
# Top-level folders setuptools' flat-layout discovery never takes for packages (its own list, in part).
NOT_PACKAGES = frozenset({"tests", "test", "docs", "doc", "examples", "example", "scripts", "tools", "benchmarks",
                          "build", "dist", "locks", "src"})


@dataclass(frozen=True, kw_only=True)
class Names:
    app: str  # the executable's name
    module: str  # the scaffold's module (app with '-' and '.' as '_')


def names_for(app: str | None, directory: Path) -> Names:
    """``--app``, else an existing pyproject.toml's ``[project] name``, else the directory's name."""
    if not app and (directory / "pyproject.toml").is_file():
        project = read_toml(directory / "pyproject.toml").get("project")
        name = project.get("name") if isinstance(project, dict) else None
        app = name if isinstance(name, str) and _NAME.match(name) else None
    app = app or directory.resolve().name
    if not _NAME.match(app):
        raise UsageError(f"--app {app!r}: an app name starts with a letter and holds letters, digits, '-', '_', '.'")
    return Names(app=app, module=re.sub(r"[-.]", "_", app).lower())


def is_empty(directory: Path) -> bool:
    """No entries besides hidden ones (.git, .venv...)."""
    return not any(not p.name.startswith(".") for p in directory.iterdir())


# ---- file contents (pure) ----

def infer_uses(dependencies: Iterable[str]) -> tuple[tuple[str, ...], list[str]]:
    """(the stack parts ``dependencies`` (requirement strings) name, in stack order; ``"dist -> part"``
    for each that named one). No part named: :data:`DEFAULT_USES` and no notes."""
    from mlfreeze.platforms.profiles import requirement_name

    found: dict[str, list[str]] = {}
    for requirement in dependencies:
        name = requirement_name(requirement)
        for part, dists in PART_DISTRIBUTIONS.items():
            if name in dists or (part == "faiss" and name.startswith("faiss-")):
                found.setdefault(part, []).append(name)
    uses = tuple(p for p in PART_DISTRIBUTIONS if p in found)
    return (uses or DEFAULT_USES), [f"{d} -> {p}" for p in uses for d in found[p]]


def _toml(value: str) -> str:
    return json.dumps(value)  # a TOML basic string: JSON's escapes are TOML's


def tool_table(names: Names, entry: str, uses: Sequence[str] = DEFAULT_USES) -> str:
    return f'''
# mlfreeze: how this app is built, verified and frozen (every key: docs/your-app.md of mlfreeze)
[tool.mlfreeze]
app = {_toml(names.app)}
entry = {_toml(entry)}
model_set = "demo"
manifest = "{MANIFEST.as_posix()}"
uses = [{", ".join(_toml(u) for u in uses)}]
flavors = ["full", "lite"]

# Size budgets (exit 5 when a bundle exceeds one) are left out until the first build has measured
# the bundles: then set them from dist/reports/sizes-<platform>.md plus headroom, e.g.
# [tool.mlfreeze.budgets]
# full = "6 GB"
# lite = "150 MB"
'''


def discovery_table(data: dict, entry: str, module: str, packages: Sequence[str] = ()) -> tuple[str | None, str | None]:
    """``(table to append, warning)`` that pins setuptools' package discovery of an existing project.

    setuptools' flat-layout discovery takes every top-level folder named like a package, even
    without ``__init__.py``: the ``locks/`` init adds then becomes the project's only "package" (a
    wheel without the app), or, beside the app's own package, a "Multiple top-level packages"
    error. Pinned: ``py-modules = [module]`` for ``<module>.py``, ``packages.find include`` for
    ``<module>/__main__.py`` (any entry file inside the ``<module>/`` package); with a top-level
    script, ``packages`` (the project's top-level packages beside it) are kept by a
    ``packages.find include``. Nothing for another build backend, a src-layout (discovery looks in
    ``src/`` only) or a project that already lists its packages or modules; a warning where a
    ``[tool.setuptools]`` table exists and a key would have to go inside it."""
    backend = str((data.get("build-system") or {}).get("build-backend", "setuptools.build_meta"))
    tool = data.get("tool")
    tool = tool if isinstance(tool, dict) else {}
    st = tool.get("setuptools")
    st = st if isinstance(st, dict) else None
    if not backend.startswith("setuptools") or entry.startswith("src/"):
        return None, None
    if st is not None and ("packages" in st or "py-modules" in st):
        return None, None
    head = "\n# pinned by mlfreeze init: locks/ and the other folders it adds are not packages\n"
    if len(Path(entry).parts) > 1 and Path(entry).parts[0] == module:
        return f'{head}[tool.setuptools.packages.find]\ninclude = ["{module}", "{module}.*"]\n', None
    if st is not None:
        return None, (f'pyproject.toml has [tool.setuptools] without py-modules: add py-modules = ["{module}"] '
                      "to it, or setuptools takes locks/ for a package of this project")
    include = ", ".join(f'"{p}", "{p}.*"' for p in packages if p != module)
    found = f"\n[tool.setuptools.packages.find]\ninclude = [{include}]\n" if include else ""
    return f'{head}[tool.setuptools]\npy-modules = ["{module}"]\n{found}', None


def top_level_packages(directory: Path) -> list[str]:
    """The flat-layout packages at ``directory`` (folders with ``__init__.py`` setuptools would take)."""
    return sorted(p.name for p in directory.iterdir() if (p / "__init__.py").is_file()
                  and p.name.isidentifier() and p.name not in NOT_PACKAGES)


def pyproject_text(names: Names, entry: str, uses: Sequence[str] = DEFAULT_USES, setuptools: str | None = None) -> str:
    """A minimal pyproject.toml; ``setuptools``: its package-discovery table (default: the entry
    script's module as the one ``py-modules``)."""
    if setuptools is None:
        setuptools = f'\n[tool.setuptools]\npy-modules = ["{Path(entry).stem}"]\n'
    return f'''[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{names.app}"
version = "0.1.0"
requires-python = ">=3.10"
dependencies = []
''' + setuptools + tool_table(names, entry, uses)


def noxfile_text(mlfreeze_source: str) -> str:
    return f'''"""Build sessions from mlfreeze's profiles: `nox -l` lists them; `nox -s build-linux-cuda -- --set demo`
builds, verifies, freezes and self-tests this app."""

import nox
from mlfreeze.sessions import make_sessions

nox.options.error_on_missing_interpreters = True  # a build whose Python is missing fails, never "skips"

# where the build sessions install mlfreeze from (written by `mlfreeze init`)
make_sessions(globals(), mlfreeze={mlfreeze_source!r})
'''


def gitignore_text() -> str:
    return "build/\ndist/\n.nox/\n.venv/\n__pycache__/\n"


BUILD_OUTPUTS = ("build/", "dist/", ".nox/")  # what a build writes in the project: never committed


def ignore_build_outputs(gitignore: Path) -> list[str]:
    """Append to ``gitignore`` (created when absent) the build outputs it does not ignore yet
    (``build/``, ``dist/``, ``.nox/``; ``build``, ``/build`` and ``/build/`` count as ignoring ``build/``);
    returns the lines added (none: the file is left untouched)."""
    text = gitignore.read_text(encoding="utf-8") if gitignore.is_file() else ""
    have = {line.strip().strip("/") for line in text.splitlines() if line.strip() and not line.startswith("#")}
    missing = [entry for entry in BUILD_OUTPUTS if entry.strip("/") not in have]
    if missing:
        sep = "" if not text or text.endswith("\n") else "\n"
        gitignore.write_text(f"{text}{sep}# mlfreeze build outputs\n" + "".join(f"{m}\n" for m in missing),
                             encoding="utf-8")
    return missing


def app_text(names: Names) -> str:
    """The scaffold app: a CLI that embeds a text and an image with mlfreeze's runtime CLIP loader."""
    return (TEMPLATES.joinpath("app.py.txt").read_text(encoding="utf-8")
            .replace("__APP__", names.app))


def _workflow(template: str, *, name: str, python: str, subdir: str) -> str:
    """A workflow template for a project at the repository root (``subdir`` ""), or in its folder
    ``subdir``: run there (``working-directory``), triggered by its changes, its paths prefixed."""
    quoted = json.dumps(subdir)
    paths = f'\n    paths: [{json.dumps(subdir + "/**")}, ".github/workflows/{template.removesuffix(".txt")}"]'
    return (TEMPLATES.joinpath(template).read_text(encoding="utf-8")
            .replace("__NAME__", f"{name} {subdir}" if subdir else name)
            .replace("__PATHS__", paths if subdir else "")
            .replace("__DEFAULTS__", f"\n    defaults:\n      run:\n        working-directory: {quoted}"
                     if subdir else "")
            .replace("__DIR__", f"{subdir}/" if subdir else "")
            .replace("__PYTHON__", python))


def build_workflow_text(python: str = "3.11", subdir: str = "") -> str:
    return _workflow("build.yml.txt", name="build", python=python, subdir=subdir)


def lock_workflow_text(python: str = "3.11", subdir: str = "") -> str:
    return _workflow("lock.yml.txt", name="lock", python=python, subdir=subdir)


def git_root(directory: Path) -> Path | None:
    """The nearest folder at or above ``directory`` holding ``.git`` (a folder, or a worktree's file)."""
    here = directory.resolve()
    return next((d for d in (here, *here.parents) if (d / ".git").exists()), None)


def workflows_home(directory: Path) -> tuple[Path, str]:
    """(where the workflows go, relative to ``directory``; the project's folder relative to the
    repository root, "" when the project is the root or not in a git repository). GitHub reads
    workflows only from the repository root's ``.github/workflows/``."""
    top = git_root(directory)
    here = directory.resolve()
    if top is None or top == here:
        return Path(".github/workflows"), ""
    return Path(os.path.relpath(top / ".github" / "workflows", here)), here.relative_to(top).as_posix()


def demo_manifest_text(source: str) -> str:
    """src/mlfreeze/specs/models.toml's demo CLIP sections as the project's models.toml: set ``demo`` = the CLIP only,
    URLs relative to the new file (``models/demo-clip/<file>``)."""
    sections: list[str] = []
    keep = False
    for line in source.splitlines():
        header = re.match(r"^\[\[?\s*([^\]]+?)\s*\]\]?", line)
        if header:
            name = header.group(1)
            keep = name == f"models.{DEMO_MODEL}" or name.startswith(f"models.{DEMO_MODEL}.")
            if keep:
                sections.append("")
        if keep:
            sections[-1] += line + "\n"
    if not sections:
        raise ConfigError(f"mlfreeze's models.toml has no [models.{DEMO_MODEL}]")
    body = "\n".join(s.rstrip() + "\n" for s in sections)
    body = re.sub(r'urls = \["demo/([^"]+)"\]',
                  lambda m: f'urls = ["{(DEMO_DIR / Path(m.group(1)).name).as_posix()}"]', body)
    return ("# Model pins of this project (mlfreeze's manifest format: docs/your-app.md of mlfreeze).\n"
            "# URLs without a scheme are relative to this file. `demo`: mlfreeze's tiny demo CLIP,\n"
            "# committed here so a build runs offline; add your own sets beside it.\n\n"
            f'[sets]\ndemo = ["{DEMO_MODEL}"]\n\n' + body)


# ---- where mlfreeze comes from ----

def mlfreeze_source(project: Path) -> tuple[str, str]:
    """(what the noxfile installs mlfreeze from, a note). From the index when this mlfreeze came from one
    (no PEP 610 direct_url.json), else a wheel of it under ``build/`` (copied or built)."""
    from mlfreeze import _proc as proc
    from mlfreeze.project.config import SOURCE_ROOT, is_source_tree

    try:
        dist = md.distribution("mlfreeze")
        direct = dist.read_text("direct_url.json")
        base = Path(str(dist.locate_file("")))
    except md.PackageNotFoundError:
        dist, direct, base = None, None, None
    installed = base is not None and base.name in ("site-packages", "dist-packages")
    if installed and not direct:  # PEP 610: no direct_url.json means it came from an index
        return f"mlfreeze=={__version__}", "mlfreeze comes from the package index"
    url = json.loads(direct)["url"] if direct else ""
    path = Path(unquote(urlparse(url).path)) if url.startswith("file:") else None
    if path is None and url:
        return f"mlfreeze @ {url}", f"mlfreeze comes from {url}"
    if path is None:  # running from a checkout (not installed, or its in-tree egg-info)
        path = SOURCE_ROOT if is_source_tree(SOURCE_ROOT) else base
    if path is None:
        raise UsageError("cannot tell where this mlfreeze was installed from; install it with pip and run "
                         "`mlfreeze init` again")
    out = project / "build"
    out.mkdir(parents=True, exist_ok=True)
    if path.is_file() and path.suffix == ".whl":
        shutil.copyfile(path, out / path.name)
        return f"build/{path.name}", f"copied the wheel mlfreeze was installed from ({path}) into build/"
    before = set(out.glob("mlfreeze-*.whl"))
    status = proc.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", out, path], check=False)
    wheels = sorted(set(out.glob("mlfreeze-*.whl")) - before) or sorted(out.glob(f"mlfreeze-{__version__}-*.whl"))
    if status != 0 or not wheels:
        raise UsageError(f"could not build a wheel of mlfreeze from {path} (pip exit {status}); install mlfreeze "
                         "from a wheel or the package index and run `mlfreeze init` again")
    return f"build/{wheels[-1].name}", f"built a wheel of mlfreeze from {path} into build/"


# ---- do it ----

@dataclass(frozen=True, kw_only=True)
class Project:
    """What init found in the directory: its pyproject.toml (``{}`` when absent), the entry and how it
    was found, the inferred ``uses`` and why, the build Python of :data:`WORKFLOW_PROFILE` and where
    the workflows go."""

    data: dict[str, Any]
    action: str  # create | append | configured
    entry: str
    entry_found: str  # "--entry", "[project.scripts] NAME", "found", "scaffold", "configured"
    uses: tuple[str, ...]
    uses_notes: tuple[str, ...]
    python: str
    workflows: Path  # relative to the project
    subdir: str  # the project's folder in its git repository, "" at the root


def inspect(directory: Path, names: Names, entry: str | None = None) -> Project:
    """Everything init decides before writing (pure: reads the directory). UsageError / ConfigError
    (exit 2) when the entry cannot be found or the project's Python is one the build profile lacks."""
    from mlfreeze.platforms.profiles import load_profile
    from mlfreeze.project.entry import find_entry
    from mlfreeze.project.pythons import choose

    pyproject = directory / "pyproject.toml"
    data: dict[str, Any] = read_toml(pyproject) if pyproject.is_file() else {}
    tools = data.get("tool")
    table = tools.get("mlfreeze") if isinstance(tools, dict) else None
    mine: dict[str, Any] = table if isinstance(table, dict) else {}
    configured = isinstance(table, dict)
    section = data.get("project")
    project: dict[str, Any] = section if isinstance(section, dict) else {}
    deps = project.get("dependencies", [])
    deps = deps if isinstance(deps, list) else []
    uses, notes = infer_uses(d for d in deps if isinstance(d, str))
    if not pyproject.is_file():
        action = "create"
        if is_empty(directory):
            if entry:
                raise UsageError(f"--entry {entry}: {directory} is empty; init scaffolds a new app "
                                 f"({names.module}.py) there: run it without --entry, or in your project's folder")
            value, found = f"{names.module}.py", "scaffold"
        else:
            value, found = find_entry(directory, names.module, data, entry)
    elif configured:
        action, value, found = "configured", str(mine.get("entry", "")), "configured"
    else:
        value, found = find_entry(directory, names.module, data, entry)
        action = "append"
    tool_python = mine.get("python")
    python = choose(load_profile(WORKFLOW_PROFILE), requires_python=str(project.get("requires-python", "")),
                    python=tool_python if isinstance(tool_python, str) else None, pyproject=pyproject)
    workflows, subdir = workflows_home(directory)
    return Project(data=data, action=action, entry=value, entry_found=found, uses=uses, uses_notes=tuple(notes),
                   python=python.version, workflows=workflows, subdir=subdir)


def plan_files(directory: Path, names: Names, entry: str | None = None) -> tuple[dict[Path, str], str, str]:
    """(relative path -> text, entry, what happens to pyproject.toml) for everything init writes.

    pyproject.toml: ``create`` (absent: a minimal one), ``append`` (no [tool.mlfreeze] yet: the
    table is appended) or ``configured`` (it has one: a conflict, left as it is even with --force).
    ``entry``: ``--entry`` (mlfreeze.project.entry.find_entry)."""
    return _files(directory, names, inspect(directory, names, entry))


def _files(directory: Path, names: Names, found: Project) -> tuple[dict[Path, str], str, str]:
    import mlfreeze.specs

    specs = Path(mlfreeze.specs.__file__).resolve().parent
    files: dict[Path, str] = {}
    if found.action == "create":
        files[Path("pyproject.toml")] = pyproject_text(names, found.entry)
    files[Path("noxfile.py")] = ""  # filled once mlfreeze's source is known
    files[MANIFEST] = demo_manifest_text((specs / "models.toml").read_text(encoding="utf-8"))
    files[found.workflows / "build.yml"] = build_workflow_text(found.python, found.subdir)
    files[found.workflows / "lock.yml"] = lock_workflow_text(found.python, found.subdir)
    if found.entry_found == "scaffold":
        files[Path(found.entry)] = app_text(names)
        files[Path(".gitignore")] = gitignore_text()
    return files, found.entry, found.action


def demo_files() -> list[tuple[Path, Path]]:
    """(source in mlfreeze, path in the project) of every file of the demo CLIP and its goldens."""
    import mlfreeze.specs
    from mlfreeze.models.manifest import load_manifest

    specs = Path(mlfreeze.specs.__file__).resolve().parent
    model = load_manifest(specs / "models.toml").models[DEMO_MODEL]
    pairs = [(specs / a.urls[0], MODELS_HOME / DEMO_DIR / Path(a.urls[0]).name) for a in model.artifacts]
    return [*pairs, (specs / "goldens" / f"{DEMO_MODEL}.json", MODELS_HOME / "goldens" / f"{DEMO_MODEL}.json")]


def copy_demo(directory: Path) -> list[Path]:
    """The demo CLIP's files (every artifact: weights, config, pinned ONNX towers) and its goldens,
    copied beside the new models.toml."""
    pairs = demo_files()
    for src, rel in pairs:
        (directory / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, directory / rel)
    return [rel for _, rel in pairs]


def host_profile() -> str | None:
    """The profile whose lock init writes here: PyPI's default torch on this host."""
    from mlfreeze.hostinfo import current

    host = current()
    return {("linux", "x86_64"): "linux-cuda", ("macos", "arm64"): "mac-arm64", ("macos", "x86_64"): "mac-x64",
            ("windows", "x86_64"): "win-cpu"}.get((host.os, host.arch))


def _entry_file(directory: Path, entry: str) -> str:
    """The entry's source file relative to ``directory`` (an entry point's module file)."""
    from mlfreeze.project.entry import module_file, parse_entry_point

    point = parse_entry_point(entry)
    found = module_file(directory, point.module) if point else None
    return found.relative_to(directory).as_posix() if found else entry


def main(args: argparse.Namespace) -> int:
    directory = Path.cwd()
    names = names_for(args.app, directory)
    found = inspect(directory, names, getattr(args, "entry", None))
    files, entry, action = _files(directory, names, found)
    entry_file = _entry_file(directory, entry)
    module = Path(entry_file).parts[0].removesuffix(".py") if Path(entry_file).parts[0] != "src" else names.module
    pinned, warning = discovery_table(found.data, entry_file, module, top_level_packages(directory))
    if action == "create":
        files[Path("pyproject.toml")] = pyproject_text(names, entry, found.uses, pinned or "")
    extra = [rel for _, rel in demo_files()]
    conflicts = sorted(str(p) for p in [*files, *extra] if (directory / p).exists())
    if action == "configured":
        conflicts.insert(0, "pyproject.toml ([tool.mlfreeze])")
    if conflicts and not args.force:
        raise UsageError(f"refusing to overwrite {', '.join(conflicts)}; pass --force to replace them (or move "
                         "yours aside)")
    source, note = mlfreeze_source(directory)
    files[Path("noxfile.py")] = noxfile_text(source)
    written: list[Path] = []
    if action == "append":
        pyproject = directory / "pyproject.toml"
        current = pyproject.read_text(encoding="utf-8")
        pyproject.write_text(current.rstrip("\n") + "\n" + tool_table(names, entry, found.uses) + (pinned or ""),
                             encoding="utf-8")
        written.append(Path("pyproject.toml"))
    elif action == "configured":
        print("mlfreeze init: pyproject.toml already has [tool.mlfreeze]; left as it is (edit it by hand)")
    if warning and action == "append":
        print(f"mlfreeze init: warning: {warning}")
    for rel, text in files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(rel)
    written += copy_demo(directory)
    if found.entry_found != "scaffold" and ignore_build_outputs(directory / ".gitignore"):
        written.append(Path(".gitignore"))  # the wheel init puts in build/, and what builds write, stay out of git
    from mlfreeze.models.manifest import check_set, load_manifest
    from mlfreeze.project.config import load_config

    config = load_config(directory)  # what was written must load: fail here, not in the first build
    check_set(load_manifest(config.manifest), "demo")
    print(f"mlfreeze init: {note}")
    if action != "configured":
        how = {"scaffold": "the new app", "found": "found", "--entry": "--entry"}.get(found.entry_found,
                                                                                     found.entry_found)
        print(f"mlfreeze init: entry = {entry} ({how})")
        why = (f"inferred from [project] dependencies: {', '.join(found.uses_notes)}" if found.uses_notes else
               "no dependency names open-clip-torch, insightface or faiss: the demo set's CLIP; edit it")
        print(f"mlfreeze init: uses = {list(found.uses)} ({why})")
        print("mlfreeze init: no size budgets yet: set [tool.mlfreeze.budgets] from the first build's "
              "dist/reports/sizes-*.md (commented example in pyproject.toml)")
    print(f"mlfreeze init: builds on Python {found.python} (linux-cuda; requires-python and "
          "[tool.mlfreeze] python decide)")
    if found.subdir:
        print(f"mlfreeze init: this project is the folder {found.subdir}/ of a git repository; GitHub reads "
              f"workflows only at its root, so they go to {found.workflows.as_posix()}/ and run in {found.subdir}/")
    for rel in written:
        print(f"  wrote {rel.as_posix()}")
    profile = host_profile()
    if profile and not args.no_lock:
        from mlfreeze.platforms.profiles import load_profile
        from mlfreeze.project.lock import write_lock

        try:
            lock = write_lock(config, load_profile(profile))
        except MlfreezeError as exc:
            exc.message = (f"{exc.message}; the project files above were written: fix that, then run "
                           f"`mlfreeze lock --platform {profile}`")
            raise
        print(f"  wrote {lock.relative_to(directory)}")
    from mlfreeze.platforms.profiles import load_profile as _load

    session = _load(profile).session if profile else "build-<platform>"
    print(f"next: nox -s {session} -- --set demo   (list every session: nox -l)")
    return 0
