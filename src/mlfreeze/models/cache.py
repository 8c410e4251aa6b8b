"""The content-addressed model cache: entries complete or absent, locked per artifact.

Layout under the cache root (``$MLFREEZE_CACHE``, else the platform user cache dir)::

    blobs/<sha256>/<file>      a downloaded artifact, published by an atomic rename
    trees/<sha256>/            an extracted archive (keyed by the archive's sha256),
        <member>...            published by renaming a complete staged directory
        .mlfreeze-tree.json    {member: {size, sha256}} recorded at extraction
    tmp/<sha256>.part          a download in progress (resumed by the next run, from the same URL only)
    tmp/<sha256>.part.source   the URL that served it and its ETag/Last-Modified (for If-Range)
    tmp/stage-*, tmp/trash-*   staging and removal areas (safe to delete when no fetch runs)
    locks/<sha256>.lock        one inter-process lock per artifact

Nothing outside ``tmp/`` is ever written in place, so whatever kills a process, a cache
entry is complete or absent. Every use re-verifies size and sha256 (``verify_blob``,
``verify_tree``); a corrupt entry is removed, with a line saying so, and fetched again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from mlfreeze.models.manifest import ArtifactSpec

TREE_INDEX = ".mlfreeze-tree.json"
_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    env = os.environ.get("MLFREEZE_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("mlfreeze", appauthor=False))


def hash_file(path: Path, chunk: int = _CHUNK) -> tuple[int, str]:
    """(size, sha256 hex) of one file; hashlib releases the GIL, so threads hash in parallel."""
    h = hashlib.sha256()
    size = 0
    buf = bytearray(chunk)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
            size += n
    return size, h.hexdigest()


def hash_files(paths: Iterable[Path], workers: int | None = None) -> list[tuple[int, str]]:
    paths = list(paths)
    workers = workers or min(4, os.cpu_count() or 1, max(1, len(paths)))
    if workers <= 1 or len(paths) <= 1:
        return [hash_file(p) for p in paths]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(hash_file, paths))


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Cache:
    def __init__(self, root: Path, log: Callable[[str], None] | None = None) -> None:
        self.root = Path(root).absolute()  # a relative --cache must not leak into links and records
        self.blobs = self.root / "blobs"
        self.trees = self.root / "trees"
        self.tmp = self.root / "tmp"
        self.locks = self.root / "locks"
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        for d in (self.blobs, self.trees, self.tmp, self.locks):
            d.mkdir(parents=True, exist_ok=True)

    # ---- paths ----
    def blob_path(self, art: ArtifactSpec) -> Path:
        return self.blobs / art.sha256 / art.file

    def tree_dir(self, art: ArtifactSpec) -> Path:
        return self.trees / art.sha256

    def partial_path(self, art: ArtifactSpec) -> Path:
        return self.tmp / f"{art.sha256}.part"

    # ---- locking ----
    @contextmanager
    def lock(self, art: ArtifactSpec, timeout: float = 3600.0) -> Iterator[None]:
        """Hold the artifact's inter-process lock (released by the OS if the holder dies)."""
        from filelock import FileLock, Timeout

        lock = FileLock(str(self.locks / f"{art.sha256}.lock"))
        try:
            lock.acquire(timeout=0.5)
        except Timeout:
            self.log(f"  {art.file}: waiting for another mlfreeze process that is fetching it")
            try:
                lock.acquire(timeout=timeout)
            except Timeout:
                from mlfreeze.errors import DownloadError

                raise DownloadError(f"{art.file}: lock {lock.lock_file} held for over {timeout:.0f}s; "
                                    "is another fetch stuck? stop it or delete the lock file") from None
        try:
            yield
        finally:
            lock.release()

    # ---- verification ----
    def verify_blob(self, art: ArtifactSpec) -> Path | None:
        """The cached artifact if its size and sha256 are the pinned ones; a corrupt one is removed."""
        path = self.blob_path(art)
        if not path.is_file():
            if path.exists() or path.is_symlink():
                self._corrupt(path, "not a regular file")
            return None
        actual = path.stat().st_size
        if actual != art.size:
            self._corrupt(path, f"expected {art.size} bytes, found {actual}")
            return None
        _, digest = hash_file(path)
        if digest != art.sha256:
            self._corrupt(path, f"expected sha256 {art.sha256}, found {digest}")
            return None
        return path

    def verify_tree(self, art: ArtifactSpec) -> dict[str, Path] | None:
        """Member name -> path of an extracted archive, every member re-hashed; None if absent/corrupt."""
        tree = self.tree_dir(art)
        if not tree.is_dir():
            return None
        try:
            index = json.loads((tree / TREE_INDEX).read_text())
            if not isinstance(index, dict) or not all(isinstance(v, dict) for v in index.values()):
                raise ValueError("not a table of members")
        except (OSError, ValueError):
            self._corrupt(tree, "its index is missing or unreadable")
            return None
        files: dict[str, Path] = {}
        for member in art.members:
            rec = index.get(member.name)
            path = tree / member.name
            if rec is None or not path.is_file():
                self._corrupt(tree, f"member {member.name} is missing")
                return None
            size = path.stat().st_size
            if size != rec.get("size") or (member.size is not None and size != member.size):
                self._corrupt(tree, f"member {member.name}: expected {rec.get('size')} bytes, found {size}")
                return None
            files[member.name] = path
        results = hash_files(files.values())
        for (name, _), (_, digest), member in zip(files.items(), results, art.members, strict=True):
            want = member.sha256 or index[name].get("sha256")
            if digest != want:
                self._corrupt(tree, f"member {name}: expected sha256 {want}, found {digest}")
                return None
        return files

    def _corrupt(self, path: Path, why: str) -> None:
        self.log(f"  cache: {path} is corrupt ({why}); removing it and fetching again")
        self.remove(path)

    # ---- publishing ----
    def publish_blob(self, art: ArtifactSpec, partial: Path) -> Path:
        """Move a complete, verified, fsynced download into place with one atomic rename."""
        final = self.blob_path(art)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial, final)
        partial.with_name(partial.name + ".source").unlink(missing_ok=True)
        _fsync_dir(final.parent)
        return final

    def stage_dir(self, art: ArtifactSpec) -> Path:
        """A fresh staging directory; call with the artifact's lock held (older stages are dropped)."""
        for old in self.tmp.glob(f"stage-{art.sha256}-*"):
            shutil.rmtree(old, ignore_errors=True)  # left by a killed process
        path = self.tmp / f"stage-{art.sha256}-{uuid.uuid4().hex}"
        path.mkdir()
        return path

    def publish_tree(self, art: ArtifactSpec, stage: Path, index: dict[str, dict[str, object]]) -> dict[str, Path]:
        """Write the index into a complete staged tree, fsync it, rename it into place."""
        with open(stage / TREE_INDEX, "w") as f:
            json.dump(index, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        for dirpath, _, _ in os.walk(stage):
            _fsync_dir(Path(dirpath))
        final = self.tree_dir(art)
        if final.exists():
            self.remove(final)
        os.rename(stage, final)
        _fsync_dir(self.trees)
        return {m.name: final / m.name for m in art.members}

    def remove(self, path: Path) -> None:
        """Make ``path`` vanish at once (rename into tmp/), then delete it."""
        if not path.exists():
            return
        trash = self.tmp / f"trash-{uuid.uuid4().hex}"
        os.rename(path, trash)
        if trash.is_dir():
            shutil.rmtree(trash, ignore_errors=True)
        else:
            trash.unlink(missing_ok=True)
