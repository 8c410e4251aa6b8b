"""``mlfreeze init [--app NAME] [--force]``: make the working directory an mlfreeze project.

Writes (each refused when it exists, unless ``--force``; nothing is written when any is refused):

- ``pyproject.toml``: ``[tool.mlfreeze]`` appended (a minimal pyproject.toml when absent);
- ``noxfile.py``: a few lines calling :func:`mlfreeze.sessions.make_sessions`, naming where the
  build sessions install mlfreeze from (the package index when this mlfreeze came from one, else a
  wheel of it built into ``build/``);
- ``mlfreeze-models/models.toml`` with a ``demo`` set: mlfreeze's tiny demo CLIP (weights,
  config, verification probes) copied into ``mlfreeze-models/models/demo-clip/`` and pinned by
  sha256, its golden embeddings in ``mlfreeze-models/goldens/``. The folder's name is not a Python
  identifier, so setuptools' flat-layout package discovery never takes it (or its ``models/`` and
  ``goldens/``) for a package of an existing project;
- ``.github/workflows/build.yml`` (build on linux-cuda) and ``lock.yml`` (locks of other profiles);
- ``locks/<profile>.txt`` for this host's profile (``mlfreeze lock``; ``--no-lock`` skips it);
- in an empty directory, a minimal working app ``<module>.py`` (embeds a text and an image with
  mlfreeze's runtime CLIP loader; answers ``--health`` and ``--mlfreeze-probe``) and a .gitignore.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
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

def tool_table(names: Names, entry: str) -> str:
    return f'''
# mlfreeze: how this app is built, verified and frozen (every key: docs/your-app.md of mlfreeze)
[tool.mlfreeze]
app = "{names.app}"
entry = "{entry}"
model_set = "demo"
manifest = "{MANIFEST.as_posix()}"
uses = ["clip"]
flavors = ["full", "lite"]

[tool.mlfreeze.budgets]
lite = "105 MB"
'''


def discovery_table(data: dict, entry: str, module: str) -> tuple[str | None, str | None]:
    """``(table to append, warning)`` that pins setuptools' package discovery of an existing project.

    setuptools' flat-layout discovery takes every top-level folder named like a package, even
    without ``__init__.py``: the ``locks/`` init adds then becomes the project's only "package" (a
    wheel without the app), or, beside the app's own package, a "Multiple top-level packages"
    error. Pinned: ``py-modules = [module]`` for ``<module>.py``, ``packages.find include`` for
    ``<module>/__main__.py``. Nothing for another build backend, a src-layout (discovery looks in
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
    if entry == f"{module}/__main__.py":
        return (f'\n# pinned by mlfreeze init: locks/ and the other folders it adds are not packages\n'
                f'[tool.setuptools.packages.find]\ninclude = ["{module}", "{module}.*"]\n'), None
    if st is not None:
        return None, (f'pyproject.toml has [tool.setuptools] without py-modules: add py-modules = ["{module}"] '
                      "to it, or setuptools takes locks/ for a package of this project")
    return (f'\n# pinned by mlfreeze init: locks/ and the other folders it adds are not packages\n'
            f'[tool.setuptools]\npy-modules = ["{module}"]\n'), None


def pyproject_text(names: Names, entry: str) -> str:
    return f'''[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{names.app}"
version = "0.1.0"
requires-python = ">=3.10"
dependencies = []

[tool.setuptools]
py-modules = ["{names.module}"]
''' + tool_table(names, entry)


def noxfile_text(mlfreeze_source: str) -> str:
    return f'''"""Build sessions from mlfreeze's profiles: `nox -l` lists them; `nox -s build-linux-cuda -- --set demo`
builds, verifies, freezes and self-tests this app."""

import nox  # noqa: F401  (nox reads the sessions registered below)
from mlfreeze.sessions import make_sessions

# where the build sessions install mlfreeze from (written by `mlfreeze init`)
make_sessions(globals(), mlfreeze={mlfreeze_source!r})
'''


def gitignore_text() -> str:
    return "build/\ndist/\n.nox/\n.venv/\n__pycache__/\n"


def app_text(names: Names) -> str:
    """The scaffold app: a CLI that embeds a text and an image with mlfreeze's runtime CLIP loader."""
    return (TEMPLATES.joinpath("app.py.txt").read_text(encoding="utf-8")
            .replace("__APP__", names.app))


def build_workflow_text() -> str:
    return TEMPLATES.joinpath("build.yml.txt").read_text(encoding="utf-8")


def lock_workflow_text() -> str:
    return TEMPLATES.joinpath("lock.yml.txt").read_text(encoding="utf-8")


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
    from mlfreeze.project.config import SOURCE_ROOT, is_checkout

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
        path = SOURCE_ROOT if is_checkout(SOURCE_ROOT) else base
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

def plan_files(directory: Path, names: Names) -> tuple[dict[Path, str], str, str]:
    """(relative path -> text, entry, what happens to pyproject.toml) for everything init writes.

    pyproject.toml: ``create`` (absent: a minimal one), ``append`` (no [tool.mlfreeze] yet: the
    table is appended) or ``configured`` (it has one: a conflict, left as it is even with --force)."""
    import mlfreeze.specs

    specs = Path(mlfreeze.specs.__file__).resolve().parent
    files: dict[Path, str] = {}
    pyproject = directory / "pyproject.toml"
    scaffold = is_empty(directory)
    entry = f"{names.module}.py"
    action = "create"
    if pyproject.is_file():
        data = read_toml(pyproject)
        configured = isinstance(data.get("tool"), dict) and "mlfreeze" in data["tool"]
        action = "configured" if configured else "append"
        for candidate in (f"{names.module}.py", f"src/{names.module}/__main__.py", f"{names.module}/__main__.py"):
            if (directory / candidate).is_file():
                entry = candidate
                break
        else:
            if not configured:
                raise UsageError(f"{pyproject} exists but no entry script was found ({names.module}.py, "
                                 f"src/{names.module}/__main__.py); pass --app with your app's module name")
    else:
        files[Path("pyproject.toml")] = pyproject_text(names, entry)
    files[Path("noxfile.py")] = ""  # filled once mlfreeze's source is known
    files[MANIFEST] = demo_manifest_text((specs / "models.toml").read_text(encoding="utf-8"))
    files[Path(".github/workflows/build.yml")] = build_workflow_text()
    files[Path(".github/workflows/lock.yml")] = lock_workflow_text()
    if scaffold:
        files[Path(entry)] = app_text(names)
        files[Path(".gitignore")] = gitignore_text()
    return files, entry, action


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


def main(args: argparse.Namespace) -> int:
    directory = Path.cwd()
    names = names_for(args.app, directory)
    files, entry, action = plan_files(directory, names)
    extra = [rel for _, rel in demo_files()]
    conflicts = sorted(str(p) for p in [*files, *extra] if (directory / p).exists())
    if action == "configured":
        conflicts.insert(0, "pyproject.toml ([tool.mlfreeze])")
    if conflicts and not args.force:
        raise UsageError(f"refusing to overwrite {', '.join(conflicts)}; pass --force to replace them")
    source, note = mlfreeze_source(directory)
    files[Path("noxfile.py")] = noxfile_text(source)
    written: list[Path] = []
    if action == "append":
        pyproject = directory / "pyproject.toml"
        current = pyproject.read_text(encoding="utf-8")
        pinned, warning = discovery_table(read_toml(pyproject), entry, Path(entry).parts[0].removesuffix(".py"))
        pyproject.write_text(current.rstrip("\n") + "\n" + tool_table(names, entry) + (pinned or ""),
                             encoding="utf-8")
        written.append(Path("pyproject.toml"))
        if warning:
            print(f"mlfreeze init: warning: {warning}")
    elif action == "configured":
        print("mlfreeze init: pyproject.toml already has [tool.mlfreeze]; left as it is (edit it by hand)")
    for rel, text in files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(rel)
    written += copy_demo(directory)
    from mlfreeze.models.manifest import check_set, load_manifest
    from mlfreeze.project.config import load_config

    config = load_config(directory)  # what was written must load: fail here, not in the first build
    check_set(load_manifest(config.manifest), "demo")
    print(f"mlfreeze init: {note}")
    for rel in written:
        print(f"  wrote {rel}")
    profile = host_profile()
    if profile and not args.no_lock:
        from mlfreeze.platforms.profiles import load_profile
        from mlfreeze.project.lock import write_lock

        try:
            lock = write_lock(config, load_profile(profile))
        except MlfreezeError as exc:
            exc.message = (f"{exc.message}; the project files above were written: run "
                           f"`mlfreeze lock --platform {profile}` once the package index is reachable")
            raise
        print(f"  wrote {lock.relative_to(directory)}")
    from mlfreeze.platforms.profiles import load_profile as _load

    session = _load(profile).session if profile else "build-<platform>"
    print(f"next: nox -s {session} -- --set demo   (list every session: nox -l)")
    return 0
