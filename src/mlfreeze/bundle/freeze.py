"""The freeze stage: one PyInstaller onedir bundle per (platform, flavor).

Plan (pure): the bundle's name, the spec parameters, the prune rules that apply, the models
it will hold and the hash of every input. Do (effectful): skip when an existing bundle was
built from the same inputs; update it in place when only the project's own files changed
(:func:`update_in_place`: hard links to the last bundle, the app's source files replaced, no
PyInstaller); else run PyInstaller on src/mlfreeze/specs/<flavor>.spec in a staging
directory, prune, copy the models, move the bundle into dist/, self-test it from a clean
environment (src/mlfreeze/bundle/selftest.py), then ship the flavor's verify report, write RECORD
(mlfreeze_runtime.record), BUILD-INFO.json and the incremental stamp.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform as _platform
import re
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import mlfreeze
import mlfreeze.specs  # noqa: E402
import mlfreeze_runtime  # noqa: E402  (light: imports no ML library)
import mlfreeze_runtime.verify  # noqa: E402
from mlfreeze import _proc as proc
from mlfreeze import hostinfo
from mlfreeze.bundle import buildinfo, cuda_archs, glibc, incremental, modgraph, prune, selftest, signing
from mlfreeze.errors import FreezeError, VerificationError
from mlfreeze.models.cache import hash_file
from mlfreeze.platforms.profiles import Profile
from mlfreeze.project.config import bundle_name, find_root, load_config
from mlfreeze.project.signing import Signing
from mlfreeze_runtime import record as _record
from mlfreeze_runtime.buildinfo import MODEL_FLAVORS  # noqa: E402  (data: spec files, hooks, the self-test's entry script)
from mlfreeze_runtime.contract import AppContract, write_contract
from mlfreeze_runtime.processes import ENTRY_MODULE_FILE

SPECS = Path(mlfreeze.specs.__file__).resolve().parent
# The runtime package every bundle ships (collected by src/mlfreeze/specs/hooks/hook-mlfreeze_runtime.py).
RUNTIME_SOURCES = (Path(mlfreeze_runtime.__file__).resolve().parent,
                   Path(mlfreeze_runtime.verify.__file__).resolve().parent)
HOOKS = SPECS / "hooks"
RUNTIME_HOOK = HOOKS / "rthook_models_dir.py"
NAMES_HOOK = HOOKS / "rthook_models_by_name.py"  # by-name loads resolve to models/ (mlfreeze_runtime.names)
# Every bundle, first: multiprocessing.freeze_support() (a spawn/forkserver child runs its target and
# exits before the app parses its arguments), then stdout/stderr for a windowed app (a log file).
PROCESS_HOOKS = (HOOKS / "rthook_freeze_support.py", HOOKS / "rthook_stdio.py")
# PyInstaller runs custom runtime hooks before its own, so its multiprocessing hook (which makes
# freeze_support() recognise spawn, forkserver and resource-tracker children on every OS) goes first.
PYINSTALLER_MULTIPROCESSING_HOOK = ("hooks", "rthooks", "pyi_rth_multiprocessing.py")


def process_hooks() -> list[str]:
    """The runtime hooks every app runs first: PyInstaller's multiprocessing hook (from the PyInstaller
    that will freeze; found without importing it), then :data:`PROCESS_HOOKS`."""
    import importlib.util

    spec = importlib.util.find_spec("PyInstaller")
    found = [Path(p).joinpath(*PYINSTALLER_MULTIPROCESSING_HOOK) for p in (spec.submodule_search_locations or [])] \
        if spec is not None else []
    return [str(p) for p in found if p.is_file()][:1] + [str(h) for h in PROCESS_HOOKS]
ENTRY_HOOK = HOOKS / "rthook_entry.py"
SELFTEST_ENTRY = SPECS / "selftest_entry.py"
UPDATE_ENTRY = SPECS / "update_entry.py"  # <app>-update, frozen from its own Analysis in every flavor
# Always kept out of <app>-update's Analysis: the self-test, and pyca/cryptography (a 14 MB Rust
# extension in every bundle, lite included). securesystemslib verifies the ed25519
# signatures `mlfreeze publish` makes with its own pure-Python code when cryptography is absent.
UPDATER_EXCLUDES = ("mlfreeze_runtime.verify", "cryptography", "cffi", "_cffi_backend")
# What the updater imports although the lite app excludes it: tuf.ngclient imports urllib3 (its
# default fetcher) at import time; the updater's own fetcher goes through mlfreeze_runtime's http,
# whose TLS trusts the machine's store (truststore) with certifi's bundle as the fallback.
UPDATER_NEEDS = ("urllib3", "certifi", "truststore")
LOG_LEVEL_ENV = "MLFREEZE_PYINSTALLER_LOG"


@dataclass(frozen=True, kw_only=True)
class AppConfig:
    """What to freeze: ``[tool.mlfreeze]`` and ``[project].version`` of pyproject.toml."""

    app: str
    entry: Path  # the script PyInstaller freezes: the entry script, or the launcher of entry_point
    version: str
    model_set: str
    sources: tuple[Path, ...]  # hashed whole for incremental builds (mlfreeze's runtime package)
    pathex: tuple[Path, ...]
    entry_point: str | None = None  # "package.module:function": entry is its launcher (write_launcher)
    # [tool.mlfreeze] uses / hiddenimports / excludes / datas / prune (mlfreeze.project.config)
    uses: tuple[str, ...] = ("clip", "faces", "faiss")
    hiddenimports: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()
    datas: tuple[tuple[Path, str], ...] = ()
    prune: tuple[prune.Rule, ...] = ()
    update_root: Path | None = None  # [tool.mlfreeze] update_root: frozen in as update-root.json
    unpinned_goldens: tuple[str, ...] = ()  # [tool.mlfreeze] unpinned_goldens: may ship without pinned goldens
    module_collection_mode: tuple[tuple[str, str], ...] = ()  # [tool.mlfreeze] module_collection_mode
    console: bool = True  # [tool.mlfreeze] console: false builds a windowed app (the spec's EXE console=...)
    signing: Signing = field(default_factory=Signing)  # [tool.mlfreeze.signing] (mlfreeze.bundle.signing)
    contract: AppContract = field(default_factory=AppContract)  # [tool.mlfreeze] serve / smoke: app-contract.json


@dataclass(frozen=True, kw_only=True)
class BundleModel:
    """One model as it lands in ``models/``: files by bundle-relative path."""

    id: str
    kind: str
    arch: str
    embed_dim: int
    files: Mapping[str, Path]  # "<id>/<name>" -> source file
    sha256: Mapping[str, str]  # "<id>/<name>" -> hex
    roles: Mapping[str, str]  # file name -> role ("weights", "config", ...)
    verify: Mapping[str, Any]  # the [models.<id>.verify] table, for the frozen self-test
    derived_from: Mapping[str, str] = field(default_factory=dict)  # file name -> "<id>@<weights sha256>" (exports)
    provides: tuple[str, ...] = ()  # by-name loads it answers (mlfreeze_runtime.names)
    revision: str = ""  # pinned hub revision (hf-hub models)


def load_app_config(root: Path | None = None) -> AppConfig:
    """What to freeze, from the project's ``[tool.mlfreeze]`` (mlfreeze.project.config validates it).

    The project's own modules are found from its root, its ``src/`` and the folder above the entry
    script (an entry inside a package, ``src/app/__main__.py``, imports ``app``); an entry point's
    module from the folder that holds its top-level package, and PyInstaller freezes its launcher
    (``build/mlfreeze-entry/``, :func:`write_launcher`). mlfreeze's runtime comes from wherever
    mlfreeze is installed.
    """
    from mlfreeze.project.entry import LAUNCHER_NAME, module_root

    cfg = load_config(root)
    entry, above = cfg.entry, cfg.entry.parent.parent
    if cfg.entry_point:
        entry, above = cfg.build_dir / "mlfreeze-entry" / LAUNCHER_NAME, module_root(cfg.entry,
                                                                                   cfg.entry_point.split(":")[0])
    src = cfg.root / "src"
    return AppConfig(app=cfg.app, entry=entry, version=cfg.version, model_set=cfg.model_set,
                     sources=tuple(p for p in RUNTIME_SOURCES if p.exists()), entry_point=cfg.entry_point,
                     pathex=(cfg.root, above, *((src,) if src.is_dir() else ())), uses=cfg.uses,
                     hiddenimports=cfg.hiddenimports, excludes=cfg.excludes, datas=cfg.datas, prune=cfg.prune,
                     update_root=cfg.update_root, unpinned_goldens=cfg.unpinned_goldens, console=cfg.console,
                     signing=cfg.signing, contract=cfg.contract, module_collection_mode=cfg.module_collection_mode)


def write_launcher(app: AppConfig) -> None:
    """For an entry point, the script PyInstaller freezes (mlfreeze.project.entry.launcher_text) at ``app.entry``."""
    from mlfreeze.project.entry import launcher_text, parse_entry_point

    point = parse_entry_point(app.entry_point or "")
    if point is not None:
        app.entry.parent.mkdir(parents=True, exist_ok=True)
        app.entry.write_text(launcher_text(point), encoding="utf-8")


def project_sources(app: AppConfig, root: Path) -> list[Path]:
    """The project files the bundle holds (mlfreeze.bundle.modgraph): the entry script (not a
    launcher, which is made from ``entry_point``), the project modules it, the entry point's module
    and the hidden imports import, transitively, looked up in the pathex folders inside ``root``;
    and every file ``[tool.mlfreeze] datas`` collects. Nothing else under ``root`` is read."""
    from mlfreeze.bundle.modgraph import project_modules

    top = root.resolve()
    roots = [p.resolve() for p in dict.fromkeys([*app.pathex, app.entry.parent]) if p.resolve().is_relative_to(top)]
    module = app.entry_point.split(":")[0] if app.entry_point else None
    files = project_modules(roots=[r for r in roots if r.is_dir()],
                            scripts=() if module else (app.entry.resolve(),),
                            modules=(*((module,) if module else ()), *app.hiddenimports))
    for source, _ in data_pairs(app.datas):
        path = Path(source)
        files += sorted(f for f in path.rglob("*") if f.is_file() and "__pycache__" not in f.parts) \
            if path.is_dir() else [path]
    return files


# What a slim bundle's CLIP imports instead of the clip part's torch modules (mlfreeze_runtime.onnx_clip).
SLIM_CLIP_HIDDENIMPORTS = ("onnxruntime", "mlfreeze_runtime.onnx_clip", "mlfreeze_runtime.tokenizer",
                           "mlfreeze_runtime.preprocess_np", "ftfy", "regex")


def stack_modules(uses: Sequence[str], flavor: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(hidden imports of the parts the app uses, excludes of those it does not) for ``flavor``.

    A lite bundle takes no part (prune.toml excludes the whole ML stack from it); a slim bundle
    takes the clip part as ONNX (:data:`SLIM_CLIP_HIDDENIMPORTS`) and excludes its torch modules."""
    from mlfreeze.platforms.profiles import load_stack

    stack = load_stack()
    hidden: list[str] = []
    excludes: list[str] = []
    for name, part in stack.parts.items():
        if name in uses and flavor == "slim" and part.torch:  # CLIP as ONNX: onnxruntime, not torch
            hidden += SLIM_CLIP_HIDDENIMPORTS
            excludes += part.excludes
        elif name in uses and flavor != "lite":
            hidden += part.hiddenimports
        elif name not in uses:
            excludes += part.excludes
    return tuple(hidden), tuple(excludes)


def data_pairs(datas: Sequence[tuple[Path, str]]) -> list[list[str]]:
    """[tool.mlfreeze] datas as the spec's [source, destination] pairs; a glob source expands.
    FreezeError (exit 4) when a source matches nothing."""
    out = []
    for src, dest in datas:
        matches = sorted(src.parent.glob(src.name)) if any(c in src.name for c in "*?[") else [src]
        found = [m for m in matches if m.exists()]
        if not found:
            raise FreezeError(f"[tool.mlfreeze] datas: {src} matches no file; fix the path in pyproject.toml")
        out += [[str(m), dest] for m in found]
    return out


# What the child interpreter runs: for each module, whether it is importable with pathex on
# sys.path and whether PyInstaller's module graph (which walks sys.path, not import hooks) can see
# it. A module that only an import hook provides (setuptools' default editable finder) fails.
_FIND = """
import importlib.machinery, importlib.util, json, sys
missing, hooked = [], []
for name in json.loads(sys.argv[1]):
    try:
        found = importlib.util.find_spec(name) is not None
    except Exception:
        found = False
    if not found:
        missing.append(name)
    elif importlib.machinery.PathFinder.find_spec(name.split(".")[0], sys.path) is None \
            and name.split(".")[0] not in sys.builtin_module_names:
        hooked.append(name)
print(json.dumps({"missing": missing, "hooked": hooked}))
"""


def check_hidden_imports(modules: Sequence[str], pathex: Sequence[str], python: str = sys.executable) -> None:
    """Refuse (FreezeError, exit 4) hidden imports PyInstaller would not find, before it runs for minutes."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(pathex)}
    done = proc.capture([python, "-c", _FIND, json.dumps(list(modules))], env=env)
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise FreezeError(f"could not check the hidden imports with {python}: {done.stderr.strip()[:300]}") from None
    if result["missing"]:
        raise FreezeError(f"hidden import(s) {', '.join(result['missing'])} cannot be found by {python} (pathex: "
                          f"{', '.join(pathex)}): install them, or drop them from [tool.mlfreeze] hiddenimports "
                          "/ uses; nothing was frozen")
    if result["hooked"]:
        raise FreezeError(f"hidden import(s) {', '.join(result['hooked'])} are importable only through an import "
                          "hook (an editable install?), which PyInstaller cannot see: reinstall non-editable or with "
                          "`pip install -e . --config-settings editable_mode=strict`; nothing was frozen")


def entry_module_name(entry: Path, pathex: Sequence[Path]) -> str | None:
    """The import name of the entry script under the deepest ``pathex`` folder that holds it
    (``src/app/__main__.py`` with ``src`` on pathex -> ``app.__main__``), None when it has none or
    does not parse: PyInstaller must report that entry's SyntaxError, which it passes over when the
    entry is also one of the Analysis's hidden imports (the bundle then fails only at its first start)."""
    try:
        ast.parse(entry.read_bytes(), filename=str(entry))
    except (SyntaxError, ValueError):
        return None
    except OSError:
        pass  # not written yet (a launcher made at freeze time): named all the same
    for base in sorted(pathex, key=lambda p: len(Path(p).resolve().parts), reverse=True):
        try:
            rel = entry.resolve().relative_to(Path(base).resolve()).with_suffix("")
        except ValueError:
            continue
        name = ".".join(rel.parts)
        if rel.parts and all(p.isidentifier() for p in rel.parts) and name != "__main__":
            return name
    return None


def spec_params(*, app: AppConfig, flavor: str, name: str, excludes: Sequence[str],
                hiddenimports: Sequence[str] = (), updater_excludes: Sequence[str] = (),
                entry_module: str | None = None, own_packages: Sequence[str] = ()) -> dict[str, Any]:
    """The JSON the spec reads (src/mlfreeze/specs/<flavor>.spec documents every key).

    ``hiddenimports``/``excludes``: prune.toml's for the flavor; the stack parts the app uses add
    their modules, the parts it does not use are excluded, and [tool.mlfreeze] adds its own.
    ``updater_excludes``: what ``<app>-update``'s own Analysis keeps out (prune.toml's ``updater``
    list: the ML stack and the app's libraries); the self-test's package is always among them.
    ``entry_module``: the entry's dotted name (modgraph.entry_module); with it the app's top-level
    ``own_packages`` are collected as source files into ``_internal/`` (``module_collection_mode``
    ``"py"``, outside the PYZ) and the entry module is a hidden import, which a launcher script
    (:func:`launcher_source`, ``script`` once :func:`plan_freeze` writes it) runs. Without it
    ``script`` is the entry itself, and the entry's name under ``pathex`` (:func:`entry_module_name`,
    when it has one) is still a hidden import: a spawn child imports it as ``__mp_main__``
    (mlfreeze_runtime.processes)."""
    part_hidden, part_excludes = stack_modules(app.uses, flavor)
    app_hidden = app.hiddenimports
    if flavor == "lite":  # the app's own modules stay; none of the ML stack that lite leaves out comes back
        kept_out = (*excludes, *part_excludes)
        app_hidden = tuple(h for h in app_hidden if not any(h == e or h.startswith(e + ".") for e in kept_out))
    hiddenimports = [*hiddenimports, *part_hidden, *app_hidden]
    entry_module = entry_module or entry_module_name(app.entry, app.pathex)
    hiddenimports += [entry_module] if entry_module else []
    excludes = [e for e in dict.fromkeys([*excludes, *part_excludes, *app.excludes]) if e not in hiddenimports]
    params: dict[str, Any] = {
        "name": name,
        "app": app.app,
        "entry": str(app.entry),
        "script": str(app.entry),  # what the Analysis runs: the entry, or the launcher plan_freeze writes
        "entry_module": entry_module,  # the launcher runs it; complete_bundle writes it for a spawn child
        # the app's own packages as source (updates in place), then [tool.mlfreeze]'s (e.g. sources for TorchScript)
        "module_collection_mode": {**({n: "py" for n in own_packages} if entry_module else {}),
                                   **dict(app.module_collection_mode)},
        "pathex": [str(p) for p in dict.fromkeys(app.pathex)],
        "hookspath": [str(HOOKS)],
        # models dir before the names hook, which reads it (by-name loads: mlfreeze_runtime.names)
        "runtime_hooks": [*process_hooks(), str(RUNTIME_HOOK), str(NAMES_HOOK)],
        "hiddenimports": list(dict.fromkeys(["mlfreeze_runtime", *hiddenimports])),  # its hook collects it
        "excludes": list(excludes),
        "datas": data_pairs(app.datas),
        "console": app.console,  # the app's EXE only; <app>-selftest and <app>-update keep a console
        "updater": f"{app.app}-update",
        "updater_entry": str(UPDATE_ENTRY),
        "updater_excludes": [e for e in dict.fromkeys([*updater_excludes, *UPDATER_EXCLUDES])
                             if e not in UPDATER_NEEDS],
    }
    # lite: hook-mlfreeze_runtime leaves the runtime's ML loaders to the app's own imports (specs/lite.spec)
    params["hooksconfig"] = {"mlfreeze_runtime": {"ml": flavor != "lite"}}
    if flavor in MODEL_FLAVORS:
        params["selftest"] = f"{app.app}-selftest"
        params["selftest_entry"] = str(SELFTEST_ENTRY)
        params["runtime_hooks"].append(str(ENTRY_HOOK))  # last: MLFREEZE_ENTRY=selftest runs the self-test
    return params


def launcher_source(entry_module: str) -> str:
    """The app executable's script when its own modules are collected as source: it runs the
    entry module as ``__main__``, so the executable and the PYZ never change with the app's files."""
    return ("# Written by mlfreeze (mlfreeze.bundle.freeze.launcher_source): the frozen app's script. It runs\n"
            "# the app's entry module, collected as source into _internal/ beside the app's other modules.\n"
            "import runpy\n\n"
            f"runpy.run_module({entry_module!r}, run_name=\"__main__\", alter_sys=True)\n")


def data_layout(pairs: Sequence[Sequence[str]]) -> dict[str, Path]:
    """Where PyInstaller puts each file of the spec's ``datas`` pairs (:func:`data_pairs`):
    ``_internal/<dest>/<name>`` for a file, the folder's tree under ``_internal/<dest>/`` for a folder."""
    out: dict[str, Path] = {}
    for src, dest in pairs:
        source = Path(src)
        files = [(source, source.name)] if source.is_file() else [
            (f, f.relative_to(source).as_posix()) for f in sorted(source.rglob("*")) if f.is_file()]
        for f, rel in files:
            out["_internal/" + Path(os.path.normpath(os.path.join(dest, rel))).as_posix()] = f
    return out


def app_layout(graph: modgraph.ModuleGraph, datas: Sequence[Sequence[str]]) -> dict[str, Path]:
    """The project's own files in a bundle (bundle-relative path -> source): its modules as source
    under ``_internal/`` and its ``datas``; what an update in place replaces."""
    return {**{f"_internal/{rel}": src for rel, src in graph.bundle_paths().items()}, **data_layout(datas)}


TORCH_ROLES = ("weights", "config")  # what open_clip loads; never in a slim bundle
ONNX_ROLES = ("image_onnx", "text_onnx")  # the exported towers; only in a slim bundle
SLIM_ONLY_ROLES = (*ONNX_ROLES, "agreement")  # the towers and their agreement record with torch


def flavor_files(flavor: str, files: Mapping[str, Path], roles: Mapping[str, str], kind: str = "clip",
                 ) -> dict[str, Path]:
    """The artifacts of one model a ``flavor`` ships, chosen by role: for a CLIP model, full drops
    the ONNX towers (its CLIP runs on torch) and slim drops the torch weights and config (its CLIP
    runs the towers); other models (the face models' ONNX files, whose default role is also
    "weights") go into both whole."""
    if kind != "clip":
        return dict(files)
    drop = SLIM_ONLY_ROLES if flavor == "full" else TORCH_ROLES if flavor == "slim" else ()
    return {name: src for name, src in files.items() if roles.get(name, "") not in drop}


def bundle_models(fetched: Mapping[str, Any], flavor: str = "full",
                  exports: Mapping[str, Any] | None = None) -> list[BundleModel]:
    """What ``models/`` of a ``flavor`` bundle will hold, from fetch_set()'s result (id -> FetchedModel),
    artifacts chosen by role (:func:`flavor_files`). ``exports`` (the export stage's
    ``{id: ExportedClip}``) adds the towers of a slim bundle's CLIP models that the manifest does not pin."""
    out = []
    for model_id, fm in fetched.items():
        spec = fm.model
        roles = {a.file: a.role for a in spec.artifacts}
        derived = {a.file: a.derived_from for a in spec.artifacts if getattr(a, "derived_from", "")}
        chosen = {n: Path(p) for n, p in fm.bundle_files.items()}
        ex = (exports or {}).get(model_id)
        if flavor == "slim" and ex is not None and not any(r in ONNX_ROLES for r in roles.values()):
            for tower, path in (("image", ex.image), ("text", ex.text)):
                name = f"{model_id}_{tower}.onnx"
                chosen[name], roles[name], derived[name] = Path(path), f"{tower}_onnx", ex.derived_from
        record = getattr(ex, "agreement", None)
        if flavor == "slim" and ex is not None and record is not None and "agreement" not in roles.values():
            name = f"{model_id}_agreement.json"
            chosen[name], roles[name], derived[name] = Path(record), "agreement", ex.derived_from
        if flavor == "slim" and spec.kind == "clip" and not any(r in ONNX_ROLES for r in roles.values()):
            raise FreezeError(f"model {model_id}: a slim bundle needs its ONNX towers; run `mlfreeze export` "
                              "(mlfreeze build runs it when the slim flavor is built)")
        chosen = flavor_files(flavor, chosen, roles, spec.kind)
        files = {f"{model_id}/{name}": src for name, src in sorted(chosen.items())}
        out.append(BundleModel(id=model_id, kind=spec.kind, arch=getattr(spec, "arch", ""),
                               embed_dim=spec.embed_dim, files=files,
                               sha256={rel: hash_file(p)[1] for rel, p in files.items()},
                               roles={n: r for n, r in roles.items() if n in chosen},
                               verify=dict(spec.verify or {}),
                               derived_from={n: d for n, d in derived.items() if n in chosen},
                               provides=tuple(getattr(spec, "provides", ()) or ()),
                               revision=str(getattr(spec, "revision", "") or "")))
    return out


def models_index_entries(models: Sequence[BundleModel]) -> list[dict[str, Any]]:
    """models.json entries (docs/architecture.md "Models"): files by name, sha256 by relpath,
    roles and (for exported files) ``derived_from`` by name."""
    return [{"id": m.id, "kind": m.kind, "arch": m.arch, "embed_dim": m.embed_dim,
             "files": {rel.split("/", 1)[1]: rel for rel in m.files},
             "sha256": dict(m.sha256), "roles": dict(m.roles), "verify": dict(m.verify),
             "derived_from": dict(m.derived_from), "provides": list(m.provides), "revision": m.revision}
            for m in models]


# The builder code that shapes a bundle after PyInstaller (prune, models/, the self-test's inputs).
BUILDER_SOURCES = tuple(Path(__file__).with_name(n) for n in ("freeze.py", "prune.py", "globs.py"))


def inputs_for(*, app: AppConfig, platform: str, flavor: str, params: Mapping[str, Any],
               models: Sequence[BundleModel], prune_file: Path, root: Path | None = None,
               goldens_dir: Path | None = None,
               distributions: Mapping[str, str] | None = None,
               graph: modgraph.ModuleGraph | None = None) -> incremental.FreezeInputs:
    """What a freeze reads, in the parts an update in place tells apart: the project's own files
    (the app's sources, the modules of ``graph`` and the ``datas`` files) and the outside modules
    they import, apart from everything else (mlfreeze's specs and hooks, the lock, the models)."""
    spec = SPECS / f"{flavor}.spec"
    root = root or find_root()
    goldens_dir = goldens_dir or SPECS / "goldens"
    extra = [spec, HOOKS, UPDATE_ENTRY, prune_file, *BUILDER_SOURCES]
    extra += [SELFTEST_ENTRY] if flavor in MODEL_FLAVORS else []
    extra += [goldens_dir / f"{m.id}.json" for m in models]  # copied into models/<id>/
    extra += [app.update_root] if app.update_root is not None else []  # frozen in as update-root.json
    lock = lock_file(root, platform, flavor)
    extra += [lock] if lock is not None else []
    stable = {k: v for k, v in params.items() if k not in ("pathex", "hookspath", "runtime_hooks", "entry",
                                                           "selftest_entry", "updater_entry", "script",
                                                           "module_collection_mode")}
    entry, top = Path(params["entry"]).resolve(), root.resolve()
    stable["entry"] = entry.relative_to(top).as_posix() if entry.is_relative_to(top) else entry.name
    stable["entry_point"] = app.entry_point  # its launcher is made from it
    stable["python"] = _platform.python_version()
    stable["mlfreeze"] = mlfreeze.__version__
    return incremental.FreezeInputs(
        platform=platform, flavor=flavor, app=app.app,
        distributions=distributions if distributions is not None else incremental.installed_distributions(),
        models={rel: sha for m in models for rel, sha in m.sha256.items()},
        sources=incremental.source_files([*(s for s in app.sources if s in RUNTIME_SOURCES), *extra], root),
        params=stable,
        app_sources={**incremental.source_files([*(s for s in app.sources if s not in RUNTIME_SOURCES),
                                                 *project_sources(app, root)], root),
                     **{rel: hash_file(src)[1] for rel, src in (app_layout(graph, params.get("datas", ())) if graph
                                                                else data_layout(params.get("datas", ()))).items()}},
        imports=graph.external if graph else (),
        app_params={"module_collection_mode": params.get("module_collection_mode", {})})


@dataclass(frozen=True, kw_only=True)
class FreezeRequest:
    """What to freeze: one flavor of the project for one platform profile.

    ``fetched`` is fetch_set()'s result (required for ``full`` and ``slim``); ``exports`` the export
    stage's ``{id: ExportedClip}`` (slim, for towers the manifest does not pin). ``goldens_dir``:
    where ``<id>.json`` lives beside the models' manifest (default: mlfreeze's specs/goldens/).
    ``verify_report``: the verify stage's report for exactly this flavor and set
    (``dist/reports/verify-<platform>-<flavor>.json``), checked and shipped as ``verify-report.json``;
    without it a bundle that ships models records ``verification: null`` (release refuses it).
    ``verify``: the incremental skip re-hashes every file against RECORD instead of sizes and mtimes.
    """

    profile: Profile
    flavor: str
    root: Path | None = None
    app: AppConfig | None = None
    model_set: str | None = None
    fetched: Mapping[str, Any] | None = None
    exports: Mapping[str, Any] | None = None
    verify_report: Path | None = None
    dist_dir: Path | None = None
    work_dir: Path | None = None
    prune_file: Path = prune.PRUNE_FILE
    force: bool = False
    goldens_dir: Path | None = None
    keep_failed: bool = True
    verify: bool = False


@dataclass(frozen=True, kw_only=True)
class FreezePlan:
    """Everything one freeze will do, fixed before PyInstaller starts (:func:`plan_freeze`)."""

    profile: Profile
    flavor: str
    root: Path
    app: AppConfig
    name: str
    bundle: Path  # dist/<name>
    staging: Path  # PyInstaller's --distpath; the bundle is moved from here into dist/
    work_dir: Path
    model_set: str
    models: tuple[BundleModel, ...]
    rules: tuple[prune.Rule, ...]
    params: Mapping[str, Any]  # the spec's parameters (params.json)
    digest: str  # sha256 of every input (incremental)
    distributions: Mapping[str, str]
    verification: Mapping[str, Any] | None  # what the verify report says about this flavor and set
    verify_report: Path | None
    goldens_dir: Path
    keep_failed: bool
    inputs: incremental.FreezeInputs | None = None  # the parts of ``digest`` (an update in place compares them)
    app_files: Mapping[str, Path] = field(default_factory=dict)  # the project's own files: bundle path -> source
    update_blocked: str | None = None  # why this project's bundles are never updated in place


def app_modules(app: AppConfig, flavor: str) -> tuple[str | None, modgraph.ModuleGraph | None, str | None]:
    """(the entry's module name, the app's own module graph, why there is none: the entry does not
    import as a module, or one of the app's files does not parse, which PyInstaller then reports)."""
    name = modgraph.entry_module(app.entry, app.pathex)
    if name is None:
        return None, None, (f"the entry {app.entry.name} is not importable as a module from "
                            f"{', '.join(str(p) for p in app.pathex)}, so the app goes into the PYZ")
    try:
        graph = modgraph.app_graph([name, *app.hiddenimports], app.pathex)
    except (SyntaxError, ValueError, OSError) as exc:
        return None, None, f"the app's modules cannot be read ({exc})"
    return name, graph, None


def own_modules_in_pyz(app: AppConfig, graph: modgraph.ModuleGraph | None) -> str | None:
    """Why the app's files cannot be updated in place when ``[tool.mlfreeze] module_collection_mode``
    puts some of the app's own packages in the PYZ (any mode but ``"py"``): the PYZ would keep a stale
    copy of what an update replaces. None when it does not."""
    own = set(graph.top_level()) if graph is not None else set()
    in_pyz = sorted(n for n, mode in app.module_collection_mode if n.split(".")[0] in own and mode != "py")
    if not in_pyz:
        return None
    return (f"[tool.mlfreeze] module_collection_mode collects the app's own {', '.join(in_pyz)} into the PYZ, "
            "so the app's files are never updated in place")


def plan_freeze(request: FreezeRequest) -> FreezePlan:
    """The pure-ish half of a freeze: names, prune rules, spec parameters, models and the input digest.
    Raises FreezeError when a flavor that ships models has none, ConfigError/UsageError from the configs."""
    profile, flavor = request.profile, request.flavor
    hostinfo.require_host(profile, "freeze")
    root = request.root or find_root()
    app = request.app or load_app_config(root)
    name = bundle_name(app.app, app.version, profile.name, flavor)
    work_dir = request.work_dir or root / "build" / "pyinstaller" / f"{profile.name}-{flavor}"
    goldens_dir = request.goldens_dir or SPECS / "goldens"
    model_set = request.model_set or app.model_set
    config = prune.load_prune(request.prune_file)
    rules = config.select(flavor=flavor, accelerator=profile.accelerator, platform=profile.name)
    rules += tuple(r for r in app.prune if r.applies_to(flavor=flavor, accelerator=profile.accelerator,
                                                           platform=profile.name))
    if flavor in MODEL_FLAVORS and request.fetched is None:
        raise FreezeError(f"a {flavor} bundle needs its models: pass fetch_set()'s result (mlfreeze fetch first)")
    models = bundle_models(request.fetched or {}, flavor, request.exports) if flavor in MODEL_FLAVORS else []
    entry_module, graph, update_blocked = app_modules(app, flavor)
    update_blocked = update_blocked or own_modules_in_pyz(app, graph)
    params = spec_params(app=app, flavor=flavor, name=name, excludes=config.excludes.get(flavor, ()),
                         hiddenimports=config.hiddenimports.get(flavor, ()),
                         updater_excludes=config.excludes.get(prune.UPDATER, ()), entry_module=entry_module,
                         own_packages=graph.top_level() if graph else ())
    if entry_module:  # written by run_pyinstaller (launcher_source)
        params["script"] = str(work_dir / "launcher.py")
    params["prune_rules"] = [r.name for r in rules]  # hashed with the params; the spec ignores it
    params["contract"] = app.contract.to_json()  # app-contract.json (complete_bundle); hashed, the spec ignores it
    # Libraries loaded with dlopen (profile [closure] dlopen), for specs/hooks/hook-mlfreeze_runtime.device.py.
    params["dlopen"] = [{"lib": d.lib, "by": d.by, "at": d.at, "preload": d.preload} for d in profile.closure.dlopen
                        if not all(m in params["excludes"] for m in d.modules)]
    # every flavor on Linux: strip .symtab/debug sections after the freeze (strip_symbols), but not the CUDA
    # libraries (CUDA_UNSTRIPPED: only a GPU run proves their stripped copies); hashed with the params. Lite
    # keeps the app's numpy and Pillow, whose symbols alone are ~30 MB of an ordinary lite bundle.
    params["strip_symbols"] = profile.host_os == "linux"
    params["strip_keep"] = list(CUDA_UNSTRIPPED)
    distributions = incremental.installed_distributions()
    inputs = inputs_for(app=app, platform=profile.name, flavor=flavor, params=params, models=models,
                        prune_file=request.prune_file, root=root, goldens_dir=goldens_dir,
                        distributions=distributions, graph=graph)
    digest = inputs.digest()
    verification = None
    if models and request.verify_report is not None:
        verification = buildinfo.verified(request.verify_report, set_name=model_set, flavor=flavor,
                                          platform=profile.name)
    elif models:
        print(f"freeze: {name}: no verify report was passed; BUILD-INFO records verification: null and "
              "`mlfreeze release` will refuse the bundle (mlfreeze build passes it)", flush=True)
    return FreezePlan(profile=profile, flavor=flavor, root=root, app=app, name=name,
                      bundle=(request.dist_dir or root / "dist") / name, staging=work_dir / "dist", work_dir=work_dir,
                      model_set=model_set, models=tuple(models), rules=rules, params=params, digest=digest,
                      distributions=distributions, verification=verification, verify_report=request.verify_report,
                      goldens_dir=goldens_dir, keep_failed=request.keep_failed, inputs=inputs,
                      app_files=app_layout(graph, params["datas"]) if graph else {}, update_blocked=update_blocked)


def rebuild_reason(plan: FreezePlan, *, verify: bool = False) -> str | None:
    """Why the bundle in dist/ cannot be reused (a line), or None when it was built from these inputs,
    its files match RECORD and its BUILD-INFO records a verification like this one."""
    stale = incremental.stale_reason(plan.bundle, plan.digest, full=verify)
    if stale is None and plan.verification is not None:
        recorded = buildinfo.read(plan.bundle)["verification"] or {}
        if not recorded.get("applies") or any(recorded.get(k) != plan.verification[k]
                                              for k in ("set", "flavor", "platform", "passed")):
            stale = "its BUILD-INFO does not record a verification of this set, flavor and platform"
    return stale


def run_pyinstaller(plan: FreezePlan) -> Path:
    """PyInstaller on specs/<flavor>.spec into the staging folder; returns the staged onedir.
    FreezeError (exit 4) when PyInstaller fails; nothing is left staged then."""
    for old in (plan.bundle, plan.bundle.with_name(plan.name + selftest.FAILED_SUFFIX), plan.staging / plan.name):
        if old.exists():
            shutil.rmtree(old)
    write_launcher(plan.app)
    check_hidden_imports(plan.params["hiddenimports"], plan.params["pathex"])
    plan.work_dir.mkdir(parents=True, exist_ok=True)
    params_file = plan.work_dir / "params.json"
    params_file.write_text(json.dumps(plan.params, indent=2) + "\n", encoding="utf-8")
    if plan.params["entry_module"]:
        Path(plan.params["script"]).write_text(launcher_source(plan.params["entry_module"]), encoding="utf-8")
    cmd: list[str | Path] = [sys.executable, "-m", "PyInstaller", SPECS / f"{plan.flavor}.spec", "--noconfirm",
                             "--log-level", os.environ.get(LOG_LEVEL_ENV, "WARN"),
                             "--distpath", plan.staging, "--workpath", plan.work_dir / "work", "--", params_file]
    # The project's modules come from pathex, ahead of anything an outer PYTHONPATH would shadow them with.
    # A fixed hash seed: PyInstaller orders base_library.zip's members by iterating a set of names, so
    # without it two freezes of the same inputs write that archive differently.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(plan.params["pathex"]), "PYTHONHASHSEED": "0"}
    started = time.monotonic()
    status = proc.run(cmd, cwd=plan.root, env=env, check=False)
    staged = plan.staging / plan.name
    if status != 0 or not staged.is_dir():
        shutil.rmtree(staged, ignore_errors=True)
        raise FreezeError(f"PyInstaller failed for {plan.name} (exit {status}); see its output above, then run "
                          f"`mlfreeze freeze --platform {plan.profile.name} --flavor {plan.flavor}` again")
    print(f"freeze: {plan.name}: PyInstaller done in {time.monotonic() - started:.0f} s", flush=True)
    return staged


def complete_bundle(plan: FreezePlan, staged: Path) -> tuple[list[prune.Removal], str | None, Any]:
    """Prune, strip, add the update root and the models to the staged onedir, then move it to dist/.
    Returns the removals, the update root's sha256 and the CUDA architectures it carries."""
    removals = prune.apply(staged / "_internal", plan.rules)
    if plan.params.get("entry_module"):  # what a spawn child imports as __main__ (mlfreeze_runtime.processes)
        (staged / "_internal" / ENTRY_MODULE_FILE).write_text(plan.params["entry_module"] + "\n", encoding="utf-8")
    if plan.params["strip_symbols"]:
        saved = strip_symbols(staged / "_internal", keep=plan.params["strip_keep"])
        print(f"freeze: {plan.name}: strip --strip-unneeded saved {saved / 1e6:.1f} MB (CUDA libraries left "
              "unstripped until a GPU run proves them)", flush=True)
    update_root = freeze_update_root(staged, plan.app.update_root)
    write_contract(staged, plan.app.contract)  # how the self-test runs the entry (serve / smoke); RECORD covers it
    archs = cuda_archs.variant_archs(flavor=plan.flavor, accelerator=plan.profile.accelerator,
                                     internal=staged / "_internal")
    if plan.models:
        install_models(staged / "models", plan.models, plan.model_set,
                       expected_providers=plan.profile.onnxruntime.providers, goldens=plan.goldens_dir)
    plan.bundle.parent.mkdir(parents=True, exist_ok=True)
    staged.rename(plan.bundle)
    return removals, update_root, archs


def update_in_place(plan: FreezePlan) -> tuple[Path, dict[str, tuple[_record.Entry, int, int]]]:
    """The app-only rebuild: stage hard links to the bundle in dist/ with the project's own files
    replaced (:func:`incremental.relink`), then prune them; no PyInstaller. Returns the staged onedir
    and the RECORD rows of the linked files (path -> (row, inode, mtime)), which RECORD reuses while
    a file is still that inode with that mtime. OSError when the disk fails."""
    staged = plan.staging / plan.name
    old_record = _record.read(plan.bundle)
    drop = [*incremental.stamped_app_files(plan.bundle), buildinfo.REPORT_IN_BUNDLE]  # the report: copied anew
    linked = incremental.relink(plan.bundle, staged, drop=drop, add=plan.app_files)
    known: dict[str, tuple[_record.Entry, int, int]] = {}
    for rel, path in linked.items():
        st = path.stat()
        row = old_record.get(rel)
        if row is not None and st.st_size == row.size:
            known[rel] = (row, st.st_ino, st.st_mtime_ns)
    prune.apply(staged / "_internal", plan.rules, log=False)  # only the app's new files can match
    return staged, known


def complete_update(plan: FreezePlan, staged: Path) -> tuple[list[prune.Removal], str | None, Any]:
    """Move an updated staging folder into dist/ in place of the bundle it links to; the prune
    figures and CUDA architectures are the last freeze's (the libraries are the same files)."""
    from mlfreeze_runtime.update.trust import ROOT_FILE

    info = buildinfo.read(plan.bundle)
    removals = [prune.Removal(rule=r["rule"], bytes=r["bytes"], paths=0) for r in info.get("prune", [])]
    root_file = staged / ROOT_FILE
    update_root = hash_file(root_file)[1] if plan.app.update_root is not None and root_file.is_file() else None
    shutil.rmtree(plan.bundle)
    failed = plan.bundle.with_name(plan.name + selftest.FAILED_SUFFIX)
    if failed.exists():
        shutil.rmtree(failed)
    staged.rename(plan.bundle)
    return removals, update_root, info.get("cuda_archs", [])


def seal_bundle(plan: FreezePlan, result: selftest.SelftestResult, removals: Sequence[prune.Removal],
                update_root: str | None, archs: Any, signed: Mapping[str, Any] | None = None,
                known: Mapping[str, tuple[_record.Entry, int, int]] | None = None) -> None:
    """After the self-test passed: ship the verify report, write RECORD (every shipped byte, signed
    ones included), BUILD-INFO.json (``signed``: :func:`mlfreeze.bundle.signing.sign_bundle`'s record)
    and the incremental stamp. ``known``: RECORD rows :func:`update_in_place` linked."""
    bundle, app, models = plan.bundle, plan.app, plan.models
    verification = plan.verification
    if verification is not None and plan.verify_report is not None:
        shutil.copyfile(plan.verify_report, bundle / buildinfo.REPORT_IN_BUNDLE)
    elif not models:
        verification = buildinfo.not_applicable(result.summary(), check=result.entry_check)
    pinned = {m.id: (plan.goldens_dir / f"{m.id}.json").is_file() for m in models}
    opted = set(app.unpinned_goldens)
    try:
        _, record_sha = _record.write(bundle, known=known)  # after prune, models and self-test: every shipped byte
    except _record.RecordError as exc:  # a symlink leaving the bundle (the link rule of RECORD)
        raise FreezeError(str(exc)) from None
    rows = _record.read(bundle).values()
    info = buildinfo.build_info(
        app=app.app, version=app.version, platform=plan.profile.name, accelerator=plan.profile.accelerator,
        flavor=plan.flavor, archive_format=plan.profile.archive_format, distributions=plan.distributions,
        model_set=plan.model_set if models else None,
        models=[{"id": m.id, "kind": m.kind, "files": dict(m.sha256), "golden": pinned[m.id]} for m in models],
        unpinned_goldens=[i for i, ok in pinned.items() if not ok and i in opted],
        verification=verification, selftest=result.summary(),
        prune=[{"rule": r.rule, "bytes": r.bytes} for r in removals],
        record={"sha256": record_sha, "files": len(rows), "bytes": sum(e.size for e in rows)},
        git_commit=buildinfo.git_commit(plan.root), inputs_sha256=plan.digest,
        lock_sha256=lock_digest(plan.root, plan.profile.name, plan.flavor), update_root=update_root,
        cuda_archs=archs, signing=signed,
        glibc=glibc.freeze_record(bundle, profile_name=plan.profile.name, host_os=plan.profile.host_os,
                                  profile_floor=plan.profile.glibc_floor))
    buildinfo.write(bundle, info)
    incremental.write_stamp(bundle, plan.digest, plan.inputs, [r for r in plan.app_files if (bundle / r).is_file()])


@dataclass(frozen=True, kw_only=True)
class StagedBundle:
    """The freeze step's result: a bundle in dist/ that is either reused as it is (``reused``) or
    freshly frozen, pruned and given its models, waiting for its self-test (:func:`selftest_step`)."""

    plan: FreezePlan
    reused: bool
    started: float = 0.0  # time.monotonic() when the freeze began
    removals: tuple[prune.Removal, ...] = ()
    update_root: str | None = None
    archs: Any = None
    known: Mapping[str, tuple[_record.Entry, int, int]] | None = None  # RECORD rows reused (update in place)


def _discard(plan: FreezePlan, staged: Path, exc: BaseException) -> NoReturn:
    """A freeze that failed half-way leaves no bundle behind; OS and lookup errors become FreezeError."""
    shutil.rmtree(staged, ignore_errors=True)
    shutil.rmtree(plan.bundle, ignore_errors=True)
    if isinstance(exc, (OSError, LookupError)):  # disk full, permissions, a probe input missing
        raise FreezeError(f"{plan.name}: {exc}; the bundle was removed") from None
    raise exc


def freeze_step(request: FreezeRequest) -> StagedBundle:
    """The freeze stage of one flavor: :func:`plan_freeze`, then reuse an up-to-date bundle
    (:func:`rebuild_reason`) or :func:`run_pyinstaller` and :func:`complete_bundle`.
    FreezeError (exit 4) when PyInstaller or the disk fails; nothing half-made is left in dist/."""
    plan = plan_freeze(request)
    stale = None if request.force else rebuild_reason(plan, verify=request.verify)
    if not request.force and stale is None:
        print(f"freeze: {plan.name}: inputs unchanged ({plan.digest[:12]}) and RECORD intact, skipping the freeze "
              "(--force rebuilds)", flush=True)
        return StagedBundle(plan=plan, reused=True)
    if stale is not None and plan.bundle.exists():
        print(f"freeze: {plan.name}: rebuilding: {stale}", flush=True)
    started = time.monotonic()
    refused = "--force" if request.force else plan.update_blocked
    if refused is None and plan.inputs is not None:
        refused = incremental.update_refusal(plan.bundle, plan.inputs, full=request.verify)
    if refused is None:
        print(f"freeze: {plan.name}: only the app's own files changed: updating the bundle in place "
              "(no PyInstaller)", flush=True)
        staged = plan.staging / plan.name
        known: dict[str, tuple[_record.Entry, int, int]] = {}
        try:
            staged, known = update_in_place(plan)
            removals, update_root, archs = complete_update(plan, staged)
        except BaseException as exc:
            _discard(plan, staged, exc)
        return StagedBundle(plan=plan, reused=False, started=started, removals=tuple(removals),
                            update_root=update_root, archs=archs, known=known)
    if plan.bundle.exists():
        print(f"freeze: {plan.name}: full freeze: {refused}", flush=True)
    staged = run_pyinstaller(plan)
    try:
        removals, update_root, archs = complete_bundle(plan, staged)
    except BaseException as exc:
        _discard(plan, staged, exc)
    return StagedBundle(plan=plan, reused=False, started=started, removals=tuple(removals),
                        update_root=update_root, archs=archs)


def selftest_step(staged: StagedBundle) -> Path:
    """The self-test stage of one flavor: run the frozen bundle from a clean environment, then
    :func:`seal_bundle`; returns the bundle. VerificationError (exit 1) when the self-test fails
    (the bundle is kept as ``<name>.failed`` unless the request said otherwise)."""
    plan = staged.plan
    if staged.reused:
        return plan.bundle
    try:
        # signed first: the self-test then runs the signed binaries, and RECORD pins the signed bytes
        signed = signing.sign_bundle(plan.bundle, host_os=plan.profile.host_os, signing=plan.app.signing)
        result = selftest.check_bundle(plan.bundle, app=plan.app.app, flavor=plan.flavor,
                                       exe_suffix=hostinfo.exe_suffix(plan.profile.host_os),
                                       keep_failed=plan.keep_failed)
        seal_bundle(plan, result, staged.removals, staged.update_root, staged.archs, signed, known=staged.known)
    except VerificationError:
        raise
    except BaseException as exc:
        _discard(plan, plan.staging / plan.name, exc)
    print(f"freeze: {plan.name}: ready in {time.monotonic() - staged.started:.0f} s: {plan.bundle} "
          f"({prune.tree_bytes(plan.bundle) / 1e6:.1f} MB)", flush=True)
    return plan.bundle


def freeze_bundle(request: FreezeRequest) -> Path:
    """Freeze, prune, add models, self-test, seal; return the bundle directory under dist/
    (:func:`freeze_step` then :func:`selftest_step`, as ``mlfreeze freeze`` runs them)."""
    return selftest_step(freeze_step(request))


def freeze_update_root(bundle: Path, source: Path | None) -> str | None:
    """Copy the public root of trust ([tool.mlfreeze] update_root) next to the executables as
    ``update-root.json``, where ``<app>-update`` looks for it (mlfreeze_runtime.update.trust.ROOT_FILE);
    its sha256 for BUILD-INFO, or None when the project names none (the updater then refuses
    remote updates, exit 2, unless given --trust)."""
    from mlfreeze_runtime.update.trust import ROOT_FILE

    if source is None:
        return None
    shutil.copyfile(source, bundle / ROOT_FILE)
    return hash_file(bundle / ROOT_FILE)[1]


# auditwheel's grafted copies: "<name>-<8 hex>[-<8 hex>].so[.N]" (patchelf rewrote them; strip corrupts them)
AUDITWHEEL_GRAFTED = re.compile(r"-[0-9a-f]{8}(-[0-9a-f]{8})?\.so(\.|$)")
# The CUDA libraries (globs relative to _internal/): NVIDIA's wheels, torch's CUDA kernels and
# onnxruntime's CUDA and TensorRT providers. Only a frozen self-test on a CUDA GPU loads them, so a
# CPU host cannot prove their stripped copies: strip_symbols leaves them, and the size report's
# unstripped-symbols row says how much they hold (mlfreeze.sizes.waste).
CUDA_UNSTRIPPED = ("nvidia/**", "**/libcuda*", "**/libcudnn*", "**/libcublas*", "**/libcufft*", "**/libcufile*",
                   "**/libcurand*", "**/libcusparse*", "**/libcusolver*", "**/libcupti*", "**/libcutensor*",
                   "**/libnv*", "**/libnccl*", "**/libtorch_cuda*", "**/libc10_cuda*", "**/libcaffe2_nvrtc*",
                   "onnxruntime/capi/*providers_cuda*", "onnxruntime/capi/*providers_tensorrt*")


def strip_symbols(root: Path, batch: int = 200, keep: Sequence[str] = ()) -> int:
    """``strip --strip-unneeded`` every ELF file under ``root`` (the static symbol tables and debug
    sections; the dynamic symbols the loader resolves stay); returns the bytes saved, 0 without a
    ``strip`` on PATH. auditwheel's patchelf-rewritten copies (under a ``*.libs`` folder, or
    collected beside the others with their hashed names, :data:`AUDITWHEEL_GRAFTED`), which strip
    corrupts (numpy then fails to import), and the files matching a ``keep`` glob (POSIX, relative
    to ``root``: :data:`CUDA_UNSTRIPPED`) are left alone; the frozen self-test afterwards proves the
    rest still loads. FreezeError (exit 4) when strip fails."""
    from mlfreeze.globs import compile_glob

    tool = shutil.which("strip")
    if tool is None:
        return 0
    kept = [compile_glob(g) for g in keep]
    files = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_symlink() or not path.is_file() or any(p.endswith(".libs") for p in rel.parts) \
                or AUDITWHEEL_GRAFTED.search(path.name) or any(k.match(rel.as_posix()) for k in kept):
            continue
        with path.open("rb") as f:
            if f.read(4) == b"\x7fELF":
                files.append(path)
    before = sum(p.stat().st_size for p in files)
    for i in range(0, len(files), batch):
        done = proc.capture([tool, "--strip-unneeded", *files[i:i + batch]])
        if done.returncode != 0:
            raise FreezeError(f"strip failed: {done.stderr.strip()[:300]}")
    return before - sum(p.stat().st_size for p in files)


def lock_file(root: Path, platform: str, flavor: str) -> Path | None:
    """The project's lock for this build (locks/<platform>[-slim].txt), None without one."""
    from mlfreeze.project.lock import lock_path, variant_for

    path = lock_path(root, platform, variant_for((flavor,)))
    return path if path.is_file() else None


def lock_digest(root: Path, platform: str, flavor: str) -> str | None:
    """sha256 of the project's lock for this build (locks/<platform>[-slim].txt), None without one."""
    path = lock_file(root, platform, flavor)
    return hash_file(path)[1] if path is not None else None


def install_models(models_dir: Path, models: Sequence[BundleModel], model_set: str, *,
                   expected_providers: Sequence[str], goldens: Path) -> None:
    """Copy the set's bundle members into ``models/<id>/``; write models.json, goldens and probes."""
    from mlfreeze_runtime.modelindex import write_models_index
    from mlfreeze_runtime.verify.probes import FILE_PROBES, copy_probe_inputs

    for m in models:
        for rel, src in m.files.items():
            dest = models_dir / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
    write_models_index(models_dir, models_index_entries(models), set_name=model_set,
                       expected_providers=expected_providers, goldens_dir=goldens)
    copy_probe_inputs(models_dir / "_probes", probe_names(models, FILE_PROBES))


def probe_names(models: Sequence[BundleModel], file_probes: Mapping[str, tuple[str, str]]) -> list[str]:
    """The file probes a bundle needs: insightface's sample photos only when the set has a face model
    (a CLIP-only app's build environment has no insightface)."""
    faces = any(m.kind == "insightface" for m in models)
    return sorted(n for n, (package, _) in file_probes.items() if package != "insightface" or faces)


def main(args: argparse.Namespace) -> int:
    """``mlfreeze freeze --platform P --flavor full|lite|slim [--set S]``."""
    from mlfreeze.platforms.profiles import load_profile

    profile = load_profile(args.platform)
    hostinfo.require_host(profile, "freeze")
    app = load_app_config()
    model_set = args.model_set or app.model_set
    fetched, goldens_dir, exports = None, None, None
    cache_dir = Path(args.cache) if args.cache else None
    if args.flavor in MODEL_FLAVORS:
        from mlfreeze.models.fetch import fetch_set
        from mlfreeze.models.manifest import load_manifest
        from mlfreeze.models.verification import goldens_dir_for

        manifest = load_manifest(Path(args.manifest) if args.manifest else None)
        fetched = fetch_set(manifest, model_set, cache_dir)  # + MLFREEZE_OFFLINE
        goldens_dir = goldens_dir_for(manifest.path)
        if args.flavor == "slim":
            from mlfreeze.models.export import export_clips

            exports = export_clips(fetched, cache_dir)
    freeze_bundle(FreezeRequest(profile=profile, flavor=args.flavor, app=app, model_set=model_set, fetched=fetched,
                                exports=exports, goldens_dir=goldens_dir, force=args.force,
                                verify_report=Path(args.verify_report) if args.verify_report else None,
                                verify=args.verify))
    return 0
