"""Incremental freezes: one hash over everything a freeze reads.

The inputs: installed distributions and their versions (importlib.metadata), the sha256 of
every model file the bundle will hold, the app's sources, the spec and hooks, the prune rules,
and the platform / flavor / app name. The hash is stored in the bundle as ``.mlfreeze-stamp``;
a later freeze whose inputs hash the same skips PyInstaller and says so.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from mlfreeze.cache import hash_file

STAMP_NAME = ".mlfreeze-stamp"
_SOURCE_SUFFIXES = (".py", ".pyi", ".toml", ".json", ".spec", ".txt", ".cfg", ".html", ".css", ".js")


@dataclass(frozen=True, kw_only=True)
class FreezeInputs:
    """What a freeze reads, as plain data (hashed in a stable order)."""

    platform: str
    flavor: str
    app: str
    distributions: Mapping[str, str]  # normalised name -> version
    models: Mapping[str, str]  # bundle-relative path -> sha256
    sources: Mapping[str, str]  # label -> sha256 of the file's bytes
    params: Mapping[str, object]  # the spec parameters, minus absolute build paths

    def digest(self) -> str:
        doc = {"platform": self.platform, "flavor": self.flavor, "app": self.app,
               "distributions": dict(sorted(self.distributions.items())),
               "models": dict(sorted(self.models.items())),
               "sources": dict(sorted(self.sources.items())), "params": self.params}
        return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def installed_distributions() -> dict[str, str]:
    """Every distribution importable by this interpreter, name -> version."""
    out: dict[str, str] = {}
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").strip().lower().replace("_", "-")
        if name:
            out[name] = dist.version
    return out


def source_files(paths: Iterable[Path], root: Path) -> dict[str, str]:
    """sha256 of every source-like file under ``paths`` (files or directories), keyed relative to root."""
    out: dict[str, str] = {}
    for path in paths:
        files = [path] if path.is_file() else sorted(
            p for p in path.rglob("*") if p.is_file() and p.suffix in _SOURCE_SUFFIXES and "__pycache__" not in p.parts)
        for f in files:
            try:
                key = f.resolve().relative_to(root.resolve()).as_posix()
            except ValueError:
                key = f.resolve().as_posix()
            out[key] = hash_file(f)[1]
    return out


def read_stamp(bundle: Path) -> str | None:
    try:
        return json.loads((bundle / STAMP_NAME).read_text(encoding="utf-8"))["inputs_sha256"]  # type: ignore[no-any-return]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_stamp(bundle: Path, digest: str) -> None:
    (bundle / STAMP_NAME).write_text(json.dumps({"inputs_sha256": digest}) + "\n", encoding="utf-8")


def is_fresh(bundle: Path, digest: str) -> bool:
    """The bundle exists, passed its self-test (stamps are written only then) and has these inputs."""
    return bundle.is_dir() and (bundle / "BUILD-INFO.json").is_file() and read_stamp(bundle) == digest
