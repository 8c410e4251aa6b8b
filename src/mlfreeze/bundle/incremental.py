"""Incremental freezes: one hash over everything a freeze reads.

The inputs: installed distributions and their versions (importlib.metadata), the sha256 of the
lock they were installed from, the sha256 of every model file the bundle will hold, the project's
files the bundle holds (the entry's import graph inside the project and ``[tool.mlfreeze] datas``:
mlfreeze.bundle.freeze.project_sources, never a walk of the project folder, so ``.nox/``,
``dist/``, ``build/`` and ``.git/`` are never read), mlfreeze's runtime package, the spec and
hooks, the prune rules, mlfreeze's version and the platform / flavor / app name. The hash is
stored in the bundle as ``.mlfreeze-stamp``; a later freeze whose inputs hash the same skips
PyInstaller and says so, but only after the bundle still matches its RECORD (sizes and mtimes;
every hash with ``--verify``) and BUILD-INFO still names that RECORD: a damaged bundle is
rebuilt, and the reason is printed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from mlfreeze.models.cache import hash_file
from mlfreeze_runtime import buildinfo as _buildinfo
from mlfreeze_runtime import record as _record
from mlfreeze_runtime.record import STAMP_NAME

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
    lock: str | None = None  # sha256 of locks/<platform>[-slim].txt, None without one

    def digest(self) -> str:
        doc = {"platform": self.platform, "flavor": self.flavor, "app": self.app, "lock": self.lock,
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


def stale_reason(bundle: Path, digest: str, *, full: bool = False) -> str | None:
    """Why ``bundle`` cannot be kept for inputs ``digest`` (None: it can).

    Kept only when it exists, passed its self-test (stamps are written only then), has these
    inputs, its BUILD-INFO is valid and names its RECORD's sha256, and every file matches
    RECORD (``full``: re-hashed; else sizes, and hashes of files modified after RECORD).
    """
    if not bundle.is_dir():
        return "no bundle yet"
    stamp = read_stamp(bundle)
    if stamp is None:
        return f"no {STAMP_NAME} (the last freeze did not finish)"
    if stamp != digest:
        return f"inputs changed ({stamp[:12]} -> {digest[:12]})"
    try:
        info = _buildinfo.read(bundle)
        findings = _record.verify(bundle, full=full)
        recorded = _record.digest_of(bundle)
    except (_buildinfo.BuildInfoError, _record.RecordError) as exc:
        return str(exc)
    if info["record"]["sha256"] != recorded:
        return "RECORD is not the one BUILD-INFO.json names"
    if findings:
        more = f" (+{len(findings) - 1} more)" if len(findings) > 1 else ""
        return f"the bundle no longer matches its RECORD: {findings[0].line()}{more}"
    return None


def is_fresh(bundle: Path, digest: str, *, full: bool = False) -> bool:
    """The bundle can be kept as it is for inputs ``digest`` (:func:`stale_reason` is None)."""
    return stale_reason(bundle, digest, full=full) is None
