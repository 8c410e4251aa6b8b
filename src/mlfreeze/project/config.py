"""The project being built: ``[project]`` and ``[tool.mlfreeze]`` of its pyproject.toml.

The project root is ``$MLFREEZE_PROJECT``, else the nearest directory at or above the
working directory that holds a pyproject.toml. That pyproject.toml must have a
``[tool.mlfreeze]`` table: there is no fall-back to another project (a near-miss such as
``[tool.mlfreez]`` is named in the error). The mlfreeze checkout itself is a project like any
other (its pyproject.toml configures the example app).

:func:`load_config` is the one reader of the project config: every key is validated when it
loads (an unknown key names the nearest known one), so ``mlfreeze plan`` and ``build --plan``
catch a typo anywhere, budgets included, before anything runs. Every key is documented in
docs/your-app.md.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlfreeze.errors import ConfigError
from mlfreeze.project.budgets import Budgets, load_budgets
from mlfreeze.project.entry import resolve as resolve_entry
from mlfreeze.project.prune_rules import parse_rules
from mlfreeze.project.signing import Signing, parse_signing
from mlfreeze.schema import Table, read_toml
from mlfreeze_runtime.buildinfo import FLAVORS
from mlfreeze_runtime.contract import AppContract, ContractError, parse_contract

SOURCE_ROOT = Path(__file__).resolve().parents[3]  # src/mlfreeze/project/config.py in a checkout
PROJECT_ENV = "MLFREEZE_PROJECT"
DEFAULT_FLAVORS = ("full", "lite")
# Stack parts an app can use (src/mlfreeze/platforms/stack.toml [parts.*]); only those are installed,
# collected into the bundle and self-tested.
USES = ("clip", "faces", "faiss")
KEYS = ("app", "entry", "model_set", "manifest", "uses", "hiddenimports", "datas", "excludes", "prune",
        "flavors", "budgets", "unpinned_goldens", "unproven_onnx", "update_root", "console", "signing", "python",
        "serve", "smoke", "module_collection_mode")
# PyInstaller's module collection modes: "pyz" (byte-code in the archive, the default), "pyc" (byte-code
# files), "py" (source only), "pyz+py"/"py+pyz" (byte-code and the source beside it: what
# torch.jit.script, inspect.getsource and anything else that reads a function's source need)
COLLECTION_MODES = ("pyz", "pyc", "py", "pyz+py", "py+pyz")
_PACKAGE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
BUDGET_KEYS = (*FLAVORS, "components", "max_growth", "measure")  # sizes_budget owns the grammar


def bundle_name(app: str, version: str, platform: str, flavor: str) -> str:
    """dist/<this>: ``<app>-<version>-<platform>-<flavor>``."""
    return f"{app}-{version}-{platform}-{flavor}"


@dataclass(frozen=True, kw_only=True)
class ProjectConfig:
    """``[tool.mlfreeze]`` validated; paths absolute. Keys: docs/your-app.md."""

    root: Path
    app: str
    version: str
    entry: Path  # the entry script, or the source file of the entry point's module
    entry_point: str | None = None  # "package.module:function" when entry names one (mlfreeze.project.entry)
    model_set: str = "default"
    manifest: Path | None = None  # None: mlfreeze's own src/mlfreeze/specs/models.toml
    uses: tuple[str, ...] = USES
    hiddenimports: tuple[str, ...] = ()
    datas: tuple[tuple[Path, str], ...] = ()  # (source, destination folder inside the bundle)
    excludes: tuple[str, ...] = ()
    prune: tuple[Any, ...] = ()  # mlfreeze.bundle.prune.Rule
    flavors: tuple[str, ...] = DEFAULT_FLAVORS
    budgets: Budgets = field(default_factory=Budgets)
    unpinned_goldens: tuple[str, ...] = ()  # model ids allowed to ship without pinned goldens (release)
    unproven_onnx: tuple[str, ...] = ()  # model ids whose ONNX towers may ship with no proof (slim gate, release)
    update_root: Path | None = None  # TUF root.json frozen into every bundle as update-root.json
    console: bool = True  # false: a windowed app (no console window on Windows and macOS)
    signing: Signing = field(default_factory=Signing)  # [tool.mlfreeze.signing] (mlfreeze.project.signing)
    python: str | None = None  # [tool.mlfreeze] python: the build interpreter (mlfreeze.project.pythons)
    requires_python: str = ""  # [project] requires-python
    contract: AppContract = field(default_factory=AppContract)  # serve / smoke: how the self-test runs the entry
    module_collection_mode: tuple[tuple[str, str], ...] = ()  # (package, PyInstaller collection mode)

    @property
    def pyproject(self) -> Path:
        return self.root / "pyproject.toml"

    @property
    def dist_dir(self) -> Path:
        return self.root / "dist"

    @property
    def build_dir(self) -> Path:
        return self.root / "build"

    def bundle_name(self, platform: str, flavor: str) -> str:
        return bundle_name(self.app, self.version, platform, flavor)


def is_source_tree(root: Path = SOURCE_ROOT) -> bool:
    """True when ``root`` is the mlfreeze source checkout (not an installed copy in site-packages)."""
    return (root / "src" / "mlfreeze" / "project" / "config.py").is_file() \
        and (root / "pyproject.toml").is_file()


def nearest(name: str, known: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``known``, else ``""``."""
    match = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _refuse_unknown(data: Mapping[str, Any], known: Iterable[str], path: Path, where: str) -> None:
    known = tuple(known)
    for key in sorted(data):
        if key not in known:
            raise ConfigError(f"{path}: key '{where}.{key}' is not a known key{nearest(key, known)}; "
                              f"known keys: {', '.join(known)} (docs/your-app.md)")


def _near_miss(tool: Any) -> str:
    if not isinstance(tool, dict):
        return ""
    match = difflib.get_close_matches("mlfreeze", [str(k) for k in tool], n=1, cutoff=0.6)
    return f" (it has [tool.{match[0]}]: a typo?)" if match else ""


def find_root(start: Path | None = None) -> Path:
    """The project root (see the module docstring). ConfigError (exit 2) when there is none."""
    env = os.environ.get(PROJECT_ENV)
    if env:
        root = Path(env).resolve()
        if not (root / "pyproject.toml").is_file():
            raise ConfigError(f"${PROJECT_ENV}={env}: no pyproject.toml there; point it at a project root")
        return root
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        if (directory / "pyproject.toml").is_file():
            return directory
    raise ConfigError(f"no pyproject.toml in {here} or above: not an mlfreeze project; run `mlfreeze init` "
                      f"there (or set ${PROJECT_ENV})")


def find_root_or_none(start: Path | None = None) -> Path | None:
    """:func:`find_root`, or None when no pyproject.toml is in reach (for commands that work anywhere)."""
    try:
        return find_root(start)
    except ConfigError:
        if os.environ.get(PROJECT_ENV):
            raise
        return None


def load_config(root: Path | None = None) -> ProjectConfig:
    """Load and validate the project's config; ConfigError (exit 2) naming file and key on any problem."""
    root = (root or find_root()).resolve()
    path = root / "pyproject.toml"
    data = read_toml(path)
    tools = data.get("tool", {})
    tool = tools.get("mlfreeze") if isinstance(tools, dict) else None
    if not isinstance(tool, dict):
        raise ConfigError(f"{path} has no [tool.mlfreeze] table{_near_miss(tools)}; mlfreeze never falls back "
                          "to another project: run `mlfreeze init` there, or add [tool.mlfreeze] with at least "
                          "app and entry (docs/your-app.md)")
    project = data.get("project", {})
    version = project.get("version") if isinstance(project, dict) else None
    if not isinstance(version, str) or not version:
        raise ConfigError(f"{path}: key 'project.version' is missing (mlfreeze names bundles by it)")
    _refuse_unknown(tool, KEYS, path, "tool.mlfreeze")
    t = Table(tool, path, "tool.mlfreeze")
    app = t.take("app", str)
    if not app or "/" in app or "\\" in app or app.startswith("."):
        raise t.error("app", f"is {app!r}; it names the executable: letters, digits, '-', '_', '.'")
    entry_value = t.take("entry", str)
    model_set = t.opt("model_set", str, "default")
    manifest_value = t.opt("manifest", str, None)
    manifest = (root / manifest_value) if manifest_value is not None else None
    uses = _choices(t, "uses", USES, USES)
    if not uses:
        raise t.error("uses", f"is empty; name at least one of {', '.join(USES)}")
    flavors = _choices(t, "flavors", FLAVORS, DEFAULT_FLAVORS)
    if not flavors:
        raise t.error("flavors", f"is empty; name at least one of {', '.join(FLAVORS)}")
    hiddenimports = t.strings("hiddenimports", ())
    excludes = t.strings("excludes", ())
    datas = _datas(t, root)
    raw_prune = t.opt("prune", list, [])
    raw_budgets = t.opt("budgets", dict, {})
    unpinned = t.strings("unpinned_goldens", ())
    unproven = t.strings("unproven_onnx", ())
    update_root_value = t.opt("update_root", str, None)
    update_root = (root / update_root_value) if update_root_value is not None else None
    console = t.opt("console", bool, True)
    signing = parse_signing(t.opt("signing", dict, {}), path, root)
    python = t.opt("python", str, None)
    if python is not None and not re.match(r"^3\.\d+$", python):
        raise t.error("python", f"is {python!r}; name a Python release such as \"3.12\"")
    contract = _contract(t, path)
    collection = _collection_modes(t)
    t.done()

    prune = parse_rules(raw_prune, path, "tool.mlfreeze.bundle.prune")
    _refuse_unknown(raw_budgets, BUDGET_KEYS, path, "tool.mlfreeze.budgets")
    budgets = load_budgets(path)
    entry, entry_point = resolve_entry(root, entry_value, f"{path}: key 'tool.mlfreeze.entry'")
    requires_python = project.get("requires-python", "") if isinstance(project, dict) else ""
    if manifest is not None and not manifest.is_file():
        raise ConfigError(f"{path}: key 'tool.mlfreeze.manifest' points at {manifest}, which does not exist")
    if update_root is not None:
        _check_update_root(path, update_root)
    return ProjectConfig(root=root, app=app, version=version, entry=entry, model_set=model_set, manifest=manifest,
                         uses=uses, hiddenimports=hiddenimports, datas=datas, excludes=excludes, prune=prune,
                         flavors=flavors, budgets=budgets, unpinned_goldens=unpinned,
                         unproven_onnx=unproven, update_root=update_root, console=console, signing=signing,
                         entry_point=str(entry_point) if entry_point else None,
                         python=python, requires_python=str(requires_python), contract=contract,
                         module_collection_mode=collection)


def _collection_modes(t: Table) -> tuple[tuple[str, str], ...]:
    """``module_collection_mode = { mypkg = "pyz+py" }``: PyInstaller's collection mode per package of
    the app (e.g. sources kept for ``torch.jit.script``); one ConfigError line per bad entry."""
    raw = t.opt("module_collection_mode", dict, {})
    out = []
    for package, mode in raw.items():
        key = f"module_collection_mode.{package}"
        if not _PACKAGE.match(str(package)):
            raise t.error(key, "is not a module or package name (dotted identifiers)")
        if mode not in COLLECTION_MODES:
            raise t.error(key, f"is {mode!r}; allowed: {', '.join(COLLECTION_MODES)}")
        out.append((str(package), str(mode)))
    return tuple(out)


def _contract(t: Table, path: Path) -> AppContract:
    """``serve`` and ``smoke`` (mlfreeze_runtime.contract validates them, the same code the frozen
    self-test reads them with); ConfigError naming the file and the key."""
    raw = {"serve": t.opt("serve", dict, None), "smoke": t.opt("smoke", (dict, list), None)}
    try:
        return parse_contract(raw)
    except ContractError as exc:
        hint = nearest(exc.key.rsplit(".", 1)[-1], exc.known) if exc.known else ""
        known = f"; known keys: {', '.join(exc.known)}" if exc.known else ""
        raise ConfigError(f"{path}: key 'tool.mlfreeze.{exc.key}' {exc.problem}{hint}{known} "
                          "(docs/your-app.md)") from None


def _check_update_root(path: Path, root_file: Path) -> None:
    """[tool.mlfreeze] update_root must name a TUF root metadata file (``mlfreeze publish`` writes
    ``metadata/1.root.json``); ConfigError (exit 2) otherwise."""
    import json

    where = f"{path}: key 'tool.mlfreeze.update_root'"
    try:
        doc = json.loads(root_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{where} points at {root_file}, which does not exist; copy the repository's "
                          "metadata/1.root.json there") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{where}: {root_file} is not readable JSON ({exc})") from None
    signed = doc.get("signed") if isinstance(doc, dict) else None
    if not isinstance(signed, dict) or signed.get("_type") != "root" or not doc.get("signatures"):
        raise ConfigError(f"{where}: {root_file} is not signed TUF root metadata (signed._type 'root'); "
                          "use the repository's metadata/1.root.json that `mlfreeze publish` wrote")


def _choices(t: Table, key: str, allowed: tuple[str, ...], default: tuple[str, ...]) -> tuple[str, ...]:
    values = t.strings(key, default)
    for v in values:
        if v not in allowed:
            raise t.error(key, f"names {v!r}{nearest(v, allowed)}; allowed: {', '.join(allowed)}")
    return tuple(dict.fromkeys(values))


def _datas(t: Table, root: Path) -> tuple[tuple[Path, str], ...]:
    out = []
    for i, item in enumerate(t.opt("datas", list, [])):
        if not (isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item)):
            raise t.error("datas", f"entry {i} must be [source, destination folder], e.g. ['assets/*.png', 'assets']")
        src, dest = item
        if Path(dest).is_absolute() or ".." in Path(dest).parts:
            raise t.error("datas", f"entry {i}: destination {dest!r} must be a relative folder inside the bundle")
        out.append((root / src, dest))
    return tuple(out)


def default_model_set(root: Path | None = None) -> str:
    """The project's ``[tool.mlfreeze] model_set`` (default ``default``); errors propagate."""
    return load_config(root).model_set


def project_manifest(explicit: str | Path | None, root: Path | None = None) -> Path | None:
    """The models manifest a command uses: ``--manifest``, else the project's ``manifest`` key, else None
    (mlfreeze's own src/mlfreeze/specs/models.toml)."""
    if explicit:
        return Path(explicit)
    return load_config(root).manifest
