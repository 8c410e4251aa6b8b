"""Reproducible archives of a bundle folder, and splitting a file into ordered parts.

The same folder gives the same bytes on every host and every run:

- entries sorted by their POSIX path, every folder listed before what it holds;
- one mtime for every entry (the caller passes ``SOURCE_DATE_EPOCH`` or a fixed value);
- uid/gid 0, no owner or group names;
- mode 0755 for folders and executables (any x bit, or a Windows executable suffix),
  0644 for everything else; symlinks are kept as symlinks (macOS frameworks use them),
  and refused when absolute or pointing outside the bundle;
- tar.gz: GNU tar format, gzip header with no file name and mtime 0;
- zip: Unix "made by", fixed dates, external attributes from the fixed modes, deflate.

The output is hashed while it is written, so nothing is read twice.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import posixpath
import stat
import tarfile
import time
import zipfile
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

DIR_MODE = 0o755
EXEC_MODE = 0o755
FILE_MODE = 0o644
LINK_MODE = 0o777
ZIP_EPOCH = 315532800  # 1980-01-01T00:00:00Z, the earliest date a zip entry can hold
WINDOWS_EXEC_SUFFIXES = (".exe", ".bat", ".cmd", ".com")
CHUNK = 1 << 20
GZIP_LEVEL = 6
ZIP_LEVEL = 6
ZIP64_FROM = 1 << 31  # entries from 2 GiB on are written with zip64 extra fields


@dataclass(frozen=True, kw_only=True)
class Entry:
    """One member of an archive: its path inside, what it is, and its fixed mode."""

    arcname: str
    path: Path
    kind: str  # "dir" | "file" | "link"
    mode: int
    size: int
    target: str = ""


@dataclass(frozen=True, kw_only=True)
class ArchiveResult:
    path: Path
    size: int
    sha256: str
    entries: int
    content_bytes: int  # the sum of regular file sizes (the bundle's on-disk size)


@dataclass(frozen=True, kw_only=True)
class Part:
    path: Path
    size: int
    sha256: str


class HashingWriter(io.RawIOBase):
    """A write-only file that hashes and counts what passes through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.digest = hashlib.sha256()
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        view = memoryview(data)
        self._raw.write(view)
        self.digest.update(view)
        self.count += len(view)
        return len(view)


def _is_executable(path: Path, st: os.stat_result) -> bool:
    return bool(st.st_mode & 0o111) or path.suffix.lower() in WINDOWS_EXEC_SUFFIXES


def walk(root: Path, arcroot: str, exclude: Collection[str] = ()) -> list[Entry]:
    """Every folder, file and symlink under ``root``, sorted by archive path.

    ``arcroot`` is the top folder inside the archive (the bundle's folder name); ``exclude``
    names entries directly in ``root`` that are left out (the incremental stamp).
    Sockets, fifos and devices are refused: a bundle never holds them.
    """
    entries = [Entry(arcname=arcroot, path=root, kind="dir", mode=DIR_MODE, size=0)]
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        rel = here.relative_to(root).as_posix()
        prefix = arcroot if rel == "." else f"{arcroot}/{rel}"
        keep = []
        for name in sorted(dirnames + filenames):
            if rel == "." and name in exclude:
                continue
            path = here / name
            st = path.lstat()
            arcname = f"{prefix}/{name}"
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(path).replace(os.sep, "/")
                inside = posixpath.normpath(posixpath.join(posixpath.dirname(arcname), target))
                if posixpath.isabs(target) or not (inside + "/").startswith(arcroot + "/"):
                    raise ValueError(f"{path}: symlink to {target!r} points outside the bundle; "
                                     "an archive must not carry it")
                entries.append(Entry(arcname=arcname, path=path, kind="link", mode=LINK_MODE, size=0, target=target))
            elif stat.S_ISDIR(st.st_mode):
                entries.append(Entry(arcname=arcname, path=path, kind="dir", mode=DIR_MODE, size=0))
                keep.append(name)
            elif stat.S_ISREG(st.st_mode):
                mode = EXEC_MODE if _is_executable(path, st) else FILE_MODE
                entries.append(Entry(arcname=arcname, path=path, kind="file", mode=mode, size=st.st_size))
            else:
                raise ValueError(f"{path}: not a file, folder or symlink; bundles cannot hold it")
        dirnames[:] = sorted(d for d in dirnames if d in keep)  # never follow symlinked folders
    return sorted(entries, key=lambda e: e.arcname)


def _copy(src: Path, dst: BinaryIO) -> None:
    with open(src, "rb") as f:
        while chunk := f.read(CHUNK):
            dst.write(chunk)


def write_tar_gz(root: Path, dest: Path, *, arcroot: str, mtime: int, exclude: Collection[str] = (),
                 level: int = GZIP_LEVEL) -> ArchiveResult:
    """Write ``root`` as a reproducible ``.tar.gz`` at ``dest``."""
    entries = walk(root, arcroot, exclude)
    with open(dest, "wb") as raw:
        sink = HashingWriter(raw)
        # filename="" and mtime=0 keep the gzip header free of the host's name and clock
        with gzip.GzipFile(filename="", mode="wb", fileobj=sink, mtime=0, compresslevel=level) as gz, \
                tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for e in entries:
                info = tarfile.TarInfo(e.arcname)
                info.mtime = mtime
                info.mode = e.mode
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if e.kind == "dir":
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                elif e.kind == "link":
                    info.type = tarfile.SYMTYPE
                    info.linkname = e.target
                    tar.addfile(info)
                else:
                    info.size = e.size
                    with open(e.path, "rb") as f:
                        tar.addfile(info, f)
    return ArchiveResult(path=dest, size=sink.count, sha256=sink.digest.hexdigest(), entries=len(entries),
                         content_bytes=sum(e.size for e in entries))


def _zip_date(mtime: int) -> tuple[int, int, int, int, int, int]:
    t = time.gmtime(max(mtime, ZIP_EPOCH))
    return (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)


def write_zip(root: Path, dest: Path, *, arcroot: str, mtime: int, exclude: Collection[str] = (),
                 level: int = ZIP_LEVEL) -> ArchiveResult:
    """Write ``root`` as a reproducible ``.zip`` at ``dest``."""
    entries = walk(root, arcroot, exclude)
    date = _zip_date(mtime)
    with open(dest, "wb") as raw:
        sink = HashingWriter(raw)
        with zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
            for e in entries:
                name = e.arcname + "/" if e.kind == "dir" else e.arcname
                info = zipfile.ZipInfo(name, date_time=date)
                info.create_system = 3  # Unix: unzip honours the mode bits in external_attr
                if e.kind == "dir":
                    info.external_attr = ((stat.S_IFDIR | e.mode) << 16) | 0x10
                    info.compress_type = zipfile.ZIP_STORED
                    zf.writestr(info, b"")
                elif e.kind == "link":
                    info.external_attr = (stat.S_IFLNK | e.mode) << 16
                    info.compress_type = zipfile.ZIP_STORED
                    zf.writestr(info, e.target.encode())
                else:
                    info.external_attr = (stat.S_IFREG | e.mode) << 16
                    info.compress_type = zipfile.ZIP_DEFLATED
                    info.file_size = e.size
                    # ZipFile.open(info, "w") takes the level from the ZipInfo, not from the ZipFile
                    for attr in ("compress_level", "_compresslevel"):  # 3.13+ / 3.10-3.12
                        if hasattr(info, attr):
                            setattr(info, attr, level)
                    with zf.open(info, "w", force_zip64=e.size >= ZIP64_FROM) as out:
                        _copy(e.path, out)  # type: ignore[arg-type]
    return ArchiveResult(path=dest, size=sink.count, sha256=sink.digest.hexdigest(), entries=len(entries),
                         content_bytes=sum(e.size for e in entries))


def write_archive(root: Path, dest: Path, *, fmt: str, arcroot: str, mtime: int,
                  exclude: Collection[str] = ()) -> ArchiveResult:
    """``fmt`` is a profile's ``archive_format``: ``tar.gz`` or ``zip``; ``exclude``: see :func:`walk`."""
    if fmt == "tar.gz":
        return write_tar_gz(root, dest, arcroot=arcroot, mtime=mtime, exclude=exclude)
    if fmt == "zip":
        return write_zip(root, dest, arcroot=arcroot, mtime=mtime, exclude=exclude)
    raise ValueError(f"unknown archive format {fmt!r}; expected tar.gz or zip")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def part_name(path: Path, index: int) -> Path:
    """``name.tar.gz`` -> ``name.tar.gz.part001`` (1-based, three digits, sorts in order)."""
    return path.with_name(f"{path.name}.part{index:03d}")


def _chunks(f: BinaryIO, size: int) -> Iterator[bytes]:
    left = size
    while left > 0 and (chunk := f.read(min(CHUNK, left))):
        left -= len(chunk)
        yield chunk


def split_file(path: Path, limit: int) -> list[Part]:
    """Cut ``path`` into ordered parts of at most ``limit`` bytes; remove the whole file.

    ``cat name.part*`` gives the original bytes back. A file no larger than ``limit``
    is left alone and an empty list returned.
    """
    if limit <= 0:
        raise ValueError(f"split limit must be positive, got {limit}")
    total = path.stat().st_size
    if total <= limit:
        return []
    parts: list[Part] = []
    with open(path, "rb") as f:
        index = 1
        while f.tell() < total:
            dest = part_name(path, index)
            digest = hashlib.sha256()
            written = 0
            with open(dest, "wb") as out:
                for chunk in _chunks(f, limit):
                    out.write(chunk)
                    digest.update(chunk)
                    written += len(chunk)
            parts.append(Part(path=dest, size=written, sha256=digest.hexdigest()))
            index += 1
    path.unlink()
    return parts
