"""The runtime's one HTTP chokepoint (urllib): streaming, resumable, verified downloads.

The rules are the builder's fetch rules (mlfreeze's download module), restated for the
standard library so a bundle needs no ``requests``:

- sha256 and size are checked before a file is published (``os.replace`` from ``.part``);
- resume uses ``Range: bytes=N-`` and appends only to a 206 whose Content-Range starts at N;
  a 200 answer restarts from zero;
- connection errors, short bodies, 5xx and 429 are retried with exponential backoff and
  jitter, at most ``retries`` further attempts (``MLFREEZE_FETCH_RETRIES``);
- ``https://``, ``file://`` and local paths are allowed; ``http://`` only for loopback hosts.

:func:`fetch_bytes` serves small documents (the index, TUF metadata through
``trust.Fetcher``); :func:`fetch_file` serves blobs. ``Counter`` tallies bytes received.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import random
import re
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from mlfreeze_runtime.update.errors import FetchError, UsageError

_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
CHUNK = 1 << 20


@dataclass(kw_only=True)
class Policy:
    """Timeouts (s) and retry bounds; ``from_env`` reads MLFREEZE_FETCH_RETRIES/_BACKOFF/_TIMEOUT."""

    timeout: float = 30.0
    retries: int = 4
    backoff: float = 0.5
    backoff_max: float = 15.0

    @classmethod
    def from_env(cls) -> Policy:
        d = cls()
        env = os.environ
        return cls(timeout=float(env.get("MLFREEZE_FETCH_TIMEOUT", d.timeout)),
                   retries=int(env.get("MLFREEZE_FETCH_RETRIES", d.retries)),
                   backoff=float(env.get("MLFREEZE_FETCH_BACKOFF", d.backoff)))

    def delay(self, attempt: int) -> float:
        d = min(self.backoff_max, self.backoff * (2 ** (attempt - 1)))
        return d / 2 + random.uniform(0, d / 2)


@dataclass
class Counter:
    """Bytes received over the network (or copied from a local source) by this process."""

    bytes: int = 0


COUNTER = Counter()


class _Transient(Exception):
    pass


class NotFound(FetchError):
    """404/403 from a server, or a local file that does not exist (TUF reads it as "no newer root")."""


def is_local(source: str) -> bool:
    """True for a filesystem path or a file:// URL."""
    return "://" not in source or source.startswith("file://")


def local_path(source: str) -> Path:
    return Path(url2pathname(urlparse(source).path)) if source.startswith("file://") else Path(source)


def check_url(url: str) -> None:
    """UsageError unless ``url`` is https, file, a path, or http to a loopback host."""
    if is_local(url):
        return
    p = urlparse(url)
    if p.scheme == "https":
        return
    if p.scheme == "http":
        host = p.hostname or ""
        try:
            if host == "localhost" or ipaddress.ip_address(host).is_loopback:
                return
        except ValueError:
            pass
        raise UsageError(f"{url}: plain http is allowed only for loopback hosts; use https")
    raise UsageError(f"{url}: unsupported scheme {p.scheme!r} (https, file or a local path)")


def join(base: str, rel: str) -> str:
    """``base`` (URL or directory) + a POSIX relative path."""
    if is_local(base):
        return str(local_path(base) / rel)
    return base.rstrip("/") + "/" + rel


def _open(url: str, start: int, policy: Policy) -> tuple[Iterator[bytes], bool]:
    """(chunks, appended) for ``url`` from byte ``start``; raises _Transient or FetchError."""
    req = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    try:
        resp = urllib.request.urlopen(req, timeout=policy.timeout)  # noqa: S310 (scheme checked)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:
            raise _Transient("416 for a resume: restart") from None
        if exc.code in (403, 404):
            raise NotFound(f"{url}: HTTP {exc.code} {exc.reason}; check the release URL") from None
        if exc.code >= 500 or exc.code == 429:
            raise _Transient(f"HTTP {exc.code}") from None
        raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}; check the release URL") from None
    except (urllib.error.URLError, OSError) as exc:
        raise _Transient(str(getattr(exc, "reason", exc))) from None
    appended = False
    if start and resp.status == 206:
        m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
        appended = bool(m and int(m.group(1)) == start)
        if not appended:
            resp.close()
            raise _Transient("206 with a Content-Range that does not start at the resume offset")

    def chunks() -> Iterator[bytes]:
        try:
            while True:
                try:
                    chunk = resp.read(CHUNK)
                except OSError as exc:
                    raise _Transient(f"read failed: {exc}") from None
                if not chunk:
                    return
                yield chunk
        finally:
            resp.close()
    return chunks(), appended


def fetch_file(source: str, dest: Path, *, sha256: str, size: int, policy: Policy | None = None) -> Path:
    """Write ``source``'s bytes to ``dest`` when they are exactly ``size`` bytes with ``sha256``.

    Resumes from ``dest.part`` when one is left over; raises FetchError (exit 3) naming the
    URL after ``policy.retries`` further attempts, or at once on a digest mismatch of a
    complete download (the ``.part`` is removed, so the next run starts clean).
    """
    policy = policy or Policy.from_env()
    part = dest.with_name(dest.name + ".part")
    if is_local(source):
        path = local_path(source)
        if not path.is_file():
            raise NotFound(f"{path}: missing from the release directory")
        shutil.copyfile(path, part)
        COUNTER.bytes += size
        return _publish(source, part, dest, sha256, size)
    check_url(source)
    attempt = 0
    while True:
        start = part.stat().st_size if part.exists() else 0
        if start > size:
            part.unlink()
            start = 0
        try:
            if start == size and part.exists():
                return _publish(source, part, dest, sha256, size)
            chunks, appended = _open(source, start, policy)
            with open(part, "ab" if appended else "wb") as f:
                for chunk in chunks:
                    f.write(chunk)
                    COUNTER.bytes += len(chunk)
            if part.stat().st_size != size:
                raise _Transient(f"got {part.stat().st_size} of {size} bytes")
            return _publish(source, part, dest, sha256, size)
        except _Transient as exc:
            attempt += 1
            if attempt > policy.retries:
                raise FetchError(f"{source}: {exc} (after {attempt} attempts); try again later") from None
            time.sleep(policy.delay(attempt))


def _publish(source: str, part: Path, dest: Path, sha256: str, size: int) -> Path:
    h = hashlib.sha256()
    n = 0
    with open(part, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            n += len(chunk)
    if n != size or h.hexdigest() != sha256:
        part.unlink(missing_ok=True)
        raise FetchError(f"{source}: {n} bytes with sha256 {h.hexdigest()[:16]}..., the release says {size} "
                         f"bytes {sha256[:16]}...; the release is damaged or tampered: not installed")
    os.replace(part, dest)
    return dest


def fetch_bytes(source: str, *, max_bytes: int = 64 << 20, policy: Policy | None = None) -> bytes:
    """A small document (index, metadata) whole; FetchError when missing or over ``max_bytes``."""
    policy = policy or Policy.from_env()
    if is_local(source):
        path = local_path(source)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"{path}: missing") from None
        except OSError as exc:
            raise FetchError(f"{path}: cannot read ({exc.strerror})") from None
        COUNTER.bytes += len(data)
        return data
    check_url(source)
    attempt = 0
    while True:
        try:
            chunks, _ = _open(source, 0, policy)
            buf = bytearray()
            for chunk in chunks:
                buf += chunk
                if len(buf) > max_bytes:
                    raise FetchError(f"{source}: larger than {max_bytes} bytes; refused")
            COUNTER.bytes += len(buf)
            return bytes(buf)
        except _Transient as exc:
            attempt += 1
            if attempt > policy.retries:
                raise FetchError(f"{source}: {exc} (after {attempt} attempts); try again later") from None
            time.sleep(policy.delay(attempt))
