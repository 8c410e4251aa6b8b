"""Packs for ``mlfreeze publish --packs``: blobs concatenated into files under the release-asset
limit, so an update repository can live where there are no folders and few, bounded files
(GitHub release assets: under 2 GiB each, a capped number per release).

A pack is ``packs/<sha256 of its bytes>.pack``: the blobs of one publish that no earlier pack
of the repository holds, in a fixed order (variant name, then path; each distinct sha256 once),
cut greedily so each pack stays within the limit. The signed index (schema 2,
``mlfreeze_runtime.update.index``) says for every blob ``[pack, offset, length]``. So:

- a blob an earlier release packed is referenced there, not packed again: an app-only update
  adds one small pack (:func:`known`, read from the repository's earlier signed indexes in
  ``targets/``, which the publish job syncs down; the packs themselves need not be present);
- the same inputs give the same packs byte for byte, hence the same names (republishing is
  idempotent; two releases never write different bytes under one name);
- a file larger than the limit cannot be packed: :class:`mlfreeze.errors.PackError` (exit 4)
  naming it, raised by :func:`plan` before anything is written.

:func:`plan` is pure; :func:`write` streams each pack to a temporary file, re-hashing every blob
on the way (a file that changed since it was indexed is an IntegrityError), and renames it into
place only when complete.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlfreeze.errors import IntegrityError, PackError, UsageError
from mlfreeze.units import GITHUB_ASSET_LIMIT, format_exact, parse_size
from mlfreeze_runtime.update import index

DEFAULT_LIMIT = GITHUB_ASSET_LIMIT - 16 * 2**20
"""2,032 MiB: under GitHub's 2 GiB per-asset limit with room to spare (as release's split limit)."""
CHUNK = 1 << 20


@dataclass(frozen=True, kw_only=True)
class Blob:
    """One file's bytes to pack: its sha256 and size, a file holding them, and a label for messages
    (``<bundle>/<path>``), which also orders the packing."""

    sha256: str
    size: int
    source: Path
    label: str


@dataclass(frozen=True, kw_only=True)
class Pack:
    """A planned pack: its blobs in order (offsets follow from the sizes)."""

    blobs: tuple[Blob, ...]

    @property
    def size(self) -> int:
        return sum(b.size for b in self.blobs)


@dataclass(kw_only=True)
class Catalog:
    """What a repository's packs hold: ``packs`` {name: {"sha256", "size"[, "url"]}} and
    ``blobs`` {sha256: [pack name, offset, length]} (the index's schema-2 tables)."""

    packs: dict[str, dict[str, Any]] = field(default_factory=dict)
    blobs: dict[str, list[Any]] = field(default_factory=dict)

    def add(self, other: Catalog) -> None:
        self.packs.update(other.packs)
        for sha, loc in other.blobs.items():
            self.blobs.setdefault(sha, loc)

    def for_files(self, shas: set[str]) -> Catalog:
        """The part of the catalog an index listing blobs ``shas`` needs."""
        blobs = {s: self.blobs[s] for s in sorted(shas) if s in self.blobs}
        names = {loc[0] for loc in blobs.values()}
        return Catalog(packs={n: self.packs[n] for n in sorted(names)}, blobs=blobs)


def parse_limit(text: str | int | None) -> int:
    """``--pack-limit`` in bytes (src/mlfreeze/units.py grammar), default :data:`DEFAULT_LIMIT`;
    UsageError (exit 2) unless it is positive and below GitHub's 2 GiB asset limit."""
    if text is None:
        return DEFAULT_LIMIT
    try:
        limit = parse_size(text)
    except ValueError as exc:
        raise UsageError(f"--pack-limit: {exc}") from None
    if limit <= 0 or limit >= GITHUB_ASSET_LIMIT:
        raise UsageError(f"--pack-limit {text!r} ({format_exact(limit)}) must be above 0 and below GitHub's "
                         f"release-asset limit, {format_exact(GITHUB_ASSET_LIMIT)}")
    return limit


def known(repo: Path) -> Catalog:
    """Every pack location the repository's earlier indexes name (``targets/*.index.json`` and
    ``index.json``, schema 2); schema-1 indexes (loose blobs) contribute nothing."""
    out = Catalog()
    paths = sorted((repo / "targets").glob(f"*.{index.INDEX_NAME}")) + [repo / index.INDEX_NAME]
    for path in paths:
        if not path.is_file():
            continue
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise IntegrityError(f"{path}: unreadable earlier index ({exc}); sync the repository again") from None
        if isinstance(doc, dict) and doc.get("schema_version") == index.PACKS_SCHEMA_VERSION:
            out.add(Catalog(packs=dict(doc.get("packs", {})), blobs=dict(doc.get("blobs", {}))))
    return out


def plan(blobs: list[Blob], *, have: Catalog, limit: int) -> list[Pack]:
    """The packs to write for ``blobs``: those of size > 0 not already in ``have``, each sha256
    once, ordered by label, cut greedily so no pack exceeds ``limit`` bytes. Pure.

    Raises PackError (exit 4) naming the first file larger than ``limit``."""
    todo: dict[str, Blob] = {}
    for blob in sorted(blobs, key=lambda b: (b.label, b.sha256)):
        if blob.size > 0 and blob.sha256 not in have.blobs and blob.sha256 not in todo:
            todo[blob.sha256] = blob
    too_big = [b for b in todo.values() if b.size > limit]
    if too_big:
        b = too_big[0]
        more = f" (+{len(too_big) - 1} more)" if len(too_big) > 1 else ""
        raise PackError(f"{b.label}: {format_exact(b.size)} is larger than the pack limit {format_exact(limit)}"
                        f"{more}; raise --pack-limit (below 2 GiB) or publish without --packs (loose blobs)")
    packs: list[Pack] = []
    current: list[Blob] = []
    filled = 0
    for blob in todo.values():
        if current and filled + blob.size > limit:
            packs.append(Pack(blobs=tuple(current)))
            current, filled = [], 0
        current.append(blob)
        filled += blob.size
    if current:
        packs.append(Pack(blobs=tuple(current)))
    return packs


def write(packs: list[Pack], repo: Path, *, url: str | None = None) -> Catalog:
    """Write ``packs`` as ``repo/packs/<sha256>.pack`` (temporary file, then rename; an existing
    pack of that name already holds those bytes) and return their catalog. ``url``: a template
    with ``{name}`` recorded as each pack's download URL (e.g. a GitHub release asset URL)."""
    out = Catalog()
    folder = repo / index.PACKS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for pack in packs:
        tmp = folder / f".{os.getpid()}.pack.tmp"
        whole = hashlib.sha256()
        offsets: list[tuple[str, int, int]] = []
        try:
            with open(tmp, "wb") as f:
                for blob in pack.blobs:
                    offsets.append((blob.sha256, f.tell(), blob.size))
                    h = hashlib.sha256()
                    with open(blob.source, "rb") as src:
                        while chunk := src.read(CHUNK):
                            h.update(chunk)
                            whole.update(chunk)
                            f.write(chunk)
                    if h.hexdigest() != blob.sha256 or f.tell() != offsets[-1][1] + blob.size:
                        raise IntegrityError(f"{blob.label}: changed since it was indexed (sha256 "
                                             f"{h.hexdigest()[:16]}..., expected {blob.sha256[:16]}...); publish again")
            digest = whole.hexdigest()
            name = f"{digest}.pack"
            os.replace(tmp, folder / name)
        finally:
            tmp.unlink(missing_ok=True)
        info: dict[str, Any] = {"sha256": digest, "size": pack.size}
        if url is not None:
            info["url"] = url.replace("{name}", name)
        out.packs[name] = info
        for sha, offset, length in offsets:
            out.blobs[sha] = [name, offset, length]
    return out


def check_url_template(url: str | None) -> None:
    """UsageError unless ``url`` (``--pack-url``) is an https (or loopback http) URL template
    holding ``{name}``."""
    if url is None:
        return
    from urllib.parse import urlparse

    parsed = urlparse(url)
    secure = parsed.scheme == "https" or (parsed.scheme == "http" and parsed.hostname in ("127.0.0.1", "localhost"))
    if not secure or "{name}" not in url:
        raise UsageError(f"--pack-url {url!r}: an https URL with {{name}} where the pack's file name goes, e.g. "
                         "https://github.com/OWNER/REPO/releases/download/TAG/{name}")
