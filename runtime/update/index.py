"""The release index: for each variant, what it needs, its RECORD digest and its files as
content-addressed blobs (``blobs/<sha256[:2]>/<sha256>``), so a client fetches single files.

Written by ``mlfreeze publish`` (builder) as ``index.json`` next to ``blobs/``; signed as a
TUF target, so every blob is covered through its sha256. Layout of one entry::

    {"name": "tiny-0.0.2-linux-cpu-lite", "version": "0.0.2", "platform": "linux-cpu",
     "flavor": "lite", "app": "tiny", "os": "linux", "arch": "x86_64", "accelerator": "cpu",
     "min_driver": null, "cuda_archs": [], "record_sha256": "<hex>",
     "files": [["tiny", "<sha256 hex>", 1234, 493], ...]}   # path, sha256, size, mode

``files`` holds every file of the bundle: RECORD's rows plus RECORD and BUILD-INFO.json.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlfreeze_runtime import buildinfo, record
from mlfreeze_runtime.update.errors import FetchError
from mlfreeze_runtime.update.variants import Variant

FORMAT = "mlfreeze-update-index"
SCHEMA_VERSION = 1
INDEX_NAME = "index.json"


@dataclass(frozen=True, kw_only=True)
class FileRow:
    path: str
    sha256: str
    size: int
    mode: int


def blob_path(sha256: str) -> str:
    """Where a blob lies relative to the release's base: ``blobs/ab/abcdef...``."""
    return f"blobs/{sha256[:2]}/{sha256}"


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
    """The index entry of a frozen bundle (reads BUILD-INFO.json and RECORD)."""
    info = buildinfo.read(bundle)
    rows = bundle_files(bundle)
    return {"name": bundle.name, "app": info["app"], "version": info["version"], "platform": info["platform"],
            "flavor": info["flavor"], "os": os_name, "arch": arch, "accelerator": accelerator,
            "min_driver": min_driver, "cuda_archs": list(cuda_archs), "record_sha256": info["record"]["sha256"],
            "files": [[r.path, r.sha256, r.size, r.mode] for r in rows]}


def to_variant(entry: dict[str, Any]) -> Variant:
    return Variant(name=entry["name"], version=entry["version"], platform=entry["platform"],
                   flavor=entry["flavor"], os=entry["os"], arch=entry["arch"], accelerator=entry["accelerator"],
                   min_driver=entry.get("min_driver"), cuda_archs=tuple(entry.get("cuda_archs", ())),
                   extra={"app": entry["app"]})


def files_of(entry: dict[str, Any]) -> list[FileRow]:
    return [FileRow(path=p, sha256=h, size=int(s), mode=int(m)) for p, h, s, m in entry["files"]]


def parse(data: bytes, where: str) -> dict[str, Any]:
    """The index document; FetchError (exit 3) when it is not an mlfreeze update index."""
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise FetchError(f"{where}: not JSON ({exc}); the release is damaged") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("schema_version") != SCHEMA_VERSION:
        raise FetchError(f"{where}: not an mlfreeze update index (format {FORMAT} v{SCHEMA_VERSION})")
    for entry in doc.get("variants", []):
        for row in entry.get("files", []):
            rel = row[0]
            if rel.startswith("/") or "\\" in rel or ".." in rel.split("/"):
                raise FetchError(f"{where}: variant {entry.get('name')}: path {rel!r} escapes the install")
    return doc


def render(app: str, version: str, entries: list[dict[str, Any]]) -> bytes:
    doc = {"format": FORMAT, "schema_version": SCHEMA_VERSION, "app": app, "version": version,
           "variants": sorted(entries, key=lambda e: e["name"])}
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()
