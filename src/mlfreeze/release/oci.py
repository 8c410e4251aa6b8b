"""A small, reproducible OCI image-layout writer on the standard library.

What it writes (OCI image spec 1.0, https://github.com/opencontainers/image-spec)::

    <layout>/oci-layout                 {"imageLayoutVersion": "1.0.0"}
    <layout>/index.json                 one manifest, tagged by org.opencontainers.image.ref.name
    <layout>/blobs/sha256/<hex>         layers (tar+gzip), the image config, the manifest

Same inputs -> same bytes -> same digests: tar entries are sorted by path, every entry gets the
same mtime (``SOURCE_DATE_EPOCH``), owner 0:0 with no user or group names, and modes without
group/other write; gzip is written with mtime 0 and no file name; JSON documents are written
with sorted keys and no spaces. A layer is streamed (tar -> gzip -> file) while both its
uncompressed digest (the config's ``diff_id``) and its compressed digest are computed, so a
bundle of several GB never sits in memory.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

LAYOUT_VERSION = "1.0.0"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
GZIP_LEVEL = 6
_CHUNK = 1 << 20


def canonical_json(doc: Any) -> bytes:
    """The bytes a document is stored as (sorted keys, no whitespace): stable digests."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True, kw_only=True)
class Descriptor:
    """An OCI content descriptor: media type, ``sha256:<hex>`` digest, size in bytes."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


@dataclass(frozen=True, kw_only=True)
class Layer:
    """A written layer: its descriptor, its ``diff_id`` (sha256 of the uncompressed tar), its
    uncompressed size in bytes and what it holds (a line for the image history)."""

    descriptor: Descriptor
    diff_id: str
    tar_size: int
    entries: int
    comment: str


@dataclass(frozen=True, kw_only=True)
class Entry:
    """One member of a layer. ``kind``: "dir", "file", "symlink". ``source``: a file to copy
    (kind "file"), else ``data`` bytes; ``target``: a symlink's target."""

    path: str  # relative, POSIX, no leading "/" or "./"
    kind: str
    mode: int = 0o755
    source: Path | None = None
    data: bytes | None = None
    target: str = ""
    uid: int = 0
    gid: int = 0


def normal_mode(mode: int, kind: str) -> int:
    """Permission bits as shipped: group/other write dropped, everyone may read (and enter
    directories, run what the owner may run); no setuid/setgid; a sticky directory stays 1777."""
    if kind == "dir" and mode & stat.S_ISVTX:  # /tmp and its kind: world-writable by design
        return 0o1777
    perms = stat.S_IMODE(mode) & ~0o022
    if kind == "dir":
        return (perms | 0o755) & 0o777
    perms = (perms & 0o777) | 0o444
    if perms & 0o100:
        perms |= 0o111
    return perms


class _HashingWriter(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through to ``sink``."""

    def __init__(self, sink: IO[bytes]) -> None:
        self.sink = sink
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self.sha.update(data)
        self.size += len(data)
        self.sink.write(data)
        return len(data)


class Layout:
    """An OCI image layout being written at ``root`` (created if missing)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.blobs.mkdir(parents=True, exist_ok=True)

    def _publish(self, tmp: Path, hexdigest: str) -> Path:
        final = self.blobs / hexdigest
        os.replace(tmp, final)
        return final

    def add_blob(self, data: bytes, media_type: str) -> Descriptor:
        hexdigest = hashlib.sha256(data).hexdigest()
        tmp = self.blobs / f".tmp-{hexdigest}"
        tmp.write_bytes(data)
        self._publish(tmp, hexdigest)
        return Descriptor(media_type=media_type, digest=f"sha256:{hexdigest}", size=len(data))

    def add_json(self, doc: Any, media_type: str) -> Descriptor:
        return self.add_blob(canonical_json(doc), media_type)

    def add_layer(self, entries: Iterable[Entry], *, mtime: int, comment: str) -> Layer:
        """Write ``entries`` (sorted here by path; a directory before what it holds) as a
        tar+gzip layer blob. ValueError for a path that is absolute, holds ``..`` or repeats."""
        tmp = self.blobs / f".tmp-layer-{os.getpid()}-{id(entries)}"
        count = 0
        with open(tmp, "wb") as raw:
            compressed = _HashingWriter(raw)
            with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0,  # type: ignore[arg-type]
                               compresslevel=GZIP_LEVEL) as gz:
                plain = _HashingWriter(gz)  # type: ignore[arg-type]
                with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT,  # type: ignore[call-overload]
                                  encoding="utf-8") as tar:
                    for entry in _sorted_unique(entries):
                        _add(tar, entry, mtime)
                        count += 1
        hexdigest = compressed.sha.hexdigest()
        self._publish(tmp, hexdigest)
        desc = Descriptor(media_type=MEDIA_LAYER, digest=f"sha256:{hexdigest}", size=compressed.size)
        return Layer(descriptor=desc, diff_id=f"sha256:{plain.sha.hexdigest()}", tar_size=plain.size,
                     entries=count, comment=comment)

    def write_index(self, manifest: Descriptor, *, ref_name: str, platform: Mapping[str, str]) -> None:
        """``index.json`` naming the one manifest (tag ``ref_name``) and ``oci-layout``."""
        entry = manifest.as_dict()
        entry["annotations"] = {REF_NAME: ref_name}
        entry["platform"] = dict(platform)
        index = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [entry]}
        (self.root / "index.json").write_bytes(canonical_json(index))
        (self.root / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": LAYOUT_VERSION}))

    def prune(self, keep: Iterable[str]) -> None:
        """Remove every blob (and leftover temporary file) whose digest is not in ``keep``."""
        wanted = {d.split(":", 1)[1] for d in keep}
        for blob in self.blobs.iterdir():
            if blob.name not in wanted:
                blob.unlink()


def _sorted_unique(entries: Iterable[Entry]) -> Iterator[Entry]:
    seen: dict[str, Entry] = {}
    for entry in entries:
        p = PurePosixPath(entry.path)
        if p.is_absolute() or ".." in p.parts or not entry.path or entry.path.startswith("./"):
            raise ValueError(f"layer path {entry.path!r} must be relative, without '..' or './'")
        if entry.path in seen:
            raise ValueError(f"layer path {entry.path!r} appears twice")
        seen[entry.path] = entry
    # sorted by path components: "a/b" before "a-b" never matters for tar, but parents come first
    yield from (seen[k] for k in sorted(seen, key=lambda s: PurePosixPath(s).parts))


def _add(tar: tarfile.TarFile, entry: Entry, mtime: int) -> None:
    info = tarfile.TarInfo(entry.path + ("/" if entry.kind == "dir" else ""))
    info.mtime = mtime
    info.uid, info.gid, info.uname, info.gname = entry.uid, entry.gid, "", ""
    info.mode = normal_mode(entry.mode, entry.kind)
    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    elif entry.kind == "symlink":
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, entry.target, 0o777
        tar.addfile(info)
    elif entry.kind == "file" and entry.source is not None:
        info.size = entry.source.stat().st_size
        with open(entry.source, "rb") as f:
            tar.addfile(info, f)
    elif entry.kind == "file":
        data = entry.data or b""
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        raise ValueError(f"layer entry {entry.path!r}: unknown kind {entry.kind!r}")


def tree_entries(root: Path, prefix: str, *, exclude: Iterable[str] = (), only: str | None = None) -> Iterator[Entry]:
    """Every directory, file and symlink under ``root`` as entries under ``prefix`` (POSIX,
    relative), parents included. ``exclude``: paths relative to ``root`` left out (with what they
    hold); ``only``: a path relative to ``root`` that alone is taken (with its parents)."""
    skip = {PurePosixPath(e) for e in exclude}
    base = PurePosixPath(prefix)
    for i in range(1, len(base.parts) + 1):
        yield Entry(path=PurePosixPath(*base.parts[:i]).as_posix(), kind="dir", mode=0o755)
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        rel_dir = PurePosixPath(here.relative_to(root).as_posix()) if here != root else PurePosixPath()
        kept = []
        for name in sorted(dirnames):
            rel = rel_dir / name
            if rel in skip or (only is not None and not _on_path(rel, PurePosixPath(only))):
                continue
            full = here / name
            if full.is_symlink():
                yield Entry(path=(base / rel).as_posix(), kind="symlink", target=os.readlink(full))
                continue
            kept.append(name)
            yield Entry(path=(base / rel).as_posix(), kind="dir", mode=full.stat().st_mode)
        dirnames[:] = kept
        for name in sorted(filenames):
            rel = rel_dir / name
            if rel in skip or (only is not None and not _under(rel, PurePosixPath(only))):
                continue
            full = here / name
            if full.is_symlink():
                yield Entry(path=(base / rel).as_posix(), kind="symlink", target=os.readlink(full))
            elif full.is_file():
                yield Entry(path=(base / rel).as_posix(), kind="file", mode=full.stat().st_mode, source=full)


def _under(rel: PurePosixPath, top: PurePosixPath) -> bool:
    return rel == top or top in rel.parents


def _on_path(rel: PurePosixPath, top: PurePosixPath) -> bool:
    """``rel`` is ``top``, inside it, or one of its parents."""
    return _under(rel, top) or rel in top.parents


def tar_entries(tar_path: Path, scratch: Path) -> Iterator[Entry]:
    """The directories, files and symlinks of a root-file-system tar (mmdebstrap's output) as
    entries; device nodes and FIFOs are dropped (the runtime provides /dev), hard links become
    copies. File contents are unpacked into ``scratch`` (removed by the caller)."""
    with tarfile.open(tar_path) as tar:
        members = tar.getmembers()
        for n, member in enumerate(members):
            path = member.name.removeprefix("./").rstrip("/")
            if not path or path == ".":
                continue
            if member.isdir():
                yield Entry(path=path, kind="dir", mode=member.mode)
            elif member.issym():
                yield Entry(path=path, kind="symlink", target=member.linkname)
            elif member.isfile() or member.islnk():
                f = tar.extractfile(member)
                if f is None:
                    continue
                out = scratch / f"{n:06d}"
                with f, open(out, "wb") as dest:
                    while chunk := f.read(_CHUNK):
                        dest.write(chunk)
                yield Entry(path=path, kind="file", mode=member.mode, source=out)
