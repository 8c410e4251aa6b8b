"""The project being built: ``[project]`` and ``[tool.mlfreeze]`` of its pyproject.toml.

The project root is ``$MLFREEZE_PROJECT``, else the nearest directory at or above the
working directory whose pyproject.toml has a ``[tool.mlfreeze]`` table, else the mlfreeze
source tree itself (which builds the embedded example app).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlfreeze.errors import ConfigError
from mlfreeze.schema import Table, read_toml

SOURCE_ROOT = Path(__file__).resolve().parents[1]
FLAVORS = ("full", "lite")


def bundle_name(app: str, version: str, platform: str, flavor: str) -> str:
    """dist/<this>: ``<app>-<version>-<platform>-<flavor>``."""
    return f"{app}-{version}-{platform}-{flavor}"


@dataclass(frozen=True, kw_only=True)
class ProjectConfig:
    root: Path
    app: str
    version: str
    entry: Path
    model_set: str
    flavors: tuple[str, ...]
    budgets: Mapping[str, Any] = field(default_factory=dict)  # validated by builder.sizes

    @property
    def dist_dir(self) -> Path:
        return self.root / "dist"

    @property
    def build_dir(self) -> Path:
        return self.root / "build"

    def bundle_name(self, platform: str, flavor: str) -> str:
        return bundle_name(self.app, self.version, platform, flavor)


def _has_table(pyproject: Path) -> bool:
    try:
        tool = read_toml(pyproject).get("tool", {})
    except ConfigError:
        # a broken pyproject.toml that means to configure mlfreeze is an error, never a reason
        # to walk on and build some other project
        if "tool.mlfreeze" in pyproject.read_text(encoding="utf-8", errors="replace"):
            raise
        return False
    return isinstance(tool, dict) and "mlfreeze" in tool


def find_root(start: Path | None = None) -> Path:
    env = os.environ.get("MLFREEZE_PROJECT")
    if env:
        return Path(env).resolve()
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file() and _has_table(candidate):
            return directory
    return SOURCE_ROOT


def load_config(root: Path | None = None) -> ProjectConfig:
    root = root or find_root()
    path = root / "pyproject.toml"
    data = read_toml(path)
    project, tools = data.get("project", {}), data.get("tool", {})
    version = project.get("version") if isinstance(project, dict) else None
    if not isinstance(version, str):
        raise ConfigError(f"{path}: key 'project.version' is missing (mlfreeze names bundles by it)")
    tool = tools.get("mlfreeze") if isinstance(tools, dict) else None
    if not isinstance(tool, dict):
        raise ConfigError(f"{path}: no [tool.mlfreeze] table (needs at least app and entry)")
    t = Table(tool, path, "tool.mlfreeze")
    app = t.take("app", str)
    entry = root / t.take("entry", str)
    model_set = t.opt("model_set", str, "default")
    flavors = t.strings("flavors", FLAVORS)
    for flavor in flavors:
        if flavor not in FLAVORS:
            raise t.error("flavors", f"names {flavor!r}; allowed: {', '.join(FLAVORS)}")
    budgets = t.opt("budgets", dict, {})
    t.done()
    if not entry.is_file():
        raise ConfigError(f"{path}: key 'tool.mlfreeze.entry' points at {entry}, which does not exist")
    return ProjectConfig(root=root, app=app, version=version, entry=entry, model_set=model_set,
                         flavors=flavors, budgets=budgets)


def default_model_set(root: Path | None = None) -> str:
    """The project's ``[tool.mlfreeze] model_set``, else ``default`` (no other key is needed)."""
    try:
        value = read_toml((root or find_root()) / "pyproject.toml").get("tool", {}).get("mlfreeze", {})
    except ConfigError:
        return "default"
    model_set = value.get("model_set") if isinstance(value, dict) else None
    return model_set if isinstance(model_set, str) else "default"
