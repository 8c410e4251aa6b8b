"""The partial file of a download in progress, the source it came from, and its writers.

``tmp/<sha256>.part`` holds the bytes received so far; ``tmp/<sha256>.part.source`` (JSON)
records which URL served them and that answer's validator (ETag or Last-Modified). A prefix
is resumed only from the same URL, with ``If-Range`` carrying the validator, so a changed file
restarts instead of being spliced, and bytes from one URL never become the start of another's.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True, kw_only=True)
class Source:
    """Who served a partial's bytes: the URL asked for (before redirects) and its validators."""

    url: str
    etag: str | None = None
    last_modified: str | None = None

    @property
    def if_range(self) -> str | None:
        """The ``If-Range`` value: a strong ETag, else Last-Modified (RFC 9110 13.1.5), else None."""
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified


def source_path(partial: Path) -> Path:
    return partial.with_name(partial.name + ".source")


@dataclass(kw_only=True)
class Partial:
    """The partial file and a hash of its bytes, carried across attempts in this process."""

    path: Path
    size: int
    hasher: hashlib._Hash = field(default_factory=hashlib.sha256)
    have: int = 0

    def sync(self) -> None:
        """Make ``hasher``/``have`` describe the partial file on disk (hash a resumed prefix once)."""
        on_disk = self.path.stat().st_size if self.path.exists() else 0
        if on_disk == self.have:
            return
        if on_disk > self.size:
            self.restart()
            return
        self.hasher, self.have = hashlib.sha256(), 0
        with open(self.path, "rb") as f:
            while chunk := f.read(1 << 20):
                self.hasher.update(chunk)
                self.have += len(chunk)

    def restart(self) -> None:
        """Empty the partial and forget its source."""
        with open(self.path, "wb"):
            pass
        self.hasher, self.have = hashlib.sha256(), 0
        self.forget_source()

    # ---- the source beside the partial ----
    def source(self) -> Source | None:
        try:
            data = json.loads(source_path(self.path).read_text())
            return Source(url=str(data["url"]), etag=data.get("etag"), last_modified=data.get("last_modified"))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def resumable_from(self, url: str) -> Source | None:
        """The recorded source when the partial has bytes and ``url`` is the one that served them."""
        if not self.have:
            return None
        src = self.source()
        return src if src is not None and src.url == url else None

    def record_source(self, src: Source) -> None:
        """Write the source atomically (before any of its bytes land, so a kill keeps them paired)."""
        path = source_path(self.path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(asdict(src)))
        os.replace(tmp, path)

    def forget_source(self) -> None:
        source_path(self.path).unlink(missing_ok=True)


class BackgroundHash:
    """sha256 on a second thread while this one receives and writes (hashlib releases the GIL),
    so hashing while streaming costs no wall time on a machine with two cores."""

    def __init__(self, hasher: hashlib._Hash) -> None:
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=64)
        self._thread = threading.Thread(target=self._run, args=(hasher,), daemon=True)
        self._thread.start()

    def _run(self, hasher: hashlib._Hash) -> None:
        while (chunk := self._queue.get()) is not None:
            hasher.update(chunk)

    def update(self, chunk: bytes) -> None:
        self._queue.put(chunk)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()


class Writeback:
    """Flush written bytes to disk on a helper thread every ``every`` bytes, so the fsync before
    the atomic publish overlaps the transfer instead of following it."""

    def __init__(self, fd: int, every: int = 64 << 20) -> None:
        self._fd, self._every, self._pending = fd, every, 0
        self._wake = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        sync = getattr(os, "fdatasync", os.fsync)
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stop:
                return
            try:
                sync(self._fd)
            except OSError:
                return  # the final fsync reports real trouble

    def wrote(self, n: int) -> None:
        self._pending += n
        if self._pending >= self._every:
            self._pending = 0
            self._wake.set()

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join()
