"""The runtime's one HTTP chokepoint (urllib): streaming, resumable, verified downloads.

The rules are the builder's fetch rules (mlfreeze's download module), restated for the
standard library so a bundle needs no ``requests``:

- sha256 and size are checked before a file is published (``os.replace`` from ``.part``);
- resume uses ``Range: bytes=N-`` and appends only to a 206 whose Content-Range starts at N;
  a 200 answer restarts from zero;
- connection errors, short bodies, 5xx and 429 are retried with exponential backoff and
  jitter, at most ``retries`` further attempts (``MLFREEZE_FETCH_RETRIES``);
- ``https://``, ``file://`` and local paths are allowed; ``http://`` only for loopback hosts.

Byte ranges of packs (:func:`fetch_range`) ask ``Range: bytes=a-b`` and accept only a 206 whose
Content-Range is exactly ``a-b`` of a pack as long as the index says; resuming a blob asks from
``offset + bytes already in .part``. A 200 (a server that ignores Range and would send the whole
pack) raises :class:`RangeIgnored` without reading the body; the caller decides (``install``
downloads a small pack whole, once, and refuses a big one).

:func:`fetch_bytes` serves small documents (the index, TUF metadata through
``trust.Fetcher``); :func:`fetch_file` serves blobs. ``Counter`` tallies bytes received and
HTTP requests made.
"""

from __future__ import annotations

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
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from mlfreeze_runtime import record
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
        return float(d / 2 + random.uniform(0, d / 2))


@dataclass
class Counter:
    """Bytes received over the network (or copied from a local source) and HTTP requests made
    by this process."""

    bytes: int = 0
    requests: int = 0


COUNTER = Counter()


class _Transient(Exception):
    pass


class NotFound(FetchError):
    """404/403 from a server, or a local file that does not exist (TUF reads it as "no newer root")."""


class RangeIgnored(FetchError):
    """The server answered a Range request with 200 (the whole resource); nothing was read."""


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


def _urlopen(url: str, headers: dict[str, str], policy: Policy, *, on_416: Exception | None) -> Any:
    """The response for a GET of ``url``; _Transient for what a retry may cure, FetchError else."""
    req = urllib.request.Request(url, headers=headers)
    COUNTER.requests += 1
    try:
        return urllib.request.urlopen(req, timeout=policy.timeout)  # noqa: S310 (scheme checked)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and on_416 is not None:
            raise on_416 from None
        if exc.code in (403, 404):
            raise NotFound(f"{url}: HTTP {exc.code} {exc.reason}; check the release URL") from None
        if exc.code >= 500 or exc.code == 429:
            raise _Transient(f"HTTP {exc.code}") from None
        raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}; check the release URL") from None
    except (urllib.error.URLError, OSError) as exc:
        raise _Transient(str(getattr(exc, "reason", exc))) from None


def _chunks(resp: Any) -> Iterator[bytes]:
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


def _open(url: str, start: int, policy: Policy) -> tuple[Iterator[bytes], bool]:
    """(chunks, appended) for ``url`` from byte ``start``; raises _Transient or FetchError."""
    resp = _urlopen(url, {"Range": f"bytes={start}-"} if start else {}, policy,
                    on_416=_Transient("416 for a resume: restart") if start else None)
    appended = False
    if start and resp.status == 206:
        m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
        appended = bool(m and int(m.group(1)) == start)
        if not appended:
            resp.close()
            raise _Transient("206 with a Content-Range that does not start at the resume offset")
    return _chunks(resp), appended


def check_content_range(header: str | None, first: int, last: int, total: int) -> str | None:
    """Why a 206's Content-Range is not ``bytes first-last/total`` (None when it is).

    Returns ``"total"`` when the server's resource has another length than ``total`` (the pack
    is not the one the index signed: not worth a retry), ``"range"`` for any other mismatch."""
    m = _CONTENT_RANGE.match(header or "")
    if not m:
        return "range"
    if m.group(3) != "*" and int(m.group(3)) != total:
        return "total"
    return None if (int(m.group(1)), int(m.group(2))) == (first, last) else "range"


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
            attempt = _back_off(source, exc, attempt, policy)


def fetch_range(source: str, dest: Path, *, offset: int, sha256: str | None, size: int, total: int,
                policy: Policy | None = None, count: bool = True) -> Path:
    """Write bytes ``offset`` .. ``offset + size - 1`` of ``source`` (a pack of ``total`` bytes) to
    ``dest`` when they are ``size`` bytes with ``sha256`` (None: a run of several blobs, whose
    digests the caller checks when it splits the run).

    A local pack is read directly (FetchError when it is not ``total`` bytes long). Over HTTP:
    ``Range: bytes=a-b``, resumed from ``dest.part`` (``a = offset + bytes already there``),
    bounded retries as :func:`fetch_file`. Only a 206 whose Content-Range is exactly ``a-b/total``
    is accepted; a 416 or another total is a damaged release (FetchError, no retry); a 200
    raises :class:`RangeIgnored` before reading the body. ``size`` must be > 0. ``count=False``:
    a local read that is not a download (a slice of a run or of a pack already fetched whole)
    is left out of :data:`COUNTER`.
    """
    policy = policy or Policy.from_env()
    part = dest.with_name(dest.name + ".part")
    last = offset + size - 1
    if is_local(source):
        path = local_path(source)
        try:
            with open(path, "rb") as f:
                have = os.fstat(f.fileno()).st_size
                if have != total:
                    raise FetchError(f"{path}: {have} bytes, the release index says {total}; the pack is damaged "
                                     "or not the signed one: not installed")
                f.seek(offset)
                with open(part, "wb") as out:
                    out.write(f.read(size))
        except FileNotFoundError:
            raise NotFound(f"{path}: missing from the release directory") from None
        COUNTER.bytes += size if count else 0
        return _publish(f"{source} bytes {offset}-{last}", part, dest, sha256, size)
    check_url(source)
    attempt = 0
    where = f"{source} bytes {offset}-{last}"
    while True:
        have = part.stat().st_size if part.exists() else 0
        if have > size:
            part.unlink()
            have = 0
        try:
            if have == size:
                return _publish(where, part, dest, sha256, size)
            first = offset + have
            resp = _urlopen(source, {"Range": f"bytes={first}-{last}"}, policy,
                            on_416=FetchError(f"{where}: range not satisfiable (HTTP 416): the pack is shorter than "
                                              f"the {total} bytes the release index says; damaged: not installed"))
            if resp.status != 206:
                resp.close()
                raise RangeIgnored(f"{source}: HTTP {resp.status} to a Range request (the server ignores Range)")
            why = check_content_range(resp.headers.get("Content-Range"), first, last, total)
            if why is not None:
                resp.close()
                got = resp.headers.get("Content-Range")
                if why == "total":
                    raise FetchError(f"{where}: the server's pack is {got!r}, the release index says {total} bytes; "
                                     "the pack is damaged or not the signed one: not installed")
                raise _Transient(f"206 with Content-Range {got!r}, asked bytes {first}-{last}")
            with open(part, "ab") as f:
                for chunk in _chunks(resp):
                    if f.tell() + len(chunk) > size:
                        raise _Transient(f"more bytes than the {last - first + 1} asked")
                    f.write(chunk)
                    COUNTER.bytes += len(chunk)
            if part.stat().st_size != size:
                raise _Transient(f"got {part.stat().st_size} of {size} bytes")
            return _publish(where, part, dest, sha256, size)
        except _Transient as exc:
            attempt = _back_off(where, exc, attempt, policy)


def _back_off(where: str, exc: Exception, attempt: int, policy: Policy) -> int:
    """The next attempt's number after a transient failure, having slept the policy's delay;
    FetchError (exit 3) once the retries are spent."""
    attempt += 1
    if attempt > policy.retries:
        raise FetchError(f"{where}: {exc} (after {attempt} attempts); try again later") from None
    time.sleep(policy.delay(attempt))
    return attempt


def _publish(source: str, part: Path, dest: Path, sha256: str | None, size: int) -> Path:
    digest, n = record.hash_file(part)
    if n != size or (sha256 is not None and digest != sha256):
        part.unlink(missing_ok=True)
        raise FetchError(f"{source}: {n} bytes with sha256 {digest[:16]}..., the release says {size} "
                         f"bytes {(sha256 or '(any)')[:16]}...; the release is damaged or tampered: not installed")
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
            attempt = _back_off(source, exc, attempt, policy)
