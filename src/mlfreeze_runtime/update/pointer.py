"""The ``current`` pointer of an install root, switched atomically.

POSIX: ``current`` is a relative symlink ``versions/<name>``; a switch creates
``.current.<pid>.tmp`` pointing at the new target and ``os.replace``-s it over ``current``
(rename(2) is atomic, so a reader sees the old or the new target, never none).

Windows (symlinks need a privilege users lack): ``current.txt`` holds the version folder's
name, written to a temp file, flushed, fsync-ed and ``os.replace``-d (MoveFileExW with
MOVEFILE_REPLACE_EXISTING, atomic on NTFS); a small launcher at the root, ``<app>.exe``,
reads it with :func:`resolve_pointer_text` and starts ``versions/<name>/<app>.exe`` with
the same arguments. The launcher is what shortcuts point at, so they survive every switch.
``FilePointer`` works on POSIX too, which is how its logic is tested.
"""

from __future__ import annotations

import os
from pathlib import Path

VERSIONS = "versions"


class PointerError(ValueError):
    """The pointer names no complete version (message says which and why)."""


def resolve_pointer_text(text: str, versions: set[str]) -> str:
    """The version name a ``current.txt`` holds, checked against the folders in ``versions/``.

    Pure (the launcher's whole decision): one line, a bare folder name (no separators, not
    ``.``/``..``), present in ``versions``; PointerError otherwise.
    """
    name = text.strip()
    if not name or "\n" in name or "/" in name or "\\" in name or name in (".", ".."):
        raise PointerError(f"current.txt holds {text!r}, not one version folder name; run <app>-update rollback")
    if name not in versions:
        raise PointerError(f"current.txt names {name}, which is not in versions/; run <app>-update rollback")
    return name


class SymlinkPointer:
    """``root/current`` -> ``versions/<name>`` (POSIX). ``folder``: where the targets lie, relative
    to ``root`` ("." for a pointer beside its targets, as ``models/current`` -> ``<pack>``)."""

    kind = "symlink"

    def __init__(self, root: Path, folder: str = VERSIONS) -> None:
        self.root = root
        self.folder = folder
        self.path = root / "current"

    def read(self) -> str | None:
        try:
            target = os.readlink(self.path)
        except (FileNotFoundError, OSError):
            return None
        parts = Path(target).parts
        if self.folder == ".":
            return parts[0] if len(parts) == 1 and (self.root / parts[0]).is_dir() else None
        return parts[-1] if len(parts) == 2 and parts[0] == self.folder else None

    def switch(self, name: str) -> None:
        tmp = self.root / f".current.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        os.symlink(name if self.folder == "." else f"{self.folder}/{name}", tmp, target_is_directory=True)
        os.replace(tmp, self.path)
        _fsync_dir(self.root)

    def leftovers(self) -> list[Path]:
        return sorted(self.root.glob(".current.*.tmp"))


class FilePointer:
    """``root/current.txt`` holding the version name (Windows; usable everywhere)."""

    kind = "file"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / "current.txt"

    def read(self) -> str | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except (FileNotFoundError, OSError):
            return None
        versions = {p.name for p in (self.root / VERSIONS).iterdir()} if (self.root / VERSIONS).is_dir() else set()
        try:
            return resolve_pointer_text(text, versions)
        except PointerError:
            return None

    def switch(self, name: str) -> None:
        tmp = self.root / f".current.{os.getpid()}.txt.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(name + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.root)

    def leftovers(self) -> list[Path]:
        return sorted(self.root.glob(".current.*.txt.tmp"))


def for_root(root: Path, os_name: str | None = None) -> SymlinkPointer | FilePointer:
    """The pointer an install root uses: the one already there, else by OS (file on Windows)."""
    if (root / "current.txt").exists():
        return FilePointer(root)
    if (root / "current").is_symlink():
        return SymlinkPointer(root)
    windows = (os_name or ("windows" if os.name == "nt" else "posix")) == "windows"
    if os.environ.get("MLFREEZE_UPDATE_POINTER") == "file" or windows:
        return FilePointer(root)
    return SymlinkPointer(root)


def _fsync_dir(path: Path) -> None:
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
