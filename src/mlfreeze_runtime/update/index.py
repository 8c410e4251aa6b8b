"""The release index: for each variant, what it needs, its RECORD digest and its files as
content-addressed blobs (``blobs/<sha256[:2]>/<sha256>``, or byte ranges of packs), so a client
fetches single files.

Written by ``mlfreeze publish`` (builder) as ``index.json`` next to ``blobs/``; signed as a
TUF target, so every blob is covered through its sha256. Layout of one entry::

    {"name": "tiny-0.0.2-linux-cpu-lite", "version": "0.0.2", "platform": "linux-cpu",
     "flavor": "lite", "app": "tiny", "os": "linux", "arch": "x86_64", "accelerator": "cpu",
     "min_driver": null, "cuda_archs": [], "record_sha256": "<hex>",
     "files": [["tiny", "<sha256 hex>", 1234, 493], ...]}   # path, sha256, size, mode

``files`` holds every file of the bundle: RECORD's rows plus RECORD and BUILD-INFO.json.
``links`` (present only when the bundle has symlinks) lists ``[path, relative target]`` of each
symlink inside the bundle (the link rule of :mod:`mlfreeze_runtime.record`); a link to a file also
has its ``files`` row (its target's bytes), so an updater that ignores ``links`` installs a copy.

Every name that becomes a path component (variant name, app, version, platform, flavor, os, arch,
accelerator), every blob id and every path is checked by :mod:`names` when the index is read, as
are the types of every field the updater uses: a damaged or hostile index is refused in one
line (FetchError, exit 3) before anything is written.

Schema 1 (loose blobs) is the layout above. Schema 2 (``mlfreeze publish --packs``) adds where
each blob lives inside a pack, ``packs/<sha256 of the pack>.pack`` (a concatenation of blobs
under the release-asset limit), so a repository can be hosted as GitHub release assets::

    "packs": {"<64 hex>.pack": {"sha256": "<64 hex>", "size": 1990000000,
                                "url": "https://.../download/v1.2/<64 hex>.pack"}},   # url optional
    "blobs": {"<blob sha256>": ["<64 hex>.pack", 1048576, 2300]}   # pack, offset, length

Every file of size > 0 has a location; ``url`` absent means ``packs/<name>`` under the base.
A client refuses a schema it does not know in one line (an updater older than the repository).
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlfreeze_runtime import buildinfo, record
from mlfreeze_runtime.update import names
from mlfreeze_runtime.update.errors import FetchError
from mlfreeze_runtime.update.variants import Variant

FORMAT = "mlfreeze-update-index"
SCHEMA_VERSION = 1  # loose blobs only
PACKS_SCHEMA_VERSION = 2  # + "packs" and "blobs" (pack locations)
SCHEMAS = (SCHEMA_VERSION, PACKS_SCHEMA_VERSION)
INDEX_NAME = "index.json"
PACKS_DIR = "packs"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_PACK_NAME = re.compile(r"^[0-9a-f]{64}\.pack$")
_DOTTED = re.compile(r"^\d{1,6}(\.\d{1,6}){0,3}$")
MODES = (0o644, 0o755)
NAME_FIELDS = ("name", "app", "version", "platform", "os", "arch", "accelerator")


@dataclass(frozen=True, kw_only=True)
class FileRow:
    path: str
    sha256: str
    size: int
    mode: int


@dataclass(frozen=True, kw_only=True)
class PackLocation:
    """Where one blob lies: ``length`` bytes at ``offset`` of pack ``pack`` (``pack_size`` bytes,
    sha256 ``pack_sha256``), fetched from ``url`` when the index gives one, else ``packs/<pack>``."""

    pack: str
    offset: int
    length: int
    pack_size: int
    pack_sha256: str
    url: str | None = None


def blob_path(sha256: str) -> str:
    """Where a blob lies relative to the release's base: ``blobs/ab/abcdef...``."""
    return f"blobs/{sha256[:2]}/{sha256}"


def pack_path(name: str) -> str:
    """Where a pack lies relative to the release's base: ``packs/<64 hex>.pack``."""
    return f"{PACKS_DIR}/{name}"


def locations(doc: dict[str, Any]) -> dict[str, PackLocation]:
    """``{blob sha256: PackLocation}`` of a parsed index (empty for schema 1: loose blobs)."""
    packs = doc.get("packs") or {}
    out = {}
    for sha, (name, offset, length) in (doc.get("blobs") or {}).items():
        info = packs[name]
        out[sha] = PackLocation(pack=name, offset=int(offset), length=int(length), pack_size=int(info["size"]),
                                pack_sha256=info["sha256"], url=info.get("url"))
    return out


def bundle_files(bundle: Path) -> list[FileRow]:
    """Every file of ``bundle`` as index rows, after checking it against its own RECORD (full)."""
    found = record.verify(bundle, full=True)
    if found:
        raise ValueError(f"{bundle}: differs from its RECORD ({found[0].line()}); rebuild it")
    rows = []
    for rel, path in record.recorded_files(bundle):
        digest, size = record.hash_file(path)
        rows.append(FileRow(path=rel, sha256=digest, size=size, mode=_mode(path)))
    for name in (record.RECORD_NAME, record.BUILD_INFO_NAME):
        digest, size = record.hash_file(bundle / name)
        rows.append(FileRow(path=name, sha256=digest, size=size, mode=0o644))
    return sorted(rows, key=lambda r: r.path)


def _mode(path: Path) -> int:
    return 0o755 if os.stat(path).st_mode & stat.S_IXUSR else 0o644


def variant_entry(bundle: Path, *, os_name: str, arch: str, accelerator: str, min_driver: str | None,
                  cuda_archs: list[str]) -> dict[str, Any]:
    """The index entry of a frozen bundle (reads BUILD-INFO.json and RECORD); ValueError when a
    name is not one the updater accepts or a symlink breaks the link rule."""
    info = buildinfo.read(bundle)
    rows = bundle_files(bundle)
    entry = {"name": bundle.name, "app": info["app"], "version": info["version"], "platform": info["platform"],
             "flavor": info["flavor"], "os": os_name, "arch": arch, "accelerator": accelerator,
             "min_driver": min_driver, "cuda_archs": list(cuda_archs), "record_sha256": info["record"]["sha256"],
             "files": [[r.path, r.sha256, r.size, r.mode] for r in rows]}
    found = record.links(bundle)
    if found:
        entry["links"] = [[rel, target] for rel, target in found]
    try:
        check_entry(entry, str(bundle))
    except FetchError as exc:
        raise ValueError(exc.message.replace("the release is damaged or hostile: nothing installed",
                                             "rename it before publishing")) from None
    return entry


def to_variant(entry: dict[str, Any]) -> Variant:
    return Variant(name=entry["name"], version=entry["version"], platform=entry["platform"],
                   flavor=entry["flavor"], os=entry["os"], arch=entry["arch"], accelerator=entry["accelerator"],
                   min_driver=entry.get("min_driver"), cuda_archs=tuple(entry.get("cuda_archs", ())),
                   glibc=entry.get("glibc"), extra={"app": entry["app"]})


def files_of(entry: dict[str, Any]) -> list[FileRow]:
    return [FileRow(path=p, sha256=h, size=int(s), mode=int(m)) for p, h, s, m in entry["files"]]


def links_of(entry: dict[str, Any]) -> dict[str, str]:
    """``{path: relative target}`` of the entry's symlinks (checked by :func:`check_entry`)."""
    return {p: t for p, t in entry.get("links", [])}


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_entry(entry: object, where: str) -> None:
    """FetchError (exit 3) unless ``entry`` is a variant the updater can install without a name
    leaving the install root: every field it uses present, of its type, names and paths safe."""
    if not isinstance(entry, dict):
        raise FetchError(f"{where}: a variant is not an object; the release is damaged")
    label = entry.get("name") if isinstance(entry.get("name"), str) else "?"
    for key in NAME_FIELDS:
        names.check_name(entry.get(key), f"variant {label!r}: {key}", where)
    if entry.get("flavor") not in buildinfo.FLAVORS:
        raise FetchError(f"{where}: variant {label!r}: flavor {entry.get('flavor')!r} is not one of "
                         f"{', '.join(buildinfo.FLAVORS)}")
    names.check_sha256(entry.get("record_sha256"), f"variant {label!r}: record_sha256", where)
    driver = entry.get("min_driver")
    if driver is not None and not (isinstance(driver, str) and _DOTTED.match(driver)):
        raise FetchError(f"{where}: variant {label!r}: min_driver {driver!r} is not a dotted version")
    archs = entry.get("cuda_archs", [])
    if not isinstance(archs, list) or not all(names.name_problem(a) is None for a in archs):
        raise FetchError(f"{where}: variant {label!r}: cuda_archs {archs!r} is not a list of arch names")
    files = entry.get("files")
    if not isinstance(files, list) or not files:
        raise FetchError(f"{where}: variant {label!r}: no file list; the release is damaged")
    seen: set[str] = set()
    for row in files:
        if not isinstance(row, list) or len(row) != 4:
            raise FetchError(f"{where}: variant {label!r}: file row {row!r} is not [path, sha256, size, mode]")
        path, sha, size, mode = row
        names.check_relpath(path, f"variant {label!r}: path", where)
        names.check_sha256(sha, f"variant {label!r}: {path}: sha256", where)
        if not _int(size) or mode not in MODES:
            raise FetchError(f"{where}: variant {label!r}: {path}: size {size!r} or mode {mode!r} is not a byte "
                             "count and 0o644/0o755; the release is damaged")
        if path.casefold() in seen:
            raise FetchError(f"{where}: variant {label!r}: {path} is listed twice (or differs only in case)")
        seen.add(path.casefold())
    dirs = {"/".join(p.split("/")[:i]).casefold() for p in (r[0] for r in files) for i in range(1, p.count("/") + 1)}
    clash = sorted(p for p in seen if p in dirs)
    if clash:
        raise FetchError(f"{where}: variant {label!r}: {clash[0]} is both a file and a folder; the release is damaged")
    links = entry.get("links", [])
    if not isinstance(links, list):
        raise FetchError(f"{where}: variant {label!r}: links is not a list")
    for row in links:
        if not isinstance(row, list) or len(row) != 2:
            raise FetchError(f"{where}: variant {label!r}: link {row!r} is not [path, target]")
        path, target = row
        names.check_relpath(path, f"variant {label!r}: link", where)
        why = link_target_problem(path, target)
        if why is not None or path.casefold() in dirs:
            raise FetchError(f"{where}: variant {label!r}: link {path} -> {target!r} "
                             f"{why or 'is also a folder of listed files'}; the release is damaged or hostile: "
                             "nothing installed")


def link_target_problem(path: str, target: object) -> str | None:
    """Why a link at ``path`` (bundle-relative) to ``target`` would leave the bundle (None: it stays inside)."""
    if not isinstance(target, str) or not target or names.relpath_problem(target.replace("..", "x")) is not None:
        return "is absolute, empty or not a plain relative POSIX path"
    lexical = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    if lexical in (".", "..") or lexical.startswith("../"):
        return "points outside the bundle"
    return None


def load_document(data: bytes, where: str, fmt: str, what: str) -> dict[str, Any]:
    """A signed JSON document of format ``fmt`` (the index, a model pack); FetchError (exit 3) when
    it is not JSON or not that format."""
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise FetchError(f"{where}: not JSON ({exc}); the release is damaged") from None
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise FetchError(f"{where}: not {what} (format {fmt})")
    return doc


def escapes(rel: object) -> bool:
    """Whether a recorded relative path would leave the folder it is written into (or is not a
    plain relative POSIX path: see :func:`names.relpath_problem`)."""
    return names.relpath_problem(rel) is not None


def parse(data: bytes, where: str) -> dict[str, Any]:
    """The index document; FetchError (exit 3) when it is not an mlfreeze update index."""
    doc = load_document(data, where, FORMAT, "an mlfreeze update index")
    if doc.get("schema_version") not in SCHEMAS:
        raise FetchError(f"{where}: index schema_version {doc.get('schema_version')!r} is not one this updater "
                         f"reads ({', '.join(map(str, SCHEMAS))}); install the newest release by hand to get an "
                         "updater that reads it")
    names.check_name(doc.get("app"), "app", where)
    names.check_name(doc.get("version"), "release version", where)
    variants = doc.get("variants")
    if not isinstance(variants, list):
        raise FetchError(f"{where}: 'variants' is not a list; the release is damaged")
    for entry in variants:
        check_entry(entry, where)
    if len({e["name"] for e in variants}) != len(variants):
        raise FetchError(f"{where}: two variants share a name; the release is damaged")
    if doc["schema_version"] == PACKS_SCHEMA_VERSION:
        _check_packs(doc, where)
    return doc


def _check_packs(doc: dict[str, Any], where: str) -> None:
    """FetchError unless every pack is named by its sha256 and every file of size > 0 has a
    location that lies inside its pack and is as long as the file."""
    packs, blobs = doc.get("packs"), doc.get("blobs")
    if not isinstance(packs, dict) or not isinstance(blobs, dict):
        raise FetchError(f"{where}: schema 2 index without 'packs' and 'blobs'; the release is damaged")
    for name, info in packs.items():
        if not _PACK_NAME.match(name) or not isinstance(info, dict) or not _HEX64.match(str(info.get("sha256"))) \
                or name != f"{info['sha256']}.pack" or not isinstance(info.get("size"), int) \
                or not isinstance(info.get("url", ""), str) \
                or ("url" in info and not str(info["url"]).startswith(("https://", "http://"))):
            raise FetchError(f"{where}: pack {name!r} is not '<its sha256>.pack' with a size (and an http(s) url, "
                             "if any); the release is damaged")
    for sha, loc in blobs.items():
        ok = isinstance(loc, list) and len(loc) == 3 and loc[0] in packs and all(isinstance(x, int) for x in loc[1:])
        if not ok or loc[1] < 0 or loc[2] < 0 or loc[1] + loc[2] > packs[loc[0]]["size"]:
            raise FetchError(f"{where}: blob {sha[:16]}...: location {loc!r} is not inside a listed pack; "
                             "the release is damaged")
    for entry in doc.get("variants", []):
        for _path, sha, size, _mode in entry.get("files", []):
            if size and (sha not in blobs or blobs[sha][2] != size):
                raise FetchError(f"{where}: variant {entry.get('name')}: file {_path} has no pack location of "
                                 f"{size} bytes; the release is damaged")


def render(app: str, version: str, entries: list[dict[str, Any]], *, packs: dict[str, dict[str, Any]] | None = None,
           blobs: dict[str, list[Any]] | None = None) -> bytes:
    """The index bytes: schema 1 (loose blobs), or schema 2 when ``packs`` and ``blobs`` are given."""
    doc: dict[str, Any] = {"format": FORMAT, "schema_version": SCHEMA_VERSION, "app": app, "version": version,
                           "variants": sorted(entries, key=lambda e: e["name"])}
    if packs is not None:
        doc.update(schema_version=PACKS_SCHEMA_VERSION, packs=packs, blobs=blobs or {})
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()
