"""Incremental freezes: one hash over everything a freeze reads, in parts.

The inputs: installed distributions and their versions (importlib.metadata), the lock they were
installed from, the sha256 of every model file the bundle will hold, the project's files the
bundle holds (the entry's import graph inside the project and ``[tool.mlfreeze] datas``:
mlfreeze.bundle.freeze.project_sources and app_layout, never a walk of the project folder, so
``.nox/``, ``dist/``, ``build/`` and ``.git/`` are never read), mlfreeze's runtime package, the
spec and hooks, the prune rules, mlfreeze's version and the platform / flavor / app name. The
hash is stored in the bundle as ``.mlfreeze-stamp``; a later freeze whose inputs hash the same
skips PyInstaller and says so, but only after the bundle still matches its RECORD (sizes and
mtimes; every hash with ``--verify``) and BUILD-INFO still names that RECORD: a damaged bundle is
rebuilt, and the reason is printed.

The stamp also keeps the hash of each part (:meth:`FreezeInputs.parts`), the outside modules the
app's own code imports (:mod:`mlfreeze.bundle.modgraph`) and where the app's own files lie in
the bundle. When only the ``app`` part changed (the project's own modules and data files) and
the bundle is intact, the freeze updates it in place (:func:`update_refusal` is None,
:func:`relink`): a new staging folder of hard links to the last bundle, the app's files
replaced, then the self-test and RECORD as after any freeze. Any other part that changed is
named in one line and a full freeze runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
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
    sources: Mapping[str, str]  # label -> sha256 of the file's bytes (mlfreeze's specs, hooks, runtime, the lock)
    params: Mapping[str, object]  # the spec parameters, minus absolute build paths
    app_sources: Mapping[str, str] = field(default_factory=dict)  # the project's own modules and data files
    imports: Sequence[str] = ()  # the outside modules the app's own modules import (modgraph.app_graph)
    app_params: Mapping[str, object] = field(default_factory=dict)  # spec parameters that follow the app's files

    def parts(self) -> dict[str, str]:
        """sha256 of each part of the inputs: ``target`` (platform, flavor, app name), ``distributions``,
        ``models``, ``sources``, ``params``, ``imports`` and ``app`` (the project's own files)."""
        docs: dict[str, object] = {
            "target": [self.platform, self.flavor, self.app],
            "distributions": dict(sorted(self.distributions.items())),
            "models": dict(sorted(self.models.items())),
            "sources": dict(sorted(self.sources.items())), "params": self.params,
            "imports": sorted(self.imports),
            "app": {"files": dict(sorted(self.app_sources.items())), "params": self.app_params}}
        return {k: _sha(v) for k, v in docs.items()}

    def digest(self) -> str:
        """sha256 over every part: equal digests, equal inputs."""
        return _sha(self.parts())

    def base_digest(self) -> str:
        """sha256 over every part except the project's own files: equal, and the bundle can be
        updated in place."""
        return _sha({k: v for k, v in self.parts().items() if k != "app"})


def _sha(doc: object) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


# What a changed part means, for the one line that says why a full freeze runs.
PART_CHANGES = {
    "target": "the platform, flavor or app name changed",
    "distributions": "the installed distributions changed (a new lock or another environment)",
    "models": "the models changed",
    "sources": "mlfreeze's specs, hooks, runtime or builder, the prune rules, goldens or the lock changed",
    "params": "the freeze parameters changed (hidden imports, excludes, datas, entry, prune rules)",
}


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


def _stamp_doc(bundle: Path) -> dict[str, object]:
    try:
        doc = json.loads((bundle / STAMP_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def read_stamp(bundle: Path) -> str | None:
    """The inputs digest the bundle was sealed with, None without a readable stamp."""
    digest = _stamp_doc(bundle).get("inputs_sha256")
    return digest if isinstance(digest, str) else None


def write_stamp(bundle: Path, digest: str, inputs: FreezeInputs | None = None,
                app_files: Iterable[str] = ()) -> None:
    """Write ``.mlfreeze-stamp``: the inputs digest and, given ``inputs``, what an update in place
    compares against (the parts' hashes, the outside imports, and ``app_files``: the bundle-relative
    paths of the project's own files, which the next update replaces)."""
    doc: dict[str, object] = {"inputs_sha256": digest}
    if inputs is not None:
        doc.update(parts=inputs.parts(), imports=sorted(inputs.imports), app_files=sorted(app_files),
                   detail=_detail(inputs))
    (bundle / STAMP_NAME).write_text(json.dumps(doc, sort_keys=True) + "\n", encoding="utf-8")


def _detail(inputs: FreezeInputs) -> dict[str, dict[str, str]]:
    """The parts a changed-line names entries of, as plain ``{name: value}`` (params as JSON text)."""
    return {"distributions": dict(inputs.distributions), "models": dict(inputs.models),
            "sources": dict(inputs.sources),
            "params": {k: json.dumps(v, sort_keys=True, default=str) for k, v in inputs.params.items()}}


def _entries_changed(old: Mapping[str, str], new: Mapping[str, str], *, versions: bool = False, most: int = 3) -> str:
    """``+added, -removed, ~changed`` names (``~torch 2.14.1 -> 2.14.2`` with ``versions``), at most ``most``."""
    items = [*(f"+{k} {new[k]}" if versions else f"+{k}" for k in sorted(set(new) - set(old))),
             *(f"-{k}" for k in sorted(set(old) - set(new))),
             *(f"~{k} {old[k]} -> {new[k]}" if versions else f"~{k}"
               for k in sorted(set(old) & set(new)) if old[k] != new[k])]
    return ", ".join(items[:most]) + (f" (+{len(items) - most} more)" if len(items) > most else "")


def stamped_app_files(bundle: Path) -> list[str]:
    """The bundle-relative paths of the project's own files, as the stamp records them."""
    files = _stamp_doc(bundle).get("app_files")
    return [f for f in files if isinstance(f, str)] if isinstance(files, list) else []


def import_change(old: Iterable[str], new: Iterable[str], versions: Mapping[str, str] | None = None,
                  owners: Mapping[str, Sequence[str]] | None = None) -> str:
    """What changed in the app's outside imports, as a phrase: ``+numpy (numpy 2.4.6), -json``;
    a new top-level name is followed by the distributions that provide it and their ``versions``
    (normalised name -> version; this environment's when not given). ``owners``: top-level name ->
    distributions (importlib.metadata's packages_distributions(), read here when not given)."""
    from importlib.metadata import packages_distributions

    old_set, new_set = set(old), set(new)
    owners = packages_distributions() if owners is None else owners
    versions = installed_distributions() if versions is None else versions

    def named(n: str) -> str:
        dists = sorted({d.lower().replace("_", "-") for d in owners.get(n, [])}) if "." not in n else []
        return f"{n} ({', '.join(f'{d} {versions[d]}' if d in versions else d for d in dists)})" if dists else n

    added = [f"+{named(n)}" for n in sorted(new_set - old_set)]
    return ", ".join([*added, *(f"-{n}" for n in sorted(old_set - new_set))])


def update_refusal(bundle: Path, inputs: FreezeInputs, *, full: bool = False) -> str | None:
    """Why ``bundle`` cannot be updated in place to ``inputs`` (one phrase), None when only the
    project's own files changed and the bundle is intact (:func:`stale_reason`'s checks)."""
    if not bundle.is_dir():
        return "no bundle yet"
    doc = _stamp_doc(bundle)
    old_parts = doc.get("parts")
    if not isinstance(old_parts, dict) or doc.get("inputs_sha256") is None:
        return f"{bundle.name} records no parts of its inputs (frozen before updates in place)"
    new_parts = inputs.parts()
    changed = [k for k in new_parts if k != "app" and old_parts.get(k) != new_parts[k]]
    if "imports" in changed:
        recorded = doc.get("imports")
        old_imports = [str(n) for n in recorded] if isinstance(recorded, list) else []
        return (f"the app's imports of outside modules changed: "
                f"{import_change(old_imports, inputs.imports, inputs.distributions)}; PyInstaller must analyse them")
    if changed:
        recorded_detail = doc.get("detail")
        old_detail = recorded_detail if isinstance(recorded_detail, dict) else {}
        new_detail = _detail(inputs)
        lines = []
        for k in changed:
            line = PART_CHANGES.get(k, f"{k} changed")
            old_entries = old_detail.get(k)
            if k in new_detail and isinstance(old_entries, dict):
                line += ": " + _entries_changed(old_entries, new_detail[k], versions=k == "distributions")
            lines.append(line)
        return "; ".join(lines)
    return stale_reason(bundle, str(doc["inputs_sha256"]), full=full)


def relink(previous: Path, staging: Path, *, drop: Iterable[str], add: Mapping[str, Path]) -> dict[str, Path]:
    """Make ``staging`` a copy of the bundle ``previous`` made of hard links (a plain copy where the
    file system refuses links), without its RECORD, BUILD-INFO.json, stamp and the bundle-relative
    paths in ``drop``; then copy each file of ``add`` (bundle-relative path -> source) in as a new
    file, never writing through a link. Folders that ``drop`` empties are removed. Returns the
    linked files (bundle-relative path -> staged path); OSError when the disk fails."""
    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    if staging.exists():
        shutil.rmtree(staging)
    shutil.copytree(previous, staging, symlinks=True, copy_function=link,
                    ignore=lambda d, names: [n for n in names if Path(d) == previous and n in _record.NOT_RECORDED])
    for rel in drop:
        path = staging / rel
        if path.is_file() or path.is_symlink():
            path.unlink()
        parent = path.parent
        while parent != staging and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent
    for rel, src in add.items():
        dest = staging / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists() or dest.is_symlink():
            dest.unlink()
        shutil.copyfile(src, dest)
    return {rel: path for rel, path in _record.recorded_files(staging) if rel not in add}


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
